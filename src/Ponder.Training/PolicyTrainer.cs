using System.Diagnostics;
using System.Globalization;
using System.Text;
using Ponder.Tasks;

namespace Ponder.Training;

/// <summary>What a finished policy run produced.</summary>
public sealed record PolicyTrainingResult(string CheckpointPath, double FinalTrainLoss, double FinalValidationLoss, long TrainTokens,
    double TokensPerSecond, TimeSpan WallTime, PassAtOneReport? Greedy, PassAtOneReport? Sampled);

/// <summary>
/// Supervised training of a policy on the arithmetic-chain task: writes the splits, trains with AdamW (resuming
/// from <c>checkpoint.bin</c> in the output folder when present), logs <c>loss.csv</c> and <c>loss.png</c>, then
/// measures pass@1 on the test split greedily and at temperature 1.
/// </summary>
public static class PolicyTrainer
{
    /// <summary>Checkpoint file name inside the output folder.</summary>
    public const string CheckpointFile = "checkpoint.bin";

    /// <summary>Runs (or resumes) <paramref name="config"/>; <paramref name="evaluate"/> false skips the pass@1 measurement.</summary>
    public static PolicyTrainingResult Run(TrainingConfig config, IProgress<TrainingProgress>? progress, CancellationToken ct, bool evaluate = true)
    {
        Directory.CreateDirectory(config.OutputDir);
        string ckpt = Path.Combine(config.OutputDir, CheckpointFile);
        string configPath = Path.Combine(config.OutputDir, "config.json");
        // A checkpoint only resumes the run that made it: same data, schedule and shapes.
        if (File.Exists(ckpt) && File.Exists(configPath) && File.ReadAllText(configPath) != config.ToJson())
            throw new InvalidDataException($"{ckpt} was made with a different training config ({configPath}); use another outputDir or delete that folder");
        File.WriteAllText(configPath, config.ToJson());
        var task = new ArithmeticChainTask();
        progress?.Report(new TrainingProgress("data", 0, config.Steps, double.NaN, 0, TimeSpan.Zero, TimeSpan.Zero));
        var train = ArithmeticChainSplits.Train(config.Seed, config.TrainQuestions, config.LevelPower);
        var validation = ArithmeticChainSplits.Validation(config.Seed, config.ValidationQuestions);
        var test = ArithmeticChainSplits.Test(config.Seed, config.TestQuestions);
        ArithmeticChainSplits.WriteJsonl(Path.Combine(config.OutputDir, "train.jsonl"), train);
        ArithmeticChainSplits.WriteJsonl(Path.Combine(config.OutputDir, "validation.jsonl"), validation);
        ArithmeticChainSplits.WriteJsonl(Path.Combine(config.OutputDir, "test.jsonl"), test);
        var trainData = new SftData(train.Select(p => SftExample.FromText(task.Prompt(p.Question), p.Solution)), config.BlockSize, config.Seed);
        var valData = new SftData(validation.Select(p => SftExample.FromText(task.Prompt(p.Question), p.Solution)), config.BlockSize, config.Seed);

        ParameterSet parameters;
        TrainingState state;
        if (File.Exists(ckpt))
        {
            (parameters, state) = Checkpoint.Load(ckpt);
            if (parameters.Config != config.ModelConfig() && parameters.Config.ToHuggingFaceJson() != config.ModelConfig().ToHuggingFaceJson())
                throw new InvalidDataException($"{ckpt}: the checkpoint's model shape differs from the config's; delete it or change outputDir");
        }
        else
        {
            parameters = new ParameterSet(config.ModelConfig());
            parameters.Initialize(config.Seed);
            state = new TrainingState(0, 0, config.Seed);
        }
        var model = new TrainableLlama(parameters) { Dropout = config.Dropout };
        var adam = new AdamWOptions(config.Beta1, config.Beta2, 1e-8f, config.WeightDecay);

        string csvPath = Path.Combine(config.OutputDir, "loss.csv");
        var log = LossLog.Open(csvPath, state.Step);
        var sw = Stopwatch.StartNew();
        long tokensThisRun = 0;
        double trainLoss = double.NaN, valLoss = log.LastValidation;
        long step = state.Step, cursor = state.DataCursor;
        while (step < config.Steps)
        {
            ct.ThrowIfCancellationRequested();
            var (batch, next) = trainData.Next(cursor, config.BatchSize);
            float lr = Optimizer.LearningRate(step, config.Steps, config.WarmupSteps, config.LearningRate, config.MinLearningRateFraction);
            trainLoss = TrainStep(model, batch, adam, lr, step, config.GradClip, DeterministicRandom.ForStream(config.Seed, 2_000_000UL + (ulong)step), out double gradNorm);
            cursor = next;
            step++;
            tokensThisRun += batch.Count;
            double? val = null;
            if (step % config.EvalEvery == 0 || step == config.Steps)
                valLoss = (double)(val = ValidationLoss(model, valData, config.BatchSize));
            log.Append(step, lr, trainLoss, val, gradNorm, cursor, sw.Elapsed.TotalSeconds);
            if (step % config.CheckpointEvery == 0 || step == config.Steps)
            {
                Checkpoint.Save(ckpt, parameters, new TrainingState(step, cursor, config.Seed));
                log.Flush();
            }
            double tps = tokensThisRun / Math.Max(1e-9, sw.Elapsed.TotalSeconds);
            var eta = TimeSpan.FromSeconds((config.Steps - step) * (double)batch.Count / Math.Max(1, tps));
            progress?.Report(new TrainingProgress("train", step, config.Steps, trainLoss, tps, sw.Elapsed, eta));
        }
        log.Flush();
        var wall = sw.Elapsed;
        double tokensPerSecond = tokensThisRun / Math.Max(1e-9, wall.TotalSeconds);
        LossLog.Plot(csvPath, Path.Combine(config.OutputDir, "loss.png"), config.Name);

        PassAtOneReport? greedy = null, sampled = null;
        if (evaluate)
        {
            var questions = test.Select(p => p.Question).ToList();
            progress?.Report(new TrainingProgress("eval greedy", step, config.Steps, trainLoss, tokensPerSecond, sw.Elapsed, TimeSpan.Zero));
            greedy = PassAtOne.Measure(model, task, questions, 0, 1, config.Seed, config.BlockSize);
            progress?.Report(new TrainingProgress("eval T=1", step, config.Steps, trainLoss, tokensPerSecond, sw.Elapsed, TimeSpan.Zero));
            sampled = PassAtOne.Measure(model, task, questions, 1, config.EvalSamples, config.Seed, config.BlockSize);
            File.WriteAllText(Path.Combine(config.OutputDir, "pass_at_1.json"), System.Text.Json.JsonSerializer.Serialize(new { greedy, sampled }));
        }
        return new PolicyTrainingResult(ckpt, trainLoss, valLoss, cursor > 0 ? trainData.TokensPerEpoch * cursor / trainData.Count : 0,
            tokensPerSecond, wall, greedy, sampled);
    }

    /// <summary>One optimizer step: forward, backward, clip, AdamW. Returns the loss before the update.</summary>
    public static double TrainStep(TrainableLlama model, TrainingBatch batch, AdamWOptions adam, float lr, long step, double gradClip, DeterministicRandom dropoutRng, out double gradNorm)
    {
        double loss = model.Forward(batch, dropoutRng);
        model.Parameters.ZeroGrad();
        model.Backward();
        gradNorm = Optimizer.ClipGradNorm(model.Parameters, gradClip);
        Optimizer.AdamWStep(model.Parameters, adam, lr, step + 1);
        return loss;
    }

    /// <summary>Mean masked loss over the whole validation set (dropout off).</summary>
    public static double ValidationLoss(TrainableLlama model, SftData data, int batchSize)
    {
        double sum = 0, weight = 0;
        long cursor = 0;
        while (cursor < data.Count)
        {
            var (batch, next) = data.Next(cursor, batchSize);
            double n = batch.Mask.Sum();
            sum += model.Forward(batch) * n;
            weight += n;
            cursor = next;
        }
        return sum / Math.Max(1, weight);
    }
}

/// <summary>The loss log: <c>step,lr,train_loss,val_loss,grad_norm,cursor,seconds</c> rows, kept consistent across resumes.</summary>
sealed class LossLog
{
    readonly string path;
    readonly StringBuilder pending = new();
    public double LastValidation { get; private set; } = double.NaN;
    public double LastTrain { get; private set; } = double.NaN;
    /// <summary>Wall seconds of the session that logged the last kept row (0 when none).</summary>
    public double LastSeconds { get; private set; }

    LossLog(string path) => this.path = path;

    /// <summary>Opens the log, dropping rows at or after <paramref name="resumeStep"/> (a resumed run rewrites them).</summary>
    public static LossLog Open(string path, long resumeStep)
    {
        var log = new LossLog(path);
        var kept = new List<string> { "step,lr,train_loss,val_loss,grad_norm,cursor,seconds" };
        if (File.Exists(path))
            foreach (var line in File.ReadLines(path).Skip(1))
            {
                var cells = line.Split(',');
                if (cells.Length < 7 || !long.TryParse(cells[0], CultureInfo.InvariantCulture, out long s) || s > resumeStep) continue;
                kept.Add(line);
                if (double.TryParse(cells[2], CultureInfo.InvariantCulture, out double tr)) log.LastTrain = tr;
                if (double.TryParse(cells[3], CultureInfo.InvariantCulture, out double v)) log.LastValidation = v;
                if (double.TryParse(cells[6], CultureInfo.InvariantCulture, out double sec)) log.LastSeconds = sec;
            }
        File.WriteAllLines(path, kept);
        return log;
    }

    public void Append(long step, float lr, double train, double? val, double gradNorm, long cursor, double seconds)
    {
        pending.Append(CultureInfo.InvariantCulture, $"{step},{lr:G6},{train:F6},{(val is double v ? v.ToString("F6", CultureInfo.InvariantCulture) : "")},{gradNorm:G6},{cursor},{seconds:F2}\n");
        if (val is double x) LastValidation = x;
    }

    public void Flush()
    {
        File.AppendAllText(path, pending.ToString());
        pending.Clear();
    }

    /// <summary>Draws train and validation loss against step.</summary>
    public static void Plot(string csvPath, string pngPath, string title)
    {
        var steps = new List<double>(); var train = new List<double>(); var valSteps = new List<double>(); var val = new List<double>();
        foreach (var line in File.ReadLines(csvPath).Skip(1))
        {
            var c = line.Split(',');
            double s = double.Parse(c[0], CultureInfo.InvariantCulture);
            steps.Add(s); train.Add(double.Parse(c[2], CultureInfo.InvariantCulture));
            if (c[3].Length > 0) { valSteps.Add(s); val.Add(double.Parse(c[3], CultureInfo.InvariantCulture)); }
        }
        var plot = new ScottPlot.Plot();
        if (steps.Count > 0) plot.Add.Scatter(steps.ToArray(), train.ToArray()).LegendText = "train";
        if (valSteps.Count > 0) plot.Add.Scatter(valSteps.ToArray(), val.ToArray()).LegendText = "validation";
        plot.Axes.Left.Label.Text = "loss (nats/token, solution tokens)";
        plot.Axes.Bottom.Label.Text = "step";
        plot.Title(title);
        plot.ShowLegend();
        plot.SavePng(pngPath, 800, 500);
    }
}
