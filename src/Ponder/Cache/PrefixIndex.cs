using System.Runtime.InteropServices;

namespace Ponder.Cache;

/// <summary>
/// A radix tree over full blocks of tokens (every edge is one block of <c>blockSize</c> tokens), caching computed
/// K/V blocks of one model in one namespace (model id, adapter) so a new sequence whose tokens start with a cached
/// prefix attaches those blocks instead of recomputing them.
/// <code>
///   root ─ [t0..t15]:b7 ─ [t16..t31]:b2 ─ [t32..t47]:b9        a prompt t0..t40 matches b7 b2 (32 tokens);
///                        └ [u16..u31]:b5                         only t32..t40 need computing
/// </code>
/// The index holds one reference to each cached block, so a block no sequence holds stays cached until evicted,
/// least recently used first, and only from unlocked leaves (SGLang's verbs: <see cref="MatchPrefix"/>,
/// <see cref="Insert(ReadOnlySpan{int}, ReadOnlySpan{int})"/>, <see cref="Evict"/>, <see cref="Lock"/>). Partly
/// filled blocks are never cached, so a cached block is never written again.
/// </summary>
public sealed class PrefixIndex
{
    readonly Node _root;

    /// <summary>Creates the index of <paramref name="namespaceKey"/> over <paramref name="pool"/> (one index per namespace and pool).</summary>
    public PrefixIndex(BlockPool pool, string namespaceKey)
    {
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentException.ThrowIfNullOrEmpty(namespaceKey);
        Pool = pool;
        Namespace = namespaceKey;
        _root = new Node(this, null, [], -1);
        pool.Register(this);
    }

    /// <summary>The pool whose blocks this index caches.</summary>
    public BlockPool Pool { get; }
    /// <summary>The namespace (model id, adapter): blocks are never shared across namespaces.</summary>
    public string Namespace { get; }
    /// <summary>Blocks cached (tree nodes below the root).</summary>
    public int CachedBlockCount { get; private set; }

    /// <summary>
    /// The longest cached prefix of <paramref name="tokens"/> in whole blocks; marks the matched blocks as recently used.
    /// The blocks stay valid while a sequence holds them or a <see cref="Lock"/> lease pins them.
    /// </summary>
    internal PrefixMatch MatchPrefix(ReadOnlySpan<int> tokens)
    {
        int bs = Pool.BlockSize;
        long now = Pool.Tick();
        var node = _root;
        var blocks = new List<int>();
        for (int start = 0; start + bs <= tokens.Length; start += bs)
        {
            if (node.Children is null || !node.Children.GetAlternateLookup<ReadOnlySpan<int>>().TryGetValue(tokens.Slice(start, bs), out var child)) break;
            child.LastAccess = now;
            blocks.Add(child.Block);
            node = child;
        }
        return new PrefixMatch([.. blocks], blocks.Count * bs, node == _root ? null : node);
    }

    /// <summary>
    /// Caches <paramref name="blocks"/>, which hold the K/V of the first <c>blocks.Length * blockSize</c> of
    /// <paramref name="tokens"/> (full and computed). Blocks whose tokens are already cached keep the cached block;
    /// the others gain the index's reference. Returns the number of blocks newly cached.
    /// </summary>
    public int Insert(ReadOnlySpan<int> tokens, ReadOnlySpan<int> blocks)
    {
        int bs = Pool.BlockSize;
        if ((long)blocks.Length * bs > tokens.Length)
            throw new ArgumentException($"{blocks.Length} full blocks of {bs} need {blocks.Length * bs} tokens, got {tokens.Length}", nameof(tokens));
        long now = Pool.Tick();
        var node = _root;
        int added = 0;
        for (int i = 0; i < blocks.Length; i++)
        {
            var key = tokens.Slice(i * bs, bs);
            node.Children ??= new Dictionary<int[], Node>(BlockTokensComparer.Instance);
            if (!node.Children.GetAlternateLookup<ReadOnlySpan<int>>().TryGetValue(key, out var child))
            {
                int block = blocks[i];
                if (Pool.RefCount(block) <= 0) throw new ArgumentException($"block {block} (block {i} of the prefix) is free; only held blocks can be cached", nameof(blocks));
                if (Pool.IsCached(block)) throw new ArgumentException($"block {block} (block {i} of the prefix) is already cached under other tokens", nameof(blocks));
                child = new Node(this, node, key.ToArray(), block);
                node.Children.Add(child.Tokens, child);
                Pool.AddRef(block);
                Pool.SetCached(block, true);
                CachedBlockCount++;
                added++;
            }
            child.LastAccess = now;
            node = child;
        }
        return added;
    }

    /// <summary>Caches the full, computed blocks of <paramref name="sequence"/>.</summary>
    public int Insert(Sequence sequence)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        if (sequence.Pool != Pool) throw new ArgumentException("the sequence belongs to another pool", nameof(sequence));
        int full = sequence.ComputedLength / Pool.BlockSize;
        return Insert(sequence.TokenSpan, sequence.BlockTable[..full]);
    }

    /// <summary>
    /// Evicts up to <paramref name="blocks"/> cached blocks that no sequence holds, least recently used unlocked
    /// leaves first (a parent becomes a leaf once its children are gone). Returns the blocks freed.
    /// </summary>
    public int Evict(int blocks)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(blocks);
        return EvictLru([this], blocks);
    }

    /// <summary>
    /// Pins the matched path so eviction skips it until the lease is disposed (disposing twice is harmless).
    /// Use it to keep a prefix alive without a sequence holding it, e.g. while a request waits to be scheduled.
    /// </summary>
    internal PrefixLease Lock(PrefixMatch match)
    {
        if (match.Node is { } n && n.Owner != this) throw new ArgumentException("the match comes from another prefix index", nameof(match));
        return new PrefixLease(match.Node);
    }

    /// <summary>
    /// A new sequence for <paramref name="prompt"/> whose longest cached prefix (whole blocks) is attached instead of
    /// computed. Its <see cref="Sequence.ComputedLength"/> says what is left to compute: the tokens past the cached
    /// prefix, or, for a fully cached prompt, only its last token (to get logits). Its computed blocks are published
    /// to this index as they fill. On <see cref="KvCacheFullException"/> the pool is unchanged.
    /// </summary>
    public Sequence CreateSequence(ReadOnlySpan<int> prompt)
    {
        var match = MatchPrefix(prompt);
        var sequence = Sequence.ForIndex(this);
        try
        {
            sequence.AttachPrefix(prompt[..match.Length], match.Blocks.Span);
            sequence.Append(prompt[match.Length..]);
        }
        catch
        {
            sequence.Dispose();
            throw;
        }
        if (match.Length == prompt.Length && prompt.Length > 0) sequence.RecomputeLastToken();
        Pool.RecordPrefixLookup(prompt.Length, sequence.ComputedLength);
        return sequence;
    }

    /// <summary>Blocks that eviction could free now or after evicting their descendants.</summary>
    internal int EvictableBlocks() => CountEvictable(_root, out _);

    int CountEvictable(Node node, out bool wholeSubtree)
    {
        int count = 0;
        bool all = true;
        if (node.Children is not null)
            foreach (var child in node.Children.Values)
            {
                count += CountEvictable(child, out bool childAll);
                all &= childAll;
            }
        wholeSubtree = all && node != _root && IsEvictableAlone(node);
        return count + (wholeSubtree ? 1 : 0);
    }

    bool IsEvictableAlone(Node node) => node.Locks == 0 && Pool.RefCount(node.Block) == 1;

    /// <summary>Evicts up to <paramref name="blocks"/> blocks across <paramref name="indexes"/> (one pool), globally least recently used first.</summary>
    internal static int EvictLru(IReadOnlyList<PrefixIndex> indexes, int blocks)
    {
        if (blocks <= 0) return 0;
        var leaves = new PriorityQueue<Node, long>();
        var stack = new Stack<Node>();
        foreach (var index in indexes)
        {
            stack.Push(index._root);
            while (stack.TryPop(out var node))
            {
                if (node.Children is { Count: > 0 }) foreach (var c in node.Children.Values) stack.Push(c);
                else if (node.Parent is not null && index.IsEvictableAlone(node)) leaves.Enqueue(node, node.LastAccess);
            }
        }
        int freed = 0;
        while (freed < blocks && leaves.TryDequeue(out var leaf, out _))
        {
            var index = leaf.Owner;
            var parent = leaf.Parent!;
            parent.Children!.Remove(leaf.Tokens);
            index.CachedBlockCount--;
            index.Pool.SetCached(leaf.Block, false);
            index.Pool.Release(leaf.Block);
            index.Pool.CountEviction();
            freed++;
            if (parent.Children.Count == 0 && parent.Parent is not null && index.IsEvictableAlone(parent)) leaves.Enqueue(parent, parent.LastAccess);
        }
        return freed;
    }

    /// <summary>Checks the tree (lock counts, parent links, block size) and returns its blocks, for <see cref="BlockPool.ValidateInvariants"/>.</summary>
    internal List<int> ValidateAndListBlocks()
    {
        var blocks = new List<int>();
        var stack = new Stack<Node>();
        stack.Push(_root);
        while (stack.TryPop(out var node))
        {
            if (node.Locks < 0) throw new InvalidOperationException($"prefix index '{Namespace}': a node has lock count {node.Locks}");
            int childLocks = 0;
            if (node.Children is not null)
                foreach (var (key, child) in node.Children)
                {
                    if (child.Parent != node || child.Tokens != key || child.Tokens.Length != Pool.BlockSize)
                        throw new InvalidOperationException($"prefix index '{Namespace}': a node's parent link, key or block size ({child.Tokens.Length}) is wrong");
                    childLocks += child.Locks;
                    stack.Push(child);
                }
            if (node != _root && node.Locks < childLocks)
                throw new InvalidOperationException($"prefix index '{Namespace}': a node has {node.Locks} locks but its children {childLocks}");
            if (node != _root) blocks.Add(node.Block);
        }
        if (blocks.Count != CachedBlockCount) throw new InvalidOperationException($"prefix index '{Namespace}' counts {CachedBlockCount} blocks but holds {blocks.Count}");
        return blocks;
    }

    /// <summary>All cached blocks (for tests and reports).</summary>
    public IReadOnlyList<int> CachedBlocks() => ValidateAndListBlocks();

    internal sealed class Node(PrefixIndex owner, Node? parent, int[] tokens, int block)
    {
        public PrefixIndex Owner { get; } = owner;
        public Node? Parent { get; } = parent;
        public int[] Tokens { get; } = tokens;  // (blockSize) the block's tokens: this node's edge label
        public int Block { get; } = block;
        public Dictionary<int[], Node>? Children { get; set; }
        public long LastAccess { get; set; }
        public int Locks { get; set; }           // leases pinning this node or a descendant
    }

    /// <summary>Compares blocks of tokens by content, and looks them up by span without allocating.</summary>
    sealed class BlockTokensComparer : IEqualityComparer<int[]>, IAlternateEqualityComparer<ReadOnlySpan<int>, int[]>
    {
        public static readonly BlockTokensComparer Instance = new();
        public bool Equals(int[]? x, int[]? y) => x.AsSpan().SequenceEqual(y);
        public int GetHashCode(int[] tokens) => Hash(tokens);
        public bool Equals(ReadOnlySpan<int> alternate, int[] other) => alternate.SequenceEqual(other);
        public int GetHashCode(ReadOnlySpan<int> alternate) => Hash(alternate);
        public int[] Create(ReadOnlySpan<int> alternate) => alternate.ToArray();

        static int Hash(ReadOnlySpan<int> tokens)
        {
            var h = new HashCode();
            h.AddBytes(MemoryMarshal.AsBytes(tokens));
            return h.ToHashCode();
        }
    }
}

/// <summary>The result of <see cref="PrefixIndex.MatchPrefix"/>: the cached blocks of the longest matched prefix.</summary>
internal readonly struct PrefixMatch
{
    internal PrefixMatch(int[] blocks, int length, PrefixIndex.Node? node) { Blocks = blocks; Length = length; Node = node; }

    /// <summary>The matched blocks, in order.</summary>
    public ReadOnlyMemory<int> Blocks { get; }
    /// <summary>Tokens matched (a multiple of the block size).</summary>
    public int Length { get; }
    internal PrefixIndex.Node? Node { get; }
}

/// <summary>A pin on a cached prefix: while undisposed, eviction skips the prefix's blocks.</summary>
internal sealed class PrefixLease : IDisposable
{
    PrefixIndex.Node? _node;
    bool _disposed;

    internal PrefixLease(PrefixIndex.Node? node)
    {
        _node = node;
        for (var n = node; n?.Parent is not null; n = n.Parent) n.Locks++;
    }

    /// <summary>Whether the lease still pins its prefix.</summary>
    public bool IsHeld => !_disposed;

    /// <summary>Unpins the prefix (once; later calls do nothing).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        for (var n = _node; n?.Parent is not null; n = n.Parent) n.Locks--;
        _node = null;
    }
}
