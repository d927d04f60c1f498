using System.Diagnostics;
using Ponder.Tasks;
using Ponder.Models;

namespace Ponder.Training;

/// <summary>What a fine-tuning loop ended with; with early stopping, the step and validation loss of the parameters it kept (else 0 and null).</summary>
public sealed record FineTuneResult(long Steps, double TrainLoss, double ValidationLoss, double TokensPerSecond, TimeSpan WallTime,
    long BestStep = 0, double? BestValidationLoss = null);

/// <summary>
/// The shared part of the PRM and revision runs: starting weights from the policy's checkpoint (or resuming the run's
/// own checkpoint), and the AdamW loop with checkpoints and the loss log.
/// </summary>
public static class FineTuneLoop
{
    /// <summary>
    /// The run's parameters and state: its own checkpoint when present (under the same config), else the policy's
    /// weights reshaped to <paramref name="shape"/> (tensors the policy lacks, such as a value head, start at zero).
    /// </summary>
    public static (ParameterSet Parameters, TrainingState State) Start(FineTuneConfig c, string checkpointPath, ModelConfig shape)
    {
        Directory.CreateDirectory(c.OutputDir);
        string configPath = Path.Combine(c.OutputDir, "config.json");
        if (File.Exists(checkpointPath) && File.Exists(configPath) && File.ReadAllText(configPath) != c.ToJson())
            throw new InvalidDataException($"{checkpointPath} was made with a different config ({configPath}); use another outputDir or delete that folder");
        File.WriteAllText(configPath, c.ToJson());
        if (File.Exists(checkpointPath)) return Checkpoint.Load(checkpointPath);
        var policy = LoadPolicy(c.PolicyCheckpoint).Parameters;
        var p = new ParameterSet(shape);
        foreach (var t in p.All)
            if (policy.Contains(t.Name)) policy[t.Name].Data.CopyTo(t.Data, 0);
        return (p, new TrainingState(0, 0, c.Seed));
    }

    /// <summary>The policy as a model (for sampling): a training checkpoint file, or an exported weights folder/file (safetensors or GGUF).</summary>
    public static TrainableLlama LoadPolicy(string path)
    {
        if (File.Exists(path) && path.EndsWith(".bin", StringComparison.OrdinalIgnoreCase)) return new(Checkpoint.Load(path).Parameters);
        using var source = ModelFiles.Open(path);
        // A policy with a shared value row samples with its LM head; the row is the value head trainer's business.
        var p = new ParameterSet(source.Config with { SharedValueHead = false });
        foreach (var t in p.All)
        {
            if (!source.Tensors.ContainsKey(t.Name)) throw new InvalidDataException($"{path}: missing tensor '{t.Name}'");
            source.ReadF32(t.Name, t.Data);
        }
        return new(p);
    }

    /// <summary>
    /// Trains to c.Steps from <paramref name="state"/>, checkpointing to <paramref name="checkpointPath"/> and logging
    /// loss.csv. With c.EarlyStopping the model ends holding the parameters of the evaluation with the lowest
    /// validation loss (kept in best.bin beside the checkpoint, so a resumed or re-run finished run restores the same).
    /// </summary>
    /// <param name="selectionLoss">
    /// What early stopping minimises at each evaluation (null = the validation loss): a PRM can keep the parameters that
    /// rank held-out samples best (the negated within-question AUC) rather than those with the lowest loss.
    /// </param>
    public static FineTuneResult Train(FineTuneConfig c, TrainableLlama model, SftData train, SftData validation, string checkpointPath,
        TrainingState state, IProgress<TrainingProgress>? progress, CancellationToken ct, Func<TrainableLlama, double>? selectionLoss = null)
    {
        var adam = new AdamWOptions(0.9f, 0.95f, 1e-8f, c.WeightDecay);
        model.Dropout = c.Dropout;
        string csv = Path.Combine(c.OutputDir, "loss.csv");
        var log = LossLog.Open(csv, state.Step);
        var sw = Stopwatch.StartNew();
        long step = state.Step, cursor = state.DataCursor, tokens = 0;
        double trainLoss = log.LastTrain, valLoss = log.LastValidation;
        int evalEvery = c.EvalEvery > 0 ? c.EvalEvery : Math.Max(1, c.CheckpointEvery);
        var best = c.EarlyStopping ? BestParameters.Open(c.OutputDir, state.Step) : null;
        while (step < c.Steps)
        {
            ct.ThrowIfCancellationRequested();
            var (batch, next) = train.Next(cursor, c.BatchSize);
            float lr = Optimizer.LearningRate(step, c.Steps, c.WarmupSteps, c.LearningRate, c.MinLearningRateFraction);
            trainLoss = PolicyTrainer.TrainStep(model, batch, adam, lr, step, 1.0, DeterministicRandom.ForStream(c.Seed, 3_000_000UL + (ulong)step), out double gradNorm);
            cursor = next; step++; tokens += batch.Count;
            double? val = null;
            if (step % evalEvery == 0 || step == c.Steps)
            {
                valLoss = (double)(val = PolicyTrainer.ValidationLoss(model, validation, c.BatchSize));
                best?.Offer(step, selectionLoss is null ? valLoss : selectionLoss(model), model.Parameters, new TrainingState(step, cursor, c.Seed));
            }
            log.Append(step, lr, trainLoss, val, gradNorm, cursor, sw.Elapsed.TotalSeconds);
            if (step % c.CheckpointEvery == 0 || step == c.Steps)
            {
                Checkpoint.Save(checkpointPath, model.Parameters, new TrainingState(step, cursor, c.Seed));
                log.Flush();
            }
            double tps = tokens / Math.Max(1e-9, sw.Elapsed.TotalSeconds);
            progress?.Report(new TrainingProgress("train", step, c.Steps, trainLoss, tps, sw.Elapsed, TimeSpan.FromSeconds((c.Steps - step) * (double)batch.Count / Math.Max(1, tps))));
        }
        log.Flush();
        LossLog.Plot(csv, Path.Combine(c.OutputDir, "loss.png"), c.Name);
        best?.Restore(model.Parameters);
        // A session that had nothing left to train (a finished run re-exported) reports the wall time of the session
        // that ran the last step, from the log, and no throughput.
        var wall = tokens > 0 ? sw.Elapsed : TimeSpan.FromSeconds(log.LastSeconds);
        return new FineTuneResult(step, trainLoss, valLoss, tokens / Math.Max(1e-9, sw.Elapsed.TotalSeconds), wall,
            best?.Step ?? 0, best is { Step: > 0 } ? best.Loss : null);
    }

    /// <summary>Writes the evaluation JSON to the output folder and, when the config names a weights folder, the weights (with <paramref name="chatTemplate"/> when the model takes chat requests), loss log and plot, evaluation and model card there.</summary>
    public static void Export(FineTuneConfig c, ParameterSet parameters, string evalFile, string evalJson, Func<string> modelCard, string? chatTemplate = null)
    {
        File.WriteAllText(Path.Combine(c.OutputDir, evalFile), evalJson);
        if (c.WeightsDir is null) return;
        ModelExport.WriteWeights(c.WeightsDir, parameters, chatTemplate);
        foreach (string f in new[] { "loss.csv", "loss.png", evalFile })
            File.Copy(Path.Combine(c.OutputDir, f), Path.Combine(c.WeightsDir, f), overwrite: true);
        File.WriteAllText(Path.Combine(c.WeightsDir, "README.md"), modelCard());
    }

    /// <summary>The questions the run samples on: the policy's train distribution, disjoint from validation and test.</summary>
    public static List<string> TrainQuestions(FineTuneConfig c) =>
        ArithmeticChainSplits.Train(c.SplitSeed, c.Questions, c.LevelPower, c.MinLevel, c.MaxLevel).Select(p => p.Question).ToList();
}
