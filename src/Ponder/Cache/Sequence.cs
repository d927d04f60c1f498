namespace Ponder.Cache;

/// <summary>
/// One token sequence in a <see cref="BlockPool"/>: its tokens and the block table holding their K/V.
/// <code>
///   tokens:      t0 t1 ... t15 | t16 ... t31 | t32 t33 _ _ ...
///   block table: [  b7         |   b2        |   b9          ]   (blockSize 16; Length = 34)
/// </code>
/// <see cref="ComputedLength"/> tokens have their K/V in the cache; tokens past it are pending (appended, not yet run).
/// </summary>
public sealed class Sequence : IDisposable
{
    readonly List<int> _blocks = [];
    readonly List<int> _tokens = [];

    public Sequence(BlockPool pool) => Pool = pool;

    public BlockPool Pool { get; }
    public int Length => _tokens.Count;
    /// <summary>Tokens whose K/V are in the cache.</summary>
    public int ComputedLength { get; private set; }
    public IReadOnlyList<int> Tokens => _tokens;
    public IReadOnlyList<int> Blocks => _blocks;
    public bool IsDisposed { get; private set; }

    /// <summary>The block table as a span (valid until the sequence changes).</summary>
    public ReadOnlySpan<int> BlockTable => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_blocks);

    /// <summary>Appends tokens and reserves cache slots for them. On <see cref="KvCacheFullException"/> nothing is appended.</summary>
    public void Append(ReadOnlySpan<int> tokens)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        int needBlocks = (Length + tokens.Length + Pool.BlockSize - 1) / Pool.BlockSize - _blocks.Count;
        if (needBlocks > Pool.FreeBlocks)
            throw new KvCacheFullException($"KV cache is full: {needBlocks} more blocks needed for {tokens.Length} tokens, {Pool.FreeBlocks} free of {Pool.BlockCount}");
        for (int i = 0; i < needBlocks; i++) _blocks.Add(Pool.Allocate());
        foreach (int t in tokens) _tokens.Add(t);
    }

    /// <summary>Marks the first <paramref name="length"/> tokens as computed (their K/V were written by a forward).</summary>
    public void MarkComputed(int length)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
        ComputedLength = length;
    }

    /// <summary>Releases this sequence's references to its blocks.</summary>
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        foreach (int b in _blocks) Pool.Release(b);
        _blocks.Clear();
    }
}
