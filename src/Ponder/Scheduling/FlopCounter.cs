using Ponder.Backends;
using Ponder.Models;

namespace Ponder.Scheduling;

/// <summary>
/// One sequence's share of a batched forward: <see cref="NewTokens"/> rows (n) computed after <see cref="Context"/>
/// cached tokens (p), with head outputs at <see cref="OutputRows"/> of them.
/// </summary>
public readonly record struct ChunkWork(int NewTokens, int Context, int OutputRows)
{
    /// <summary>Exact causal key count of the chunk: every new token at position p + i attends to p + i + 1 keys.</summary>
    public long CausalKeys => (long)NewTokens * Context + (long)NewTokens * (NewTokens + 1) / 2;
}

/// <summary>
/// Predicts, before a forward runs, the exact FLOPs <see cref="Transformer.Forward"/> will perform, by category, from the
/// model's shape and the planned batch alone. Every term mirrors one op of the forward and uses <see cref="OpFlops"/>,
/// so the prediction equals what the backend's ledger reports, to the FLOP. With d = dModel, h = nHeads, g = nKvHeads,
/// e = headDim, f = dFf, L = nLayers, H = head rows (vocab, vocab + 1 with a shared value row, or labels), a chunk of n new tokens after p cached ones
/// with m output rows costs:
/// <code>
///   projection   L · n · (2·d·(h·e + 2·g·e) + 2·h·e·d + 2·3·d·f)
///   attention    L · 4·h·e·K                      K = n·p + n(n+1)/2 (exact causal keys)
///   head         2·d·H · m                         LM head (H = vocab, + 1 for a shared value row: counted as
///                                                 LM head, it is one GEMM) or PRM value head (H = numLabels)
///              + 2·d·d · m if process reward      its first layer score.0 (PRM head)
///   elementwise  L · (2·4·n·d                      two RMSNorms
///                   + 3·n·(h + g)·e               RoPE on q and k
///                   + 5·h·K                       softmax
///                   + 2·n·d                       two residual adds
///                   + 5·n·f                       SwiGLU
///                   + n·(h·e + 2·g·e) if biased   Q/K/V biases (Qwen2)
///                   + 4·n·(h + g)·e if q/k norms) per-head RMSNorms on q and k (Qwen3)
///                + 4·m·d + m·H if head bias        final norm (output rows only), value-head bias
///                + 2·m·d if process reward         score.0's bias and the ReLU
/// </code>
/// Every term is a sum over rows or keys, so a batch costs the sum of its chunks, and prefilling a prompt in chunks
/// costs the same as in one piece (Σ over chunks of n·p + n(n+1)/2 is the prompt's n(n+1)/2).
/// </summary>
public sealed class FlopCounter
{
    readonly long _d, _h, _g, _e, _f, _layers, _headRows;
    readonly bool _qkvBias, _qkNorm, _headBias, _prmHidden;
    readonly FlopCategory _headCategory;

    /// <summary>
    /// A counter for <paramref name="config"/>; <paramref name="headBias"/>: the value head adds a bias
    /// (<see cref="Transformer.HasHeadBias"/>; a process reward head always does).
    /// </summary>
    public FlopCounter(ModelConfig config, bool headBias = false)
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        _d = config.DModel; _h = config.NHeads; _g = config.NKvHeads; _e = config.HeadDim; _f = config.DFf; _layers = config.NLayers;
        _headRows = config.HeadRows;
        _qkvBias = config.QkvBias;
        _qkNorm = config.QkNorm;
        _prmHidden = config.Head == HeadKind.ProcessReward;
        _headBias = (headBias && config.Head == HeadKind.Value) || _prmHidden;
        _headCategory = config.Head == HeadKind.LanguageModel ? FlopCategory.LmHead : FlopCategory.PrmHead;
    }

    /// <summary>The counter for a loaded model.</summary>
    public static FlopCounter For(Transformer transformer)
    {
        ArgumentNullException.ThrowIfNull(transformer);
        return new FlopCounter(transformer.Config, transformer.HasHeadBias);
    }

    /// <summary>The model whose forwards this counts.</summary>
    public ModelConfig Config { get; }

    /// <summary>Exact FLOPs of one chunk (see the class summary).</summary>
    public FlopCounts Chunk(ChunkWork chunk)
    {
        long n = chunk.NewTokens, m = chunk.OutputRows;
        if (n < 0 || chunk.Context < 0 || m < 0 || m > n)
            throw new ArgumentOutOfRangeException(nameof(chunk), $"chunk {chunk}: need n >= 0, p >= 0 and 0 <= outputs <= n");
        long keys = chunk.CausalKeys;
        long qDim = _h * _e, kvDim = _g * _e;
        long perLayerProjection = OpFlops.MatMul(n, qDim, _d) + 2 * OpFlops.MatMul(n, kvDim, _d) + OpFlops.MatMul(n, _d, qDim)
            + 2 * OpFlops.MatMul(n, _f, _d) + OpFlops.MatMul(n, _d, _f);
        long perLayerElementwise = 2 * OpFlops.RmsNorm(n, _d) + OpFlops.Rope(n, _h, _e) + OpFlops.Rope(n, _g, _e)
            + OpFlops.Softmax(_h, keys) + 2 * OpFlops.Add(n, _d) + OpFlops.SwiGlu(n, _f)
            + (_qkvBias ? OpFlops.Add(n, qDim) + 2 * OpFlops.Add(n, kvDim) : 0)
            + (_qkNorm ? OpFlops.RmsNorm(n, qDim) + OpFlops.RmsNorm(n, kvDim) : 0);
        long head = OpFlops.MatMul(m, _headRows, _d) + (_prmHidden ? OpFlops.MatMul(m, _d, _d) : 0);
        long elementwise = checked(_layers * perLayerElementwise + OpFlops.RmsNorm(m, _d) + (_headBias ? OpFlops.Add(m, _headRows) : 0)
            + (_prmHidden ? OpFlops.Add(m, _d) + OpFlops.Relu(m, _d) : 0));
        var counts = new FlopCounts(checked(_layers * perLayerProjection), checked(_layers * OpFlops.Attention(_h, _e, keys)), 0, 0, elementwise);
        return counts + FlopCounts.Of(_headCategory, head);
    }

    /// <summary>Exact FLOPs of a chunk of <paramref name="newTokens"/> after <paramref name="context"/> cached tokens with <paramref name="outputRows"/> outputs.</summary>
    public FlopCounts Chunk(int newTokens, int context, int outputRows) => Chunk(new ChunkWork(newTokens, context, outputRows));

    /// <summary>Exact FLOPs of one batched forward: the sum of its chunks.</summary>
    public FlopCounts Forward(ReadOnlySpan<ChunkWork> chunks)
    {
        var total = FlopCounts.Zero;
        foreach (var c in chunks) total += Chunk(c);
        return total;
    }

    /// <summary>
    /// What computing tokens [0, <paramref name="tokens"/>) of a sequence without any cache would cost, without outputs:
    /// the FLOPs saved when those tokens are served from the prefix cache or shared blocks instead.
    /// </summary>
    public FlopCounts Prefill(int tokens) => tokens == 0 ? FlopCounts.Zero : Chunk(tokens, 0, 0);

    /// <summary>
    /// Worst-case FLOPs of decoding <paramref name="steps"/> tokens one at a time, each with one output row, the first
    /// after <paramref name="context"/> cached tokens: Σ_{j&lt;steps} Chunk(1, context + j, 1).
    /// </summary>
    public FlopCounts Decode(int context, int steps)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        if (steps == 0) return FlopCounts.Zero;
        // Only attention and softmax depend on the context, linearly: sum the endpoints instead of looping.
        var first = Chunk(1, context, 1);
        var last = Chunk(1, context + steps - 1, 1);
        long Sum(long a, long b) => checked((a + b) * steps / 2);
        return new FlopCounts(Sum(first.Projection, last.Projection), Sum(first.Attention, last.Attention), Sum(first.LmHead, last.LmHead),
            Sum(first.PrmHead, last.PrmHead), Sum(first.Elementwise, last.Elementwise));
    }

    /// <summary>
    /// The paper's approximation of a forward over <paramref name="tokens"/> tokens: 2 · N · tokens with N the
    /// non-embedding parameters (<see cref="ModelConfig.NonEmbeddingParameters"/>: Kaplan's convention, which leaves
    /// out the embedding, a tied or untied LM head, and attention over the context).
    /// </summary>
    public long Approximate(long tokens) => PaperFlops.Inference(Config.NonEmbeddingParameters, tokens);
}

/// <summary>
/// The paper's FLOP approximations for FLOPs-matched comparisons (Snell et al. 2024, section on exchanging
/// pretraining and test-time compute, after Kaplan et al.): N parameters, D tokens.
/// </summary>
public static class PaperFlops
{
    /// <summary>Pretraining X = 6 · N · D_pretrain.</summary>
    public static long Pretraining(long parameters, long pretrainTokens) => checked(6 * parameters * pretrainTokens);

    /// <summary>Inference Y = 2 · N · D_inference.</summary>
    public static long Inference(long parameters, long inferenceTokens) => checked(2 * parameters * inferenceTokens);

    /// <summary>R = D_inference / D_pretrain (the paper used 0.16, 0.79 and 22).</summary>
    public static double Ratio(double inferenceTokens, double pretrainTokens)
    {
        if (!(pretrainTokens > 0)) throw new ArgumentOutOfRangeException(nameof(pretrainTokens), $"pretraining tokens {pretrainTokens} must be > 0");
        if (!(inferenceTokens >= 0)) throw new ArgumentOutOfRangeException(nameof(inferenceTokens), $"inference tokens {inferenceTokens} must be >= 0");
        return inferenceTokens / pretrainTokens;
    }

    /// <summary>
    /// How many times its greedy inference compute a model must spend at test time to match, in total FLOPs, a model
    /// <paramref name="sizeMultiple"/> (M) times larger: M + 3 · (M − 1) / R. With M ≈ 14 and R = 0.16 this is about 258.
    /// </summary>
    public static double TestTimeMultiplier(double sizeMultiple, double ratio)
    {
        if (!(sizeMultiple >= 1)) throw new ArgumentOutOfRangeException(nameof(sizeMultiple), $"size multiple M = {sizeMultiple} must be >= 1");
        if (!(ratio > 0)) throw new ArgumentOutOfRangeException(nameof(ratio), $"R = {ratio} must be > 0");
        return sizeMultiple + 3 * (sizeMultiple - 1) / ratio;
    }
}
