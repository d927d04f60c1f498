using System.Text.Json;
using Ponder.Tasks;

namespace Ponder.Training;

/// <summary>
/// A PRM or revision-model run (<c>ponder train prm|revision</c>), read from a JSON file (camelCase keys): the
/// policy it starts from and samples with, how much data to make, the fine-tuning schedule and the evaluation.
/// </summary>
public sealed record FineTuneConfig
{
    /// <summary>Run name (used in the model card).</summary>
    public string Name { get; init; } = "prm";
    /// <summary>Root of every random stream.</summary>
    public ulong Seed { get; init; } = 1;
    /// <summary>The policy: a training checkpoint (.bin) or an exported weights folder (weights initialise the new model; samples come from it).</summary>
    public string PolicyCheckpoint { get; init; } = "out/policy-small/checkpoint.bin";
    /// <summary>Seed of the policy's data splits (validation questions are drawn from it).</summary>
    public ulong SplitSeed { get; init; } = 20261128;
    /// <summary>Training questions sampled from the policy.</summary>
    public int Questions { get; init; } = 300;
    /// <summary>Levels of those questions are u^levelPower.</summary>
    public double LevelPower { get; init; } = 1;
    /// <summary>Lowest level of the questions (levels span [minLevel, maxLevel], tilted by levelPower).</summary>
    public double MinLevel { get; init; }
    /// <summary>Highest level of the questions.</summary>
    public double MaxLevel { get; init; } = 1;
    /// <summary>Policy samples per training question (temperature 1).</summary>
    public int SamplesPerQuestion { get; init; } = 16;
    /// <summary>
    /// PRM / value head: where step labels come from. "monte-carlo" (default, Math-Shepherd): the fraction of
    /// <see cref="Rollouts"/> policy rollouts from the step's prefix that end correct. "checker": the task's own step
    /// checker (1 while every step so far is correct, 0 from the first wrong step on; the analogue of human process labels).
    /// </summary>
    public string Labels { get; init; } = MonteCarloLabels;
    /// <summary>The <see cref="Labels"/> value for Monte Carlo rollout labels.</summary>
    public const string MonteCarloLabels = "monte-carlo";
    /// <summary>The <see cref="Labels"/> value for the task checker's labels.</summary>
    public const string CheckerLabels = "checker";
    /// <summary>
    /// What early stopping keeps: "validation-loss" (default: the lowest held-out loss) or, for a PRM,
    /// "within-question-auc" (the highest mean AUC of final-step scores among the held-out questions' own samples:
    /// the ranking a verifier is used for).
    /// </summary>
    public string EarlyStoppingMetric { get; init; } = ValidationLossMetric;
    /// <summary>The <see cref="EarlyStoppingMetric"/> value for the validation loss.</summary>
    public const string ValidationLossMetric = "validation-loss";
    /// <summary>The <see cref="EarlyStoppingMetric"/> value for the held-out within-question AUC.</summary>
    public const string WithinQuestionAucMetric = "within-question-auc";
    /// <summary>
    /// PRM with checker labels: per training question, this many hard negatives added to the training set (never to the
    /// held-out questions): the reference solution with one step's result off by a small amount and the rest carried on
    /// consistently (<c>ArithmeticChainTask.CorruptedSolution</c>), plus the reference itself once. They differ from a right
    /// solution only in arithmetic, so the PRM must check steps rather than guess difficulty. 0 = none.
    /// </summary>
    public int CorruptedPerQuestion { get; init; }
    /// <summary>PRM: Monte Carlo rollouts per step prefix.</summary>
    public int Rollouts { get; init; } = 8;
    /// <summary>PRM: also run rollouts on questions none of whose samples is correct (false: their steps are labelled 0).</summary>
    public bool RolloutUnsolved { get; init; }
    /// <summary>Revision: most examples built per question.</summary>
    public int MaxExamplesPerQuestion { get; init; } = 4;
    /// <summary>Shared cache of the policy's samples on the training questions (JSONL); reused when present.</summary>
    public string SamplesFile { get; init; } = "out/samples-small/train_samples.jsonl";
    /// <summary>PRM / value head: the Monte Carlo step labels (JSONL of <see cref="PrmSample"/>); null = outputDir/prm_labels.jsonl. Built there when missing.</summary>
    public string? LabelsFile { get; init; }
    /// <summary>Value head: a separate PRM to evaluate beside it on the same samples (null = none).</summary>
    public string? CompareWith { get; init; }
    /// <summary>Context of the fine-tuned model (the revision model needs room for 4 attempts).</summary>
    public int BlockSize { get; init; } = 256;
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 500;
    /// <summary>Rows per batch.</summary>
    public int BatchSize { get; init; } = 4;
    /// <summary>Peak learning rate.</summary>
    public float LearningRate { get; init; } = 1e-3f;
    /// <summary>Final learning rate as a fraction of the peak.</summary>
    public float MinLearningRateFraction { get; init; } = 0.1f;
    /// <summary>Linear warmup steps.</summary>
    public int WarmupSteps { get; init; } = 20;
    /// <summary>AdamW weight decay (matrices only).</summary>
    public float WeightDecay { get; init; } = 0.1f;
    /// <summary>Dropout on residual branches.</summary>
    public float Dropout { get; init; }
    /// <summary>Steps between checkpoints.</summary>
    public int CheckpointEvery { get; init; } = 100;
    /// <summary>Steps between validation losses (0: every checkpointEvery steps).</summary>
    public int EvalEvery { get; init; }
    /// <summary>Keep and export the parameters with the lowest validation loss (evaluated every evalEvery steps) rather than the last.</summary>
    public bool EarlyStopping { get; init; }
    /// <summary>Validation questions for the evaluation.</summary>
    public int EvalQuestions { get; init; } = 200;
    /// <summary>PRM: N of best-of-N at evaluation. Revision: length of each revision chain.</summary>
    public int EvalSamples { get; init; } = 16;
    /// <summary>PRM: a previous version's prm_eval.json, shown beside this run's figures in the model card (null = none).</summary>
    public string? BaselineEval { get; init; }
    /// <summary>PRM: a Markdown file appended to the model card (the reading of the figures, which a generator cannot write; null = none).</summary>
    public string? CardNotes { get; init; }
    /// <summary>Checkpoints, caches and logs go here.</summary>
    public string OutputDir { get; init; } = "out/prm";
    /// <summary>Exported weights and model card (null = not exported).</summary>
    public string? WeightsDir { get; init; }

    /// <summary>
    /// Reads a config file (<see cref="ConfigJson"/>); throws <see cref="InvalidDataException"/> naming the file and the
    /// field on bad JSON or values. The files it names (baselineEval, cardNotes) are looked for relative to
    /// <paramref name="baseDirectory"/> (default: the working directory, as the trainer reads them).
    /// </summary>
    public static FineTuneConfig Load(string path, string? baseDirectory = null) =>
        ConfigJson.Load<FineTuneConfig>(path, "fine-tuning config").Validate(path, baseDirectory);

    /// <summary>Throws <see cref="InvalidDataException"/> naming <paramref name="path"/> and the field when a value is impossible.</summary>
    public FineTuneConfig Validate(string path, string? baseDirectory = null)
    {
        var c = this;
        baseDirectory ??= Directory.GetCurrentDirectory();
        void Positive(string name, long v) { if (v <= 0) throw new InvalidDataException($"{path}: {name} = {v} must be positive"); }
        Positive("questions", c.Questions); Positive("samplesPerQuestion", c.SamplesPerQuestion); Positive("rollouts", c.Rollouts);
        Positive("blockSize", c.BlockSize); Positive("steps", c.Steps); Positive("batchSize", c.BatchSize);
        Positive("checkpointEvery", c.CheckpointEvery); Positive("evalQuestions", c.EvalQuestions); Positive("evalSamples", c.EvalSamples);
        Positive("maxExamplesPerQuestion", c.MaxExamplesPerQuestion);
        if (c.EvalEvery < 0) throw new InvalidDataException($"{path}: evalEvery = {c.EvalEvery} must be 0 (every checkpoint) or positive");
        if (!(c.MinLevel >= 0 && c.MinLevel <= c.MaxLevel && c.MaxLevel <= 1))
            throw new InvalidDataException($"{path}: minLevel = {c.MinLevel}, maxLevel = {c.MaxLevel} must satisfy 0 <= minLevel <= maxLevel <= 1");
        if (c.BaselineEval is { } b && !File.Exists(Path.GetFullPath(b, baseDirectory))) throw new InvalidDataException($"{path}: baselineEval '{b}' does not exist");
        if (c.CardNotes is { } n && !File.Exists(Path.GetFullPath(n, baseDirectory))) throw new InvalidDataException($"{path}: cardNotes '{n}' does not exist");
        if (!(c.LearningRate > 0)) throw new InvalidDataException($"{path}: learningRate = {c.LearningRate} must be positive");
        if (c.WarmupSteps < 0 || c.WarmupSteps > c.Steps) throw new InvalidDataException($"{path}: warmupSteps = {c.WarmupSteps} must be in [0, steps]");
        if (!(c.Dropout >= 0 && c.Dropout < 1)) throw new InvalidDataException($"{path}: dropout = {c.Dropout} must be in [0, 1)");
        if (c.CorruptedPerQuestion < 0 || (c.CorruptedPerQuestion > 0 && c.Labels != CheckerLabels))
            throw new InvalidDataException($"{path}: corruptedPerQuestion = {c.CorruptedPerQuestion} needs labels '{CheckerLabels}' and must be >= 0");
        if (c.Labels is not (MonteCarloLabels or CheckerLabels))
            throw new InvalidDataException($"{path}: labels = '{c.Labels}' is not '{MonteCarloLabels}' or '{CheckerLabels}'");
        if (c.EarlyStoppingMetric is not (ValidationLossMetric or WithinQuestionAucMetric))
            throw new InvalidDataException($"{path}: earlyStoppingMetric = '{c.EarlyStoppingMetric}' is not '{ValidationLossMetric}' or '{WithinQuestionAucMetric}'");
        return c;
    }

    /// <summary>This config as JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, ConfigJson.Options);
}
