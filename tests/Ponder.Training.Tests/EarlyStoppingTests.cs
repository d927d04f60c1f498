using System.Globalization;
using Ponder.Tasks;
using Ponder.Models;
using Ponder.Training;

namespace Ponder.Training.Tests;

public sealed class EarlyStoppingTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "ponder-early-" + Guid.NewGuid().ToString("N"));

    public void Dispose() { if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true); }

    static readonly ArithmeticChainTask Task = new();
    const string Right = "2*3=6\n1+6=7\nA: 7\n";

    static SftData Labelled(float label) => new([PrmLabels.Example(Task, new PrmSample("1+2*3", Right, true, [label, label, label]))], 64, 1);

    [Fact]
    public void The_loop_ends_holding_the_parameters_of_the_lowest_validation_loss_even_after_a_resume()
    {
        // Training labels 1 push every score from 0.5 (zero head) toward 1; the validation labels are 0.7, so its BCE
        // falls until the scores pass 0.7 and then rises: the minimum lies strictly inside the run.
        var c = new FineTuneConfig
        {
            Name = "early", Seed = 1, Steps = 40, BatchSize = 2, LearningRate = 2e-3f, WarmupSteps = 0, MinLearningRateFraction = 1,
            WeightDecay = 0, CheckpointEvery = 40, EvalEvery = 2, EarlyStopping = true, OutputDir = _dir,
        };
        Directory.CreateDirectory(_dir);
        var model = TinyModels.ByteValueModel(5);
        var train = Labelled(1f);
        var validation = Labelled(0.7f);
        string ckpt = Path.Combine(_dir, "checkpoint.bin");
        var result = FineTuneLoop.Train(c, model, train, validation, ckpt, new TrainingState(0, 0, c.Seed), null, CancellationToken.None);

        var curve = File.ReadLines(Path.Combine(_dir, "loss.csv")).Skip(1).Select(l => l.Split(','))
            .Where(cells => cells[3].Length > 0)
            .Select(cells => (Step: long.Parse(cells[0], CultureInfo.InvariantCulture), Loss: double.Parse(cells[3], CultureInfo.InvariantCulture)))
            .ToList();
        Assert.Equal(20, curve.Count);
        var min = curve.MinBy(x => x.Loss);
        Assert.True(min.Step > curve[0].Step && curve[^1].Loss > min.Loss + 0.01,
            $"the validation curve should fall then rise; minimum {min.Loss} at step {min.Step}, last {curve[^1].Loss}");
        // Lower bound: the BCE of any score against label 0.7 is at least the label's entropy.
        Assert.True(min.Loss >= -(0.7 * Math.Log(0.7) + 0.3 * Math.Log(0.3)) - 1e-6);

        Assert.Equal(min.Step, result.BestStep);
        Assert.Equal(min.Loss, result.BestValidationLoss!.Value, 6);
        Assert.Equal(result.BestValidationLoss.Value, PolicyTrainer.ValidationLoss(model, validation, c.BatchSize), 12);
        Assert.Equal(curve[^1].Loss, result.ValidationLoss, 6);

        // A re-run from the final checkpoint trains nothing and restores the same parameters from best.bin.
        var (last, state) = Checkpoint.Load(ckpt);
        Assert.Equal(40, state.Step);
        var resumed = new TrainableLlama(last);
        Assert.Equal(curve[^1].Loss, PolicyTrainer.ValidationLoss(resumed, validation, c.BatchSize), 6);
        var again = FineTuneLoop.Train(c, resumed, train, validation, ckpt, state, null, CancellationToken.None);
        Assert.Equal(result.BestStep, again.BestStep);
        // An idle session reports the wall time the log holds for the session that ran the last step.
        double loggedSeconds = double.Parse(File.ReadLines(Path.Combine(_dir, "loss.csv")).Last().Split(',')[6], CultureInfo.InvariantCulture);
        Assert.True(loggedSeconds > 0);
        Assert.Equal(loggedSeconds, again.WallTime.TotalSeconds, 6);
        Assert.Equal(result.BestValidationLoss.Value, PolicyTrainer.ValidationLoss(resumed, validation, c.BatchSize), 12);
    }

    [Fact]
    public void Without_early_stopping_the_loop_keeps_the_last_parameters_and_its_result_serializes()
    {
        var c = new FineTuneConfig { Name = "plain", Seed = 1, Steps = 4, BatchSize = 2, LearningRate = 2e-3f, WarmupSteps = 0, CheckpointEvery = 2, OutputDir = _dir };
        Directory.CreateDirectory(_dir);
        var model = TinyModels.ByteValueModel(5);
        var validation = Labelled(0.7f);
        var result = FineTuneLoop.Train(c, model, Labelled(1f), validation, Path.Combine(_dir, "checkpoint.bin"), new TrainingState(0, 0, c.Seed), null, CancellationToken.None);
        Assert.Equal((0L, (double?)null), (result.BestStep, result.BestValidationLoss));
        Assert.Equal(result.ValidationLoss, PolicyTrainer.ValidationLoss(model, validation, c.BatchSize), 12);
        Assert.False(File.Exists(Path.Combine(_dir, BestParameters.CheckpointFile)));
        Assert.Contains("\"BestValidationLoss\":null", System.Text.Json.JsonSerializer.Serialize(result), StringComparison.Ordinal);
    }

    [Fact]
    public void A_fresh_run_drops_a_stale_record_and_keeps_the_first_of_equal_losses()
    {
        Directory.CreateDirectory(_dir);
        var p = TinyModels.ByteValueModel(5).Parameters;
        var stale = BestParameters.Open(_dir, 0);
        Assert.True(stale.Offer(10, 0.5, p, new TrainingState(10, 0, 1)));
        Assert.Equal(0, BestParameters.Open(_dir, 0).Step);           // starting over forgets it
        var b = BestParameters.Open(_dir, 0);
        Assert.True(b.Offer(2, 0.4, p, new TrainingState(2, 0, 1)));
        Assert.False(b.Offer(4, 0.4, p, new TrainingState(4, 0, 1)));
        Assert.Equal((2L, 0.4), (b.Step, b.Loss));
        Assert.Equal(2, BestParameters.Open(_dir, 3).Step);           // resuming after it keeps it
        Assert.Equal(0, BestParameters.Open(_dir, 1).Step);           // resuming before it drops it (the run redoes that stretch)
    }
}
