using Ponder.Backends;

namespace Ponder.Cache;

/// <summary>
/// Fixed-size KV blocks of one model, allocated once on the backend, reference counted, with a free list.
/// The pool knows block ids and counts, never requests or models' math.
/// <code>
///   holders of a block:   sequences (one reference per block-table entry)  +  the prefix index (at most one)
///   states:   free        refCount 0, on the free list
///             held        at least one sequence holds it (shared when refCount > 1)
///             cached      only the prefix index holds it: reclaimable, least recently used first
/// </code>
/// When a sequence needs blocks and the free list is short, <see cref="EnsureFree"/> evicts cached blocks (LRU)
/// from this pool's prefix indexes; if even that cannot make room it throws <see cref="KvCacheFullException"/>
/// before changing anything.
/// </summary>
public sealed class BlockPool : IDisposable
{
    readonly int[] _refCount;
    readonly bool[] _indexed;   // the prefix index holds one of the block's references
    readonly Stack<int> _free;
    readonly List<PrefixIndex> _indexes = [];
    readonly HashSet<Sequence> _sequences = new(ReferenceEqualityComparer.Instance);
    long _clock;

    /// <summary>Allocates <paramref name="blockCount"/> blocks of <paramref name="layout"/> on <paramref name="backend"/>.</summary>
    public BlockPool(IBackend backend, KvLayout layout, int blockCount)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockCount, 1);
        Storage = backend.AllocateKv(layout, blockCount);
        Backend = backend;
        _refCount = new int[blockCount];
        _indexed = new bool[blockCount];
        _free = new Stack<int>(Enumerable.Range(0, blockCount).Reverse());
    }

    /// <summary>A pool holding at least <paramref name="tokens"/> tokens.</summary>
    public static BlockPool ForTokens(IBackend backend, KvLayout layout, long tokens)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        return new(backend, layout, BlocksFor(layout, tokens, layout.BlockSize, nameof(tokens)));
    }

    /// <summary>A pool of as many blocks as fit in <paramref name="bytes"/> (at least one block).</summary>
    public static BlockPool ForBytes(IBackend backend, KvLayout layout, long bytes)
    {
        ArgumentNullException.ThrowIfNull(layout);
        if (bytes < layout.BytesPerBlock)
            throw new ArgumentOutOfRangeException(nameof(bytes), $"{bytes} bytes cannot hold one KV block of {layout.BytesPerBlock} bytes ({layout})");
        return new(backend, layout, BlocksFor(layout, bytes / layout.BytesPerBlock, 1, nameof(bytes)));
    }

    static int BlocksFor(KvLayout layout, long amount, long unit, string name)
    {
        long blocks = (amount + unit - 1) / unit;
        if (blocks > Array.MaxLength) throw new ArgumentOutOfRangeException(name, $"{amount} asks for {blocks} KV blocks of {layout.BytesPerBlock} bytes, more than a pool can index");
        return (int)blocks;
    }

    /// <summary>The backend the blocks live on (copy-on-write goes through it).</summary>
    public IBackend Backend { get; }
    /// <summary>The blocks' memory.</summary>
    public KvStorage Storage { get; }
    /// <summary>Shape of a block.</summary>
    public KvLayout Layout => Storage.Layout;
    /// <summary>Tokens per block.</summary>
    public int BlockSize => Layout.BlockSize;
    /// <summary>Blocks in the pool.</summary>
    public int BlockCount => _refCount.Length;
    /// <summary>Tokens the pool can hold.</summary>
    public long CapacityTokens => (long)BlockCount * BlockSize;
    /// <summary>Bytes of KV memory the pool owns.</summary>
    public long CapacityBytes => Storage.Bytes;
    /// <summary>Blocks on the free list.</summary>
    public int FreeBlocks => _free.Count;
    /// <summary>Blocks off the free list (held by sequences or cached by a prefix index).</summary>
    public int UsedBlocks => BlockCount - FreeBlocks;
    /// <summary>Most blocks ever off the free list at once.</summary>
    public int PeakUsedBlocks { get; private set; }
    /// <summary>Blocks copied because a writer shared them (copy-on-write).</summary>
    public long CopyOnWriteCopies { get; private set; }
    /// <summary>Cached blocks returned to the free list by eviction.</summary>
    public long EvictedBlocks { get; private set; }
    /// <summary>Live (undisposed) sequences of this pool.</summary>
    public int SequenceCount => _sequences.Count;
    /// <summary>The prefix indexes (one per namespace) caching blocks of this pool.</summary>
    public IReadOnlyList<PrefixIndex> Indexes => _indexes;

    long _prefixQueryTokens, _prefixHitTokens;

    /// <summary>Takes a free block (reference count 1), evicting a cached one if none is free.
    /// Throws <see cref="KvCacheFullException"/> when no block can be had; nothing changes then.</summary>
    public int Allocate()
    {
        EnsureFree(1);
        int block = _free.Pop();
        _refCount[block] = 1;
        PeakUsedBlocks = Math.Max(PeakUsedBlocks, UsedBlocks);
        return block;
    }

    /// <summary>
    /// Makes at least <paramref name="blocks"/> blocks free, evicting cached blocks least recently used first.
    /// If the free and evictable blocks together are too few, throws <see cref="KvCacheFullException"/> and evicts nothing.
    /// </summary>
    public void EnsureFree(int blocks)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(blocks);
        int deficit = blocks - _free.Count;
        if (deficit <= 0) return;
        int evictable = 0;
        foreach (var index in _indexes) evictable += index.EvictableBlocks();
        if (evictable < deficit)
            throw new KvCacheFullException(
                $"KV cache is full: {blocks} blocks needed, {_free.Count} free and {evictable} evictable from the prefix cache, " +
                $"of {BlockCount} blocks of {BlockSize} tokens ({_sequences.Count} live sequences)");
        int freed = PrefixIndex.EvictLru(_indexes, deficit);
        if (freed < deficit) throw new InvalidOperationException($"eviction freed {freed} of the {deficit} blocks it counted as evictable (pool bookkeeping is broken)");
    }

    /// <summary>References held on <paramref name="block"/> (0 = free).</summary>
    public int RefCount(int block) => _refCount[CheckBlock(block)];

    /// <summary>Whether a prefix index holds a reference to <paramref name="block"/>.</summary>
    public bool IsCached(int block) => _indexed[CheckBlock(block)];

    /// <summary>Adds a reference to a block that is in use.</summary>
    public void AddRef(int block)
    {
        if (_refCount[CheckBlock(block)] <= 0) throw new InvalidOperationException($"block {block} is free; it cannot gain a reference");
        _refCount[block]++;
    }

    /// <summary>Drops one reference; the block returns to the free list at zero.</summary>
    public void Release(int block)
    {
        if (_refCount[CheckBlock(block)] <= 0) throw new InvalidOperationException($"block {block} is already free");
        if (--_refCount[block] == 0)
        {
            if (_indexed[block]) throw new InvalidOperationException($"block {block} reached zero references while a prefix index still holds it");
            _free.Push(block);
        }
    }

    /// <summary>Copies <paramref name="source"/> into a fresh block (every layer's K and V) and drops one reference to the source.</summary>
    internal int CopyOnWrite(int source)
    {
        int copy = Allocate();
        Backend.CopyKvBlock(Storage, source, copy);
        Release(source);
        CopyOnWriteCopies++;
        return copy;
    }

    /// <summary>A snapshot of the pool's usage and counters.</summary>
    public KvCacheStats Stats()
    {
        int held = 0, shared = 0, cached = 0;
        for (int b = 0; b < _refCount.Length; b++)
        {
            int rc = _refCount[b], sequenceRefs = rc - (_indexed[b] ? 1 : 0);
            if (sequenceRefs > 0) held++;
            else if (rc > 0) cached++;
            if (rc > 1) shared++;
        }
        long unshared = 0;
        foreach (var s in _sequences) unshared += s.Blocks.Count;
        return new KvCacheStats(BlockCount, FreeBlocks, held, shared, cached, PeakUsedBlocks, unshared, CopyOnWriteCopies, EvictedBlocks,
            _prefixQueryTokens, _prefixHitTokens, Layout.BytesPerBlock, BlockSize, _sequences.Count);
    }

    /// <summary>
    /// Checks the pool's bookkeeping against its holders and throws <see cref="InvalidOperationException"/> naming the
    /// first broken invariant: every block's reference count equals its holders (live sequences' block tables plus at
    /// most one prefix index), no block is both free and held, the free list has no duplicates, each sequence's table
    /// covers exactly its tokens, and each index's tree is consistent. For tests; O(blocks + tokens).
    /// </summary>
    public void ValidateInvariants()
    {
        var expected = new int[BlockCount];
        var indexedBy = new bool[BlockCount];
        foreach (var s in _sequences)
        {
            if (s.IsDisposed) throw new InvalidOperationException("a disposed sequence is still registered with the pool");
            int want = s.IsResident ? (s.Length + BlockSize - 1) / BlockSize : 0;
            if (s.Blocks.Count != want) throw new InvalidOperationException($"a {(s.IsResident ? "" : "non-resident ")}sequence of {s.Length} tokens has {s.Blocks.Count} blocks, expected {want}");
            if (s.ComputedLength < 0 || s.ComputedLength > s.Length) throw new InvalidOperationException($"a sequence of {s.Length} tokens claims {s.ComputedLength} computed");
            foreach (int b in s.Blocks) expected[CheckBlock(b)]++;
        }
        foreach (var index in _indexes)
            foreach (int b in index.ValidateAndListBlocks())
            {
                if (indexedBy[CheckBlock(b)]) throw new InvalidOperationException($"block {b} is cached by two prefix index nodes");
                indexedBy[b] = true;
                expected[b]++;
            }
        var onFreeList = new bool[BlockCount];
        foreach (int b in _free)
        {
            if (onFreeList[CheckBlock(b)]) throw new InvalidOperationException($"block {b} is on the free list twice");
            onFreeList[b] = true;
        }
        for (int b = 0; b < BlockCount; b++)
        {
            if (_indexed[b] != indexedBy[b]) throw new InvalidOperationException($"block {b}: pool says cached = {_indexed[b]}, the indexes say {indexedBy[b]}");
            if (_refCount[b] != expected[b]) throw new InvalidOperationException($"block {b} has reference count {_refCount[b]} but {expected[b]} holders");
            if (onFreeList[b] == (_refCount[b] > 0)) throw new InvalidOperationException($"block {b}: free list = {onFreeList[b]} with reference count {_refCount[b]}");
        }
    }

    /// <summary>Releases the blocks' memory. Sequences and indexes of this pool must not be used afterwards.</summary>
    public void Dispose() => Storage.Dispose();

    internal long Tick() => ++_clock;

    /// <summary>The scheduler that runs this pool's sequences (a pool has at most one).</summary>
    internal object? Owner { get; set; }

    internal void Register(Sequence sequence) => _sequences.Add(sequence);
    internal void Unregister(Sequence sequence) => _sequences.Remove(sequence);

    internal void Register(PrefixIndex index)
    {
        foreach (var other in _indexes)
            if (other.Namespace == index.Namespace)
                throw new ArgumentException($"this pool already has a prefix index for namespace '{index.Namespace}'", nameof(index));
        _indexes.Add(index);
    }

    internal void SetCached(int block, bool cached) => _indexed[block] = cached;
    internal void CountEviction() => EvictedBlocks++;
    internal void RecordPrefixLookup(int queryTokens, int hitTokens) { _prefixQueryTokens += queryTokens; _prefixHitTokens += hitTokens; }

    int CheckBlock(int block)
    {
        if ((uint)block >= (uint)_refCount.Length) throw new ArgumentOutOfRangeException(nameof(block), $"block {block} is outside the pool (0..{_refCount.Length - 1})");
        return block;
    }
}

/// <summary>Usage of a <see cref="BlockPool"/> at one moment, and its counters since creation.</summary>
/// <param name="TotalBlocks">Blocks in the pool.</param>
/// <param name="FreeBlocks">Blocks on the free list.</param>
/// <param name="HeldBlocks">Blocks at least one sequence holds.</param>
/// <param name="SharedBlocks">Blocks with more than one holder (sequences or the prefix index).</param>
/// <param name="CachedBlocks">Blocks only a prefix index holds (reclaimable).</param>
/// <param name="PeakUsedBlocks">Most blocks ever off the free list at once.</param>
/// <param name="UnsharedBlocks">Blocks the live sequences would hold if each had its own copy of its blocks.</param>
/// <param name="CopyOnWriteCopies">Blocks copied because a writer shared them.</param>
/// <param name="EvictedBlocks">Cached blocks evicted.</param>
/// <param name="PrefixQueryTokens">Prompt tokens looked up in the prefix index when creating sequences.</param>
/// <param name="PrefixHitTokens">Of those, tokens whose K/V came from the cache (not computed).</param>
/// <param name="BytesPerBlock">Bytes of one block.</param>
/// <param name="BlockSize">Tokens one block holds.</param>
/// <param name="LiveSequences">Sequences alive in the pool (created and not yet released).</param>
public readonly record struct KvCacheStats(
    int TotalBlocks, int FreeBlocks, int HeldBlocks, int SharedBlocks, int CachedBlocks, int PeakUsedBlocks, long UnsharedBlocks,
    long CopyOnWriteCopies, long EvictedBlocks, long PrefixQueryTokens, long PrefixHitTokens, long BytesPerBlock, int BlockSize,
    int LiveSequences)
{
    /// <summary>Tokens the pool holds in all.</summary>
    public long CapacityTokens => (long)TotalBlocks * BlockSize;
    /// <summary>Fraction of looked-up prompt tokens served from the cache (0 when none were looked up).</summary>
    public double PrefixHitRate => PrefixQueryTokens == 0 ? 0 : (double)PrefixHitTokens / PrefixQueryTokens;
    /// <summary>Bytes of blocks sequences hold.</summary>
    public long HeldBytes => HeldBlocks * BytesPerBlock;
    /// <summary>Bytes the live sequences would need without sharing, minus the bytes they hold.</summary>
    public long BytesSavedBySharing => (UnsharedBlocks - HeldBlocks) * BytesPerBlock;
}

/// <summary>The KV cache has no free block for the requested tokens, even after evicting cached blocks. The pool is unchanged.</summary>
public sealed class KvCacheFullException(string message) : InvalidOperationException(message);
