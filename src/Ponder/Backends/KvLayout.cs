namespace Ponder.Backends;

/// <summary>
/// Shape of a paged KV cache. A block holds K and V of <see cref="BlockSize"/> consecutive tokens for every layer:
/// <code>
///   block b (FloatsPerBlock floats, contiguous, so copy-on-write is one copy):
///   ┌ layer 0 ┬ K [blockSize, kvDim] ┐
///   │         └ V [blockSize, kvDim] │
///   ├ layer 1 ┬ K ...                │
///   ...
/// </code>
/// Offset of (block, layer, kOrV, slot) = ((block * nLayers + layer) * 2 + kOrV) * blockSize * kvDim + slot * kvDim.
/// </summary>
public sealed record KvLayout(int NLayers, int NKvHeads, int HeadDim, int BlockSize)
{
    /// <summary>Width of one token's K (or V) in one layer: nKvHeads x headDim.</summary>
    public int KvDim => NKvHeads * HeadDim;
    /// <summary>Floats of one layer's K (or V) within a block.</summary>
    public long FloatsPerPlane => (long)BlockSize * KvDim;
    /// <summary>Floats of one block: K and V of every layer.</summary>
    public long FloatsPerBlock => 2L * NLayers * FloatsPerPlane;
    /// <summary>Bytes of one block.</summary>
    public long BytesPerBlock => FloatsPerBlock * sizeof(float);
    /// <summary>Bytes of K and V for one token across all layers.</summary>
    public long BytesPerToken => 2L * NLayers * KvDim * sizeof(float);

    /// <summary>Float offset of the K (<paramref name="kOrV"/> = 0) or V (1) plane of a block and layer.</summary>
    public long PlaneOffset(int block, int layer, int kOrV) => ((long)block * NLayers + layer) * 2 * FloatsPerPlane + kOrV * FloatsPerPlane;
}

/// <summary>Device memory for <see cref="BlockCount"/> KV blocks of <see cref="Layout"/>.</summary>
public abstract class KvStorage : IDisposable
{
    /// <summary>Storage for <paramref name="blockCount"/> blocks of <paramref name="layout"/>.</summary>
    protected KvStorage(KvLayout layout, int blockCount) { Layout = layout; BlockCount = blockCount; }
    /// <summary>The shape of every block.</summary>
    public KvLayout Layout { get; }
    /// <summary>Blocks held.</summary>
    public int BlockCount { get; }
    /// <summary>Bytes held in all.</summary>
    public long Bytes => Layout.BytesPerBlock * BlockCount;
    /// <summary>Frees the device memory.</summary>
    public abstract void Dispose();
}
