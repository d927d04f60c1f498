using Ponder.Models;

namespace Ponder.TestSupport;

/// <summary>
/// Small model configurations for tests, each exercising one variant. Row lengths are multiples of 32 so every
/// 2-D weight can be stored as Q8_0.
/// </summary>
public static class TestConfigs
{
    /// <summary>GQA (4 query heads over 2 KV heads), tied embeddings, 2 layers.</summary>
    public static ModelConfig Tiny { get; } = new()
    {
        Vocab = 256, DModel = 64, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 16, DFf = 96,
        TiedEmbeddings = true, MaxPositions = 256, BosTokenId = 1, EosTokenIds = [2],
    };

    /// <summary>Untied LM head, one KV head (MQA), and headDim (32) wider than dModel / nHeads (16).</summary>
    public static ModelConfig TinyUntied { get; } = new()
    {
        Vocab = 320, DModel = 64, NLayers = 3, NHeads = 4, NKvHeads = 1, HeadDim = 32, DFf = 128,
        TiedEmbeddings = false, MaxPositions = 256, RopeTheta = 500000, RmsNormEps = 1e-6f,
    };

    /// <summary>Qwen2: biases on Q, K and V; tied embeddings.</summary>
    public static ModelConfig TinyQwen2Bias { get; } = new()
    {
        Architecture = Architecture.Qwen2, QkvBias = true,
        Vocab = 256, DModel = 64, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 16, DFf = 96,
        TiedEmbeddings = true, MaxPositions = 256, RopeTheta = 1000000, RmsNormEps = 1e-6f, EosTokenIds = [3, 4],
    };

    /// <summary>A value head (<c>score.weight</c>, one label) as a PRM has.</summary>
    public static ModelConfig TinyValueHead { get; } = new()
    {
        Head = HeadKind.Value, NumLabels = 1,
        Vocab = 256, DModel = 64, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 16, DFf = 96, MaxPositions = 256,
    };

    /// <summary>
    /// A Qwen2 process reward model (Qwen2ForProcessRewardModel: score.0 / ReLU / score.2, 2 labels). Not in
    /// <see cref="All"/>: llama.cpp has no such head, so it has tests of its own.
    /// </summary>
    public static ModelConfig TinyProcessReward { get; } = TinyQwen2Bias with { Head = HeadKind.ProcessReward, NumLabels = 2, TiedEmbeddings = false, EosTokenIds = [] };

    /// <summary>
    /// A causal LM with a shared value row (<c>value_head.weight</c>) beside its tied LM head. Not in <see cref="All"/>:
    /// llama.cpp refuses the extra tensor, so it has tests of its own.
    /// </summary>
    public static ModelConfig TinySharedValueHead { get; } = Tiny with { SharedValueHead = true };

    /// <summary>Multi-head attention: nHeads == nKvHeads.</summary>
    public static ModelConfig TinyMha { get; } = new()
    {
        Vocab = 288, DModel = 64, NLayers = 2, NHeads = 4, NKvHeads = 4, HeadDim = 16, DFf = 96,
        TiedEmbeddings = false, MaxPositions = 256,
    };

    /// <summary>
    /// Llama 3.1 rope scaling with an original context of 32, so that with headDim 16 the rotary pairs fall in all
    /// three bands: pair 0 (wavelength 6.3) high, pair 1 (19.9) smoothed, pairs 2+ (62.8 and up) divided by the factor.
    /// </summary>
    public static ModelConfig TinyLlama3Rope { get; } = new()
    {
        Vocab = 256, DModel = 64, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 16, DFf = 96,
        TiedEmbeddings = true, MaxPositions = 256, RopeTheta = 10000,
        RopeScaling = new Llama3RopeScaling(Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 32),
    };

    /// <summary>
    /// Qwen3: per-head q/k RMSNorm, no QKV bias, headDim 32 independent of dModel / nHeads (16), untied. Not in
    /// <see cref="All"/> (the scheduler's FLOP prediction does not count the q/k norms yet): see <see cref="Forward"/>.
    /// </summary>
    public static ModelConfig TinyQwen3 { get; } = new()
    {
        Architecture = Architecture.Qwen3, QkNorm = true,
        Vocab = 256, DModel = 64, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 32, DFf = 96,
        TiedEmbeddings = false, MaxPositions = 256, RopeTheta = 1000000, RmsNormEps = 1e-6f, EosTokenIds = [3],
    };

    /// <summary>
    /// Phi-3: fused qkv_proj and gate_up_proj in its files (split at load), untied, GQA. headDim = dModel / nHeads, as
    /// llama.cpp's phi3 requires.
    /// </summary>
    public static ModelConfig TinyPhi3 { get; } = new()
    {
        Architecture = Architecture.Phi3,
        Vocab = 320, DModel = 64, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 16, DFf = 128,
        TiedEmbeddings = false, MaxPositions = 256, RopeTheta = 10000, RmsNormEps = 1e-5f,
    };

    /// <summary>Every config above, by name (for theories).</summary>
    public static IReadOnlyDictionary<string, ModelConfig> All { get; } = new Dictionary<string, ModelConfig>
    {
        [nameof(Tiny)] = Tiny,
        [nameof(TinyUntied)] = TinyUntied,
        [nameof(TinyQwen2Bias)] = TinyQwen2Bias,
        [nameof(TinyValueHead)] = TinyValueHead,
        [nameof(TinyMha)] = TinyMha,
        [nameof(TinyLlama3Rope)] = TinyLlama3Rope,
    };

    /// <summary><see cref="All"/> plus the architectures the forward pass runs beyond them (<see cref="TinyQwen3"/>, <see cref="TinyPhi3"/>).</summary>
    public static IReadOnlyDictionary<string, ModelConfig> Forward { get; } =
        new Dictionary<string, ModelConfig>(All) { [nameof(TinyQwen3)] = TinyQwen3, [nameof(TinyPhi3)] = TinyPhi3 };
}
