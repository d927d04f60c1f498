using System.Runtime.InteropServices;

namespace Ponder.Cache;

/// <summary>
/// One token sequence in a <see cref="BlockPool"/>: its tokens and the block table holding their K/V.
/// <code>
///   tokens:      t0 t1 ... t15 | t16 ... t31 | t32 t33 _ _ ...
///   block table: [  b7         |   b2        |   b9          ]   (blockSize 16; Length = 34)
///                 ◄──────── ComputedLength = 32 ────────►◄ pending (appended, not yet run) ►
/// </code>
/// <see cref="ComputedLength"/> tokens have their K/V in the cache; the next forward computes the pending ones
/// (<see cref="SequenceBatch"/> builds it from this split).
/// <para>
/// Forks share blocks; a block is written only by a sole holder. Copy-on-write:
/// <code>
///   parent  [b7|b2|b9: t32 t33 _ _]          Fork()            child [b7|b2|b9]     b9 refCount 2
///   child.Append(t34): b9 is shared and partly filled  ->  copy b9 to b4, child [b7|b2|b4: t32 t33 t34 _]
/// </code>
/// </para>
/// <para>
/// A sequence can be <see cref="IsResident"/> = false: its tokens are kept but it holds no blocks (created while the
/// cache was full, or preempted by the scheduler). Such a sequence appends and forks without blocks, and
/// <see cref="Restore"/> gives it blocks again (attaching its longest cached prefix); what is not cached is recomputed.
/// </para>
/// </summary>
public sealed class Sequence : IDisposable
{
    readonly List<int> _blocks;
    readonly List<int> _tokens;

    /// <summary>An empty sequence in <paramref name="pool"/> (not attached to a prefix index).</summary>
    public Sequence(BlockPool pool) : this(pool, null, [], []) { }

    Sequence(BlockPool pool, PrefixIndex? index, List<int> blocks, List<int> tokens)
    {
        ArgumentNullException.ThrowIfNull(pool);
        Pool = pool;
        Index = index;
        _blocks = blocks;
        _tokens = tokens;
        pool.Register(this);
    }

    internal static Sequence ForIndex(PrefixIndex index) => new(index.Pool, index, [], []);

    /// <summary>The pool holding this sequence's blocks.</summary>
    public BlockPool Pool { get; }
    /// <summary>The prefix index this sequence's full computed blocks are published to (null: none).</summary>
    public PrefixIndex? Index { get; }
    /// <summary>Tokens appended.</summary>
    public int Length => _tokens.Count;
    /// <summary>Tokens whose K/V are in the cache.</summary>
    public int ComputedLength { get; private set; }
    /// <summary>Tokens appended but not yet computed: the next forward's work for this sequence.</summary>
    public int PendingLength => Length - ComputedLength;
    /// <summary>The tokens (read-only view).</summary>
    public IReadOnlyList<int> Tokens => _tokens;
    /// <summary>The tokens as a span (valid until the sequence changes).</summary>
    public ReadOnlySpan<int> TokenSpan => CollectionsMarshal.AsSpan(_tokens);
    /// <summary>The block table (read-only view).</summary>
    public IReadOnlyList<int> Blocks => _blocks;
    /// <summary>Whether <see cref="Dispose"/> has released the blocks.</summary>
    public bool IsDisposed { get; private set; }
    /// <summary>Whether the sequence holds blocks for its tokens (false: evicted or not yet placed; see <see cref="Restore"/>).</summary>
    public bool IsResident { get; private set; } = true;
    /// <summary>Tokens that were computed when the sequence was evicted: recomputing up to here is the eviction's cost.</summary>
    public int EvictedComputedLength { get; private set; }

    /// <summary>The block table as a span (valid until the sequence changes).</summary>
    public ReadOnlySpan<int> BlockTable => CollectionsMarshal.AsSpan(_blocks);

    /// <summary>Appends one token (see <see cref="Append(ReadOnlySpan{int})"/>).</summary>
    public void Append(int token) => Append([token]);

    /// <summary>
    /// Appends tokens and reserves cache slots for them; a shared, partly filled last block is copied first
    /// (copy-on-write). Evicts cached blocks if the pool is short; on <see cref="KvCacheFullException"/> nothing is
    /// appended and the pool is unchanged.
    /// </summary>
    public void Append(ReadOnlySpan<int> tokens)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (tokens.IsEmpty) return;
        if (!IsResident) { _tokens.AddRange(tokens); return; }
        int bs = Pool.BlockSize;
        int newBlocks = (Length + tokens.Length + bs - 1) / bs - _blocks.Count;
        bool copyLast = Length % bs != 0 && Pool.RefCount(_blocks[^1]) > 1;
        Pool.EnsureFree(newBlocks + (copyLast ? 1 : 0));
        if (copyLast) _blocks[^1] = Pool.CopyOnWrite(_blocks[^1]);
        for (int i = 0; i < newBlocks; i++) _blocks.Add(Pool.Allocate());
        _tokens.AddRange(tokens);
    }

    /// <summary>
    /// A new sequence with the same tokens and computed length that shares every block (reference counts up, no copy).
    /// Costs no blocks, so it cannot run out of memory.
    /// </summary>
    public Sequence Fork()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        foreach (int b in _blocks) Pool.AddRef(b);
        return new Sequence(Pool, Index, [.. _blocks], [.. _tokens])
        {
            ComputedLength = ComputedLength, IsResident = IsResident, EvictedComputedLength = EvictedComputedLength,
        };
    }

    /// <summary>
    /// Releases the blocks but keeps the tokens (preemption): nothing is computed any more, <see cref="Restore"/>
    /// places the sequence again. Idempotent.
    /// </summary>
    internal void Evict()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (!IsResident) return;
        EvictedComputedLength = ComputedLength;
        foreach (int b in _blocks) Pool.Release(b);
        _blocks.Clear();
        ComputedLength = 0;
        IsResident = false;
    }

    /// <summary>
    /// Gives a non-resident sequence blocks for its tokens again, attaching its longest cached prefix (whole blocks)
    /// from <see cref="Index"/>; the rest is pending. Returns the tokens attached from the cache. On
    /// <see cref="KvCacheFullException"/> the sequence and pool are unchanged.
    /// </summary>
    internal int Restore()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (IsResident) return 0;
        var tokens = TokenSpan;
        int bs = Pool.BlockSize;
        var attached = Index is null ? ReadOnlyMemory<int>.Empty : Index.MatchPrefix(tokens).Blocks;
        // Hold the cached blocks before making room, so that making room cannot evict them.
        foreach (int b in attached.Span) Pool.AddRef(b);
        try { Pool.EnsureFree((Length + bs - 1) / bs - attached.Length); }
        catch
        {
            foreach (int b in attached.Span) Pool.Release(b);
            throw;
        }
        _blocks.AddRange(attached.Span);
        while (_blocks.Count * bs < Length) _blocks.Add(Pool.Allocate());
        ComputedLength = attached.Length * bs;
        IsResident = true;
        if (ComputedLength == Length && Length > 0) RecomputeLastToken();
        return ComputedLength;
    }

    /// <summary>
    /// Marks the first <paramref name="length"/> tokens as computed (a forward wrote their K/V), and publishes
    /// blocks that became full and computed to <see cref="Index"/>.
    /// </summary>
    public void MarkComputed(int length)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (!IsResident) throw new InvalidOperationException("the sequence holds no blocks (evicted): restore it before computing");
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
        int fullBefore = ComputedLength / Pool.BlockSize;
        ComputedLength = length;
        if (Index is not null && length / Pool.BlockSize > fullBefore) Index.Insert(this);
    }

    /// <summary>
    /// Makes the blocks that tokens [ComputedLength, ComputedLength + <paramref name="count"/>) will be written to
    /// exclusively this sequence's, copying shared ones (a fork that has not appended yet, or a prefix-cached block
    /// whose last token is recomputed). Throws <see cref="KvCacheFullException"/> with nothing changed if the copies do not fit.
    /// </summary>
    public void PrepareWrite(int count)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, PendingLength);
        if (count == 0) return;
        if (!IsResident) throw new InvalidOperationException("the sequence holds no blocks (evicted): restore it before computing");
        int bs = Pool.BlockSize, first = ComputedLength / bs, last = (ComputedLength + count - 1) / bs;
        int shared = 0;
        for (int i = first; i <= last; i++) if (Pool.RefCount(_blocks[i]) > 1) shared++;
        if (shared == 0) return;
        Pool.EnsureFree(shared);
        for (int i = first; i <= last; i++)
            if (Pool.RefCount(_blocks[i]) > 1) _blocks[i] = Pool.CopyOnWrite(_blocks[i]);
    }

    /// <summary>Takes over cached blocks holding <paramref name="tokens"/> (whole blocks) as this empty sequence's computed prefix.</summary>
    internal void AttachPrefix(ReadOnlySpan<int> tokens, ReadOnlySpan<int> blocks)
    {
        if (Length != 0 || tokens.Length != blocks.Length * Pool.BlockSize)
            throw new InvalidOperationException($"a prefix of {tokens.Length} tokens in {blocks.Length} blocks can only start an empty sequence");
        foreach (int b in blocks) { Pool.AddRef(b); _blocks.Add(b); }
        _tokens.AddRange(tokens);
        ComputedLength = tokens.Length;
    }

    /// <summary>Marks the last token pending again (a fully cached prompt recomputes it to get its logits).</summary>
    internal void RecomputeLastToken() => ComputedLength = Math.Min(ComputedLength, Length - 1);

    /// <summary>Releases this sequence's references to its blocks.</summary>
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        foreach (int b in _blocks) Pool.Release(b);
        _blocks.Clear();
        Pool.Unregister(this);
    }
}
