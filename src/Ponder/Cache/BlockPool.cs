using Ponder.Backends;

namespace Ponder.Cache;

/// <summary>
/// Fixed-size KV blocks of one model, allocated once on the backend, reference counted, with a free list.
/// The pool knows block ids and counts, never requests or models' math.
/// </summary>
public sealed class BlockPool : IDisposable
{
    readonly int[] _refCount;
    readonly Stack<int> _free;

    /// <summary>Allocates <paramref name="blockCount"/> blocks of <paramref name="layout"/> on <paramref name="backend"/>.</summary>
    public BlockPool(IBackend backend, KvLayout layout, int blockCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockCount, 1);
        Storage = backend.AllocateKv(layout, blockCount);
        Backend = backend;
        _refCount = new int[blockCount];
        _free = new Stack<int>(Enumerable.Range(0, blockCount).Reverse());
    }

    /// <summary>A pool holding at least <paramref name="tokens"/> tokens.</summary>
    public static BlockPool ForTokens(IBackend backend, KvLayout layout, int tokens) =>
        new(backend, layout, Math.Max(1, (tokens + layout.BlockSize - 1) / layout.BlockSize));

    public IBackend Backend { get; }
    public KvStorage Storage { get; }
    public KvLayout Layout => Storage.Layout;
    public int BlockSize => Layout.BlockSize;
    public int BlockCount => _refCount.Length;
    public int FreeBlocks => _free.Count;
    public int UsedBlocks => BlockCount - FreeBlocks;

    /// <summary>Takes a free block (reference count 1). Throws <see cref="KvCacheFullException"/> when none is left; nothing changes then.</summary>
    public int Allocate()
    {
        if (_free.Count == 0) throw new KvCacheFullException($"KV cache is full: all {BlockCount} blocks of {BlockSize} tokens are in use");
        int block = _free.Pop();
        _refCount[block] = 1;
        return block;
    }

    public int RefCount(int block) => _refCount[block];

    public void AddRef(int block)
    {
        if (_refCount[block] <= 0) throw new InvalidOperationException($"block {block} is free; it cannot gain a reference");
        _refCount[block]++;
    }

    /// <summary>Drops one reference; the block returns to the free list at zero.</summary>
    public void Release(int block)
    {
        if (_refCount[block] <= 0) throw new InvalidOperationException($"block {block} is already free");
        if (--_refCount[block] == 0) _free.Push(block);
    }

    public void Dispose() => Storage.Dispose();
}

/// <summary>The KV cache has no free block for the requested tokens. The pool is unchanged.</summary>
public sealed class KvCacheFullException(string message) : InvalidOperationException(message);
