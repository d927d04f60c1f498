namespace Ponder.Backends.Profiling;

/// <summary>
/// Bytes each op must move at least (f32 activations, each element read or written once; weights at their device
/// size). The profiler divides them by elapsed time for GB/s; a fused or cached implementation can move fewer.
/// </summary>
public static class OpBytes
{
    const long F = sizeof(float);

    /// <summary>Copy of <paramref name="elements"/> floats: read + write.</summary>
    public static long Copy(long elements) => 2 * F * elements;

    /// <summary>Element-wise op over <paramref name="elements"/> with <paramref name="reads"/> inputs and <paramref name="writes"/> outputs each.</summary>
    public static long Elementwise(long elements, int reads, int writes) => F * elements * (reads + writes);

    /// <summary>RMSNorm: read x [n, d] and the weight [d], write y [n, d].</summary>
    public static long RmsNorm(long n, long d) => F * (2 * n * d + d);

    /// <summary>Projection: the whole weight once, x [n, cols] read, y [n, rows] written.</summary>
    public static long MatMul(long n, DeviceWeight w) => w.Bytes + F * n * (w.Cols + w.Rows);

    /// <summary>RoPE in place on [n, heads * headDim] plus one table row [headDim] per token.</summary>
    public static long Rope(long n, long nHeads, long headDim) => F * (2 * n * nHeads * headDim + n * headDim);

    /// <summary>StoreKv: read k and v [n, kvDim], write them into the cache.</summary>
    public static long StoreKv(long n, long kvDim) => F * 4 * n * kvDim;

    /// <summary>
    /// Attention: q read and output written ([n, nHeads * headDim]), and every cached K and V row of each sequence
    /// (context + new tokens, kvDim wide) read once, which is what a kernel sharing KV across a sequence's queries
    /// and a KV head's query heads attains.
    /// </summary>
    public static long Attention(BatchLayout batch, int nHeads, KvLayout layout)
    {
        long keys = 0;
        var context = batch.ContextLength; var count = batch.QueryCount;
        for (int s = 0; s < batch.SequenceCount; s++) keys += context[s] + count[s];
        return F * (2L * batch.TokenCount * nHeads * layout.HeadDim + 2 * keys * layout.KvDim);
    }
}
