using System.Text.Json;
using Ponder.Models;
using Ponder.Tokenization;

namespace Ponder.Training;

/// <summary>
/// Everything a policy training run depends on, read from a JSON file (camelCase keys). Paths are relative to the
/// working directory. The same file and seed reproduce the same weights.
/// </summary>
public sealed record TrainingConfig
{
    /// <summary>Run name (used in the model card).</summary>
    public string Name { get; init; } = "policy";
    /// <summary>Root of every random stream (data splits, init, data order, dropout, sampling).</summary>
    public ulong Seed { get; init; } = 1;
    /// <summary>Model width.</summary>
    public int DModel { get; init; } = 128;
    /// <summary>Decoder layers.</summary>
    public int NLayers { get; init; } = 4;
    /// <summary>Query heads.</summary>
    public int NHeads { get; init; } = 4;
    /// <summary>Key/value heads (GQA).</summary>
    public int NKvHeads { get; init; } = 2;
    /// <summary>SwiGLU hidden width.</summary>
    public int DFf { get; init; } = 384;
    /// <summary>Context length in tokens (bytes).</summary>
    public int BlockSize { get; init; } = 256;
    /// <summary>LM head shares the embedding.</summary>
    public bool TiedEmbeddings { get; init; } = true;
    /// <summary>RoPE base.</summary>
    public double RopeTheta { get; init; } = 10000;
    /// <summary>Training questions generated (the train split).</summary>
    public int TrainQuestions { get; init; } = 50000;
    /// <summary>Train levels are u^levelPower with u uniform: above 1 tilts toward easy questions.</summary>
    public double LevelPower { get; init; } = 1;
    /// <summary>Validation questions.</summary>
    public int ValidationQuestions { get; init; } = 500;
    /// <summary>Test questions (the difficulty ladder).</summary>
    public int TestQuestions { get; init; } = 500;
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 1000;
    /// <summary>Rows per batch (each of BlockSize packed tokens).</summary>
    public int BatchSize { get; init; } = 8;
    /// <summary>Peak learning rate.</summary>
    public float LearningRate { get; init; } = 3e-3f;
    /// <summary>Final learning rate as a fraction of the peak.</summary>
    public float MinLearningRateFraction { get; init; } = 0.1f;
    /// <summary>Linear warmup steps.</summary>
    public int WarmupSteps { get; init; } = 50;
    /// <summary>AdamW decoupled weight decay (matrices only).</summary>
    public float WeightDecay { get; init; } = 0.1f;
    /// <summary>AdamW beta1.</summary>
    public float Beta1 { get; init; } = 0.9f;
    /// <summary>AdamW beta2.</summary>
    public float Beta2 { get; init; } = 0.95f;
    /// <summary>Global gradient norm clip (0 = off).</summary>
    public double GradClip { get; init; } = 1.0;
    /// <summary>Dropout on residual branches (0 = off).</summary>
    public float Dropout { get; init; }
    /// <summary>Steps between checkpoints.</summary>
    public int CheckpointEvery { get; init; } = 100;
    /// <summary>Steps between validation-loss measurements.</summary>
    public int EvalEvery { get; init; } = 100;
    /// <summary>Samples per test question at temperature 1 for pass@1.</summary>
    public int EvalSamples { get; init; } = 4;
    /// <summary>Checkpoints, logs, splits and the plot go here (keep out of git).</summary>
    public string OutputDir { get; init; } = "out/policy";
    /// <summary>The final weights and model card go here (null = not exported).</summary>
    public string? WeightsDir { get; init; }

    /// <summary>Reads a config file (<see cref="ConfigJson"/>); throws <see cref="InvalidDataException"/> naming the file and the field on bad JSON or values.</summary>
    public static TrainingConfig Load(string path) => ConfigJson.Load<TrainingConfig>(path, "training config").Validate(path);

    /// <summary>This config as JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, ConfigJson.Options);

    /// <summary>Throws <see cref="InvalidDataException"/> naming the field when a value is impossible.</summary>
    public TrainingConfig Validate(string source)
    {
        void Positive(string name, long v) { if (v <= 0) throw new InvalidDataException($"{source}: {name} = {v} must be positive"); }
        Positive("steps", Steps); Positive("batchSize", BatchSize); Positive("blockSize", BlockSize);
        Positive("trainQuestions", TrainQuestions); Positive("testQuestions", TestQuestions); Positive("validationQuestions", ValidationQuestions);
        Positive("checkpointEvery", CheckpointEvery); Positive("evalEvery", EvalEvery); Positive("evalSamples", EvalSamples);
        if (!(LearningRate > 0)) throw new InvalidDataException($"{source}: learningRate = {LearningRate} must be positive");
        if (!(Dropout >= 0 && Dropout < 1)) throw new InvalidDataException($"{source}: dropout = {Dropout} must be in [0, 1)");
        if (WarmupSteps < 0 || WarmupSteps > Steps) throw new InvalidDataException($"{source}: warmupSteps = {WarmupSteps} must be in [0, steps]");
        ModelConfig();
        return this;
    }

    /// <summary>The model's shape: a byte-level Llama with BOS/EOS from <see cref="ByteTokenizer"/>.</summary>
    public ModelConfig ModelConfig() => new ModelConfig
    {
        Vocab = ByteTokenizer.PonderVocabSize, DModel = DModel, NLayers = NLayers, NHeads = NHeads, NKvHeads = NKvHeads,
        HeadDim = NHeads > 0 ? DModel / NHeads : 0, DFf = DFf, MaxPositions = BlockSize, TiedEmbeddings = TiedEmbeddings,
        RopeTheta = RopeTheta, BosTokenId = ByteTokenizer.PonderBos, EosTokenIds = [ByteTokenizer.PonderEos],
    }.Validate($"training config '{Name}'");
}
