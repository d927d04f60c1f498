using Ponder.Tasks;
using Ponder.Models;
using Ponder.Training;
using Ponder.Tokenization;

namespace Ponder.Training.Tests;

public sealed class TrainingTests
{
    static ModelConfig Small() => new ModelConfig
    {
        Vocab = ByteTokenizer.PonderVocabSize, DModel = 32, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 8, DFf = 64,
        MaxPositions = 64, TiedEmbeddings = true, BosTokenId = ByteTokenizer.PonderBos, EosTokenIds = [ByteTokenizer.PonderEos],
    }.Validate("small");

    static SftData TinyData(int seqLen = 64)
    {
        var task = new ArithmeticChainTask();
        string[] qs = ["1+2", "3*4", "7-9", "2*3+1"];
        return new SftData(qs.Select(q => SftExample.FromText(task.Prompt(q), ArithmeticChainTask.Solve(q).Solution)), seqLen, 1);
    }

    [Fact]
    public void Tiny_model_overfits_four_questions_and_then_solves_them_greedily()
    {
        var p = new ParameterSet(Small());
        p.Initialize(1);
        var model = new TrainableLlama(p);
        var data = TinyData();
        var adam = new AdamWOptions(WeightDecay: 0);
        double loss = double.NaN;
        long cursor = 0;
        for (int step = 0; step < 150; step++)
        {
            var (batch, next) = data.Next(cursor, 2);
            cursor = next;
            loss = PolicyTrainer.TrainStep(model, batch, adam, 1e-2f, step, 1.0, new DeterministicRandom(1), out _);
        }
        // Starts near ln(259) = 5.56 nats.
        Assert.True(loss < 0.05, $"loss after 150 steps is {loss}, expected < 0.05");
        var report = PassAtOne.Measure(model, new ArithmeticChainTask(), ["1+2", "3*4", "7-9", "2*3+1"], 0, 1, 1, 64);
        Assert.Equal(1.0, report.Overall);
    }

    [Fact]
    public void Save_load_resume_gives_identical_next_step_loss()
    {
        var p = new ParameterSet(Small());
        p.Initialize(2);
        var model = new TrainableLlama(p) { Dropout = 0.05f };
        var data = TinyData();
        var adam = new AdamWOptions();
        long cursor = 0;
        for (int step = 0; step < 3; step++)
        {
            var (b, next) = data.Next(cursor, 2);
            cursor = next;
            PolicyTrainer.TrainStep(model, b, adam, 3e-3f, step, 1.0, DeterministicRandom.ForStream(9, (ulong)step), out _);
        }
        string path = Path.Combine(Path.GetTempPath(), $"ponder-ckpt-{Guid.NewGuid():N}.bin");
        try
        {
            Checkpoint.Save(path, p, new TrainingState(3, cursor, 9));
            var (p2, state) = Checkpoint.Load(path);
            Assert.Equal(new TrainingState(3, cursor, 9), state);
            var resumed = new TrainableLlama(p2) { Dropout = 0.05f };
            // Two more steps on each: the second loss depends on the restored AdamW moments too.
            var losses = new double[2][];
            foreach (var (m, k) in new[] { (model, 0), (resumed, 1) })
            {
                long c = state.DataCursor;
                losses[k] = new double[2];
                for (int step = 3; step < 5; step++)
                {
                    var (b, next) = data.Next(c, 2);
                    c = next;
                    losses[k][step - 3] = PolicyTrainer.TrainStep(m, b, adam, 3e-3f, step, 1.0, DeterministicRandom.ForStream(9, (ulong)step), out _);
                }
            }
            Assert.Equal(losses[0], losses[1]);

            File.WriteAllBytes(path, File.ReadAllBytes(path)[..100]);
            var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path));
            Assert.Contains(path, e.Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Packing_masks_prompts_and_padding_and_restarts_positions_per_document()
    {
        var data = TinyData(64);
        var (b, next) = data.Next(0, 1);
        Assert.True(next >= 2);
        Assert.Equal(0, b.Positions[0]);
        Assert.Equal(ByteTokenizer.PonderBos, b.Tokens[0]);
        int secondDoc = Array.IndexOf(b.Tokens, ByteTokenizer.PonderBos, 1);
        Assert.True(secondDoc > 0);
        Assert.Equal(0, b.Positions[secondDoc]);
        Assert.Equal(secondDoc, b.SegmentStart[secondDoc]);
        Assert.Equal(ByteTokenizer.PonderEos, b.Targets[secondDoc - 1]);
        Assert.Equal(1f, b.Mask[secondDoc - 1]);
        // "Q: ..." prompt bytes are not targets; the first solution byte is.
        Assert.Equal(0f, b.Mask[0]);
        Assert.Equal(0f, b.Mask[b.Tokens.Length - 1] * (b.Tokens[^1] == ByteTokenizer.PonderPad ? 1 : 0));
    }

    [Fact]
    public void Schedule_warms_up_linearly_and_decays_to_the_floor()
    {
        Assert.Equal(0.1f, Optimizer.LearningRate(0, 100, 10, 1f, 0.1f), 5);
        Assert.Equal(1f, Optimizer.LearningRate(9, 100, 10, 1f, 0.1f), 5);
        Assert.Equal(0.55f, Optimizer.LearningRate(55, 100, 10, 1f, 0.1f), 4);
        Assert.Equal(0.1f, Optimizer.LearningRate(100, 100, 10, 1f, 0.1f), 5);
    }

    [Fact]
    public void Bad_batches_and_configs_fail_with_named_errors()
    {
        var model = new TrainableLlama(new ParameterSet(Small()));
        var b = TinyData().Next(0, 1).Batch;
        b.Tokens[3] = 999;
        Assert.Contains("token 999", Assert.Throws<ArgumentException>(() => model.Forward(b)).Message);
        string path = Path.Combine(Path.GetTempPath(), $"ponder-cfg-{Guid.NewGuid():N}.json");
        try
        {
            File.WriteAllText(path, "{\"steps\": 0}");
            Assert.Contains("steps", Assert.Throws<InvalidDataException>(() => TrainingConfig.Load(path)).Message);
            File.WriteAllText(path, "{\"nHeads\": 3, \"dModel\": 128}");
            Assert.Throws<InvalidDataException>(() => TrainingConfig.Load(path));
        }
        finally { File.Delete(path); }
    }
}
