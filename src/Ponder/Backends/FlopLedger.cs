namespace Ponder.Backends;

/// <summary>Where FLOPs go, as docs/method.md's exact accounting splits them.</summary>
public enum FlopCategory
{
    /// <summary>Q, K, V, output and SwiGLU projections: 2 FLOPs per multiply-add.</summary>
    Projection,
    /// <summary>Attention scores and weighted values: 4 * nHeads * headDim per causal key.</summary>
    Attention,
    /// <summary>The LM head, only at positions whose logits are computed.</summary>
    LmHead,
    /// <summary>A PRM's value head, or both layers of a process reward head (a token-logit PRM's logits are LM head).</summary>
    PrmHead,
    /// <summary>Norms, RoPE, softmax, SiLU, ReLU, residuals, biases (per-element costs in <see cref="OpFlops"/>).</summary>
    Elementwise,
}

/// <summary>FLOPs by category, as exact integers. Not thread-safe: one per backend, which runs one op at a time.</summary>
public sealed class FlopLedger
{
    readonly long[] _byCategory = new long[Enum.GetValues<FlopCategory>().Length];

    /// <summary>FLOPs counted in <paramref name="category"/>.</summary>
    public long this[FlopCategory category] => _byCategory[(int)category];
    /// <summary>FLOPs over all categories.</summary>
    public long Total => _byCategory.Sum();

    /// <summary>Counts <paramref name="flops"/> in <paramref name="category"/> (checked: an overflow throws).</summary>
    public void Add(FlopCategory category, long flops)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(flops);
        _byCategory[(int)category] = checked(_byCategory[(int)category] + flops);
    }

    /// <summary>A copy of the current counts.</summary>
    public FlopLedger Snapshot()
    {
        var copy = new FlopLedger();
        _byCategory.CopyTo(copy._byCategory, 0);
        return copy;
    }

    /// <summary>Counts accumulated since <paramref name="earlier"/> (a snapshot of this ledger).</summary>
    public FlopLedger Since(FlopLedger earlier)
    {
        var diff = new FlopLedger();
        for (int i = 0; i < _byCategory.Length; i++) diff._byCategory[i] = _byCategory[i] - earlier._byCategory[i];
        return diff;
    }

    /// <summary>Sets every count to zero.</summary>
    public void Reset() => Array.Clear(_byCategory);

    /// <inheritdoc/>
    public override string ToString() =>
        string.Join(", ", Enum.GetValues<FlopCategory>().Select(c => $"{c}={this[c]}")) + $", Total={Total}";
}

/// <summary>
/// Per-op FLOP formulas, shared by every backend so they report identical counts. A multiply-add is 2 FLOPs.
/// Element-wise costs are conventions documented here (docs/method.md asks for a separate, documented category):
/// <list type="bullet">
/// <item>RMSNorm: 4 per element (square, accumulate, scale by 1/rms, scale by weight).</item>
/// <item>RoPE: 6 per rotated pair (4 multiplies, 2 adds), i.e. 3 per element of every rotated head.</item>
/// <item>Softmax in attention: 5 per score (scale, running max, subtract, exp, normalize).</item>
/// <item>SwiGLU: 5 per element of dFf (SiLU as negate-exp-add-divide counted 4, times up 1).</item>
/// <item>Residual add and bias add: 1 per element.</item>
/// <item>ReLU: 1 per element (one compare-select).</item>
/// </list>
/// </summary>
public static class OpFlops
{
    /// <summary>n rows through a [rows, cols] weight: 2·n·rows·cols.</summary>
    public static long MatMul(long n, long rows, long cols) => 2 * n * rows * cols;
    /// <summary>RMSNorm of n rows of <paramref name="width"/>: 4 per element.</summary>
    public static long RmsNorm(long n, long width) => 4 * n * width;
    /// <summary>RoPE on n rows of nHeads heads: 3 per element.</summary>
    public static long Rope(long n, long nHeads, long headDim) => 3 * n * nHeads * headDim;
    /// <summary>Scores and weighted values: 2·h·e·K + 2·h·e·K.</summary>
    public static long Attention(long nHeads, long headDim, long causalKeys) => 4 * nHeads * headDim * causalKeys;
    /// <summary>Attention's softmax: 5 per score.</summary>
    public static long Softmax(long nHeads, long causalKeys) => 5 * nHeads * causalKeys;
    /// <summary>SwiGLU of n rows: 5 per element of dFf.</summary>
    public static long SwiGlu(long n, long dFf) => 5 * n * dFf;
    /// <summary>Residual or bias add over n rows: 1 per element.</summary>
    public static long Add(long n, long width) => n * width;
    /// <summary>ReLU over n rows: 1 per element.</summary>
    public static long Relu(long n, long width) => n * width;
}
