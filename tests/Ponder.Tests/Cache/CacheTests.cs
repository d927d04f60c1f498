using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Cache;

namespace Ponder.Tests.Cache;

/// <summary>Hand-worked cases: copy-on-write, metrics, running out of blocks, prefix attach, LRU eviction, leases, namespaces.</summary>
public sealed class CacheTests : IDisposable
{
    const int Bs = 4;
    readonly CpuBackend _backend = new(threads: 1);
    static readonly KvLayout Layout = new(NLayers: 2, NKvHeads: 1, HeadDim: 2, BlockSize: Bs);

    public void Dispose() => _backend.Dispose();

    BlockPool Pool(int blocks) => new(_backend, Layout, blocks);

    static int[] Tokens(int n, int start = 0) => [.. Enumerable.Range(start, n)];

    [Fact]
    public void ForkSharesEveryBlockAndAppendCopiesOnlyTheSharedPartialBlock()
    {
        using var pool = Pool(10);
        var kv = (CpuKvStorage)pool.Storage;
        using var parent = new Sequence(pool);
        parent.Append(Tokens(6)); // blocks: [t0..t3] [t4 t5 _ _]
        for (int l = 0; l < Layout.NLayers; l++)
            for (int kOrV = 0; kOrV < 2; kOrV++)
                for (int i = 0; i < Layout.FloatsPerPlane; i++)
                    kv.Plane(parent.Blocks[1], l, kOrV)[i] = 1000 * l + 100 * kOrV + i;
        parent.MarkComputed(6);

        using var child = parent.Fork();
        Assert.Equal(parent.Blocks, child.Blocks);
        Assert.Equal(6, child.ComputedLength);
        Assert.All(parent.Blocks, b => Assert.Equal(2, pool.RefCount(b)));
        Assert.Equal(8, pool.FreeBlocks);
        var stats = pool.Stats();
        Assert.Equal((2, 2, 4L, 2 * Layout.BytesPerBlock), (stats.HeldBlocks, stats.SharedBlocks, stats.UnsharedBlocks, stats.BytesSavedBySharing));

        child.Append(42);
        Assert.Equal(parent.Blocks[0], child.Blocks[0]);
        Assert.NotEqual(parent.Blocks[1], child.Blocks[1]);
        Assert.Equal(1, pool.CopyOnWriteCopies);
        Assert.Equal(1, pool.RefCount(parent.Blocks[1]));
        for (int l = 0; l < Layout.NLayers; l++)
            for (int kOrV = 0; kOrV < 2; kOrV++)
                Assert.Equal(kv.Plane(parent.Blocks[1], l, kOrV).ToArray(), kv.Plane(child.Blocks[1], l, kOrV).ToArray());

        parent.Append(7); // its last block is now its own: written in place
        Assert.Equal(1, pool.CopyOnWriteCopies);
        Assert.Equal([0, 1, 2, 3, 4, 5, 7], parent.Tokens);
        Assert.Equal([0, 1, 2, 3, 4, 5, 42], child.Tokens);
        pool.ValidateInvariants();

        using var full = new Sequence(pool);
        full.Append(Tokens(8));
        using var fullFork = full.Fork();
        fullFork.Append(1); // last block full: a new block, no copy
        Assert.Equal(1, pool.CopyOnWriteCopies);
        pool.ValidateInvariants();
    }

    [Fact]
    public void ReleasingEverySequenceReturnsEveryBlock()
    {
        using var pool = Pool(6);
        var a = new Sequence(pool);
        a.Append(Tokens(9));
        var b = a.Fork();
        b.Append(1);
        var c = b.Fork();
        a.Dispose(); a.Dispose(); // twice is harmless
        b.Dispose(); c.Dispose();
        Assert.Equal(6, pool.FreeBlocks);
        Assert.Equal(0, pool.SequenceCount);
        pool.ValidateInvariants();
        Assert.Throws<ObjectDisposedException>(() => a.Append(1));
        Assert.Throws<ObjectDisposedException>(() => a.Fork());
    }

    [Fact]
    public void RunningOutOfBlocksThrowsCatchableAndLeavesPoolUnchanged()
    {
        using var pool = Pool(4);
        using var a = new Sequence(pool);
        a.Append(Tokens(6));                 // 2 blocks
        using var b = a.Fork();              // shares both
        var c = new Sequence(pool);
        c.Append(Tokens(8));                 // 2 blocks: pool full

        var e = Assert.Throws<KvCacheFullException>(() => b.Append(9)); // needs a copy of the shared partial block
        Assert.Contains("KV cache is full", e.Message);
        Assert.Equal(6, b.Length);
        Assert.Equal(a.Blocks, b.Blocks);
        Assert.Equal(0, pool.FreeBlocks);
        Assert.Equal(0, pool.CopyOnWriteCopies);
        pool.ValidateInvariants();

        using var d = new Sequence(pool);
        Assert.Throws<KvCacheFullException>(() => d.Append(Tokens(3)));
        Assert.Equal(0, d.Length);
        Assert.Empty(d.Blocks);
        pool.ValidateInvariants();

        c.Dispose();
        b.Append(9);
        Assert.Equal(1, pool.CopyOnWriteCopies);
        pool.ValidateInvariants();
    }

    [Fact]
    public void FullPoolEvictsCachedBlocksFirstButNothingWhenEvenThatIsNotEnough()
    {
        using var pool = Pool(4);
        var index = new PrefixIndex(pool, "m");
        var s = index.CreateSequence(Tokens(8));
        s.MarkComputed(8);                   // both blocks full and computed: published
        Assert.Equal(2, index.CachedBlockCount);
        s.Dispose();
        Assert.Equal((2, 2), (pool.FreeBlocks, pool.Stats().CachedBlocks));

        using var big = new Sequence(pool);
        Assert.Throws<KvCacheFullException>(() => big.Append(Tokens(17, 100))); // 5 blocks > 4
        Assert.Equal(2, index.CachedBlockCount);
        Assert.Equal(0, pool.EvictedBlocks);

        big.Append(Tokens(13, 100));         // 4 blocks: evicts both cached ones
        Assert.Equal((0, 2L), (index.CachedBlockCount, pool.EvictedBlocks));
        pool.ValidateInvariants();
    }

    [Fact]
    public void CreateSequenceAttachesLongestCachedFullBlockPrefix()
    {
        using var pool = Pool(16);
        var index = new PrefixIndex(pool, "policy");
        using var first = index.CreateSequence(Tokens(10));
        Assert.Equal(0, first.ComputedLength);
        first.MarkComputed(10);              // publishes blocks 0 and 1 (tokens 0..7); block 2 is partial
        Assert.Equal(2, index.CachedBlockCount);

        int[] diverging = [.. Tokens(9), 99];
        using var second = index.CreateSequence(diverging);
        Assert.Equal(8, second.ComputedLength);
        Assert.Equal(first.Blocks.Take(2), second.Blocks.Take(2));
        Assert.NotEqual(first.Blocks[2], second.Blocks[2]);

        using var exact = index.CreateSequence(Tokens(8));   // fully cached: only the last token is recomputed
        Assert.Equal((8, 7), (exact.Length, exact.ComputedLength));
        var batch = new SequenceBatch(Bs);
        batch.Add(exact);
        Assert.Equal(1, batch.Layout.TokenCount);
        Assert.Equal(7, batch.Layout.Positions[0]);
        Assert.Equal(1, pool.CopyOnWriteCopies);             // the cached block is copied before its slot is rewritten
        Assert.NotEqual(first.Blocks[1], exact.Blocks[1]);
        Assert.Equal(first.Blocks[0], exact.Blocks[0]);

        var stats = pool.Stats();
        Assert.Equal((28L, 15L), (stats.PrefixQueryTokens, stats.PrefixHitTokens));
        Assert.Equal(15.0 / 28, stats.PrefixHitRate, 12);

        var other = new PrefixIndex(pool, "prm-adapter");    // another namespace never sees these blocks
        using var elsewhere = other.CreateSequence(Tokens(10));
        Assert.Equal(0, elsewhere.ComputedLength);
        Assert.Throws<ArgumentException>(() => new PrefixIndex(pool, "policy"));
        pool.ValidateInvariants();
    }

    [Fact]
    public void EvictionTakesLeastRecentlyUsedUnlockedUnheldLeavesFirst()
    {
        using var pool = Pool(16);
        var index = new PrefixIndex(pool, "m");
        void Publish(int[] tokens) { using var s = index.CreateSequence(tokens); s.MarkComputed(tokens.Length); }
        int[] a = Tokens(4, 0), b = Tokens(4, 10), c = Tokens(4, 20), chain = Tokens(8, 30);
        Publish(a); Publish(b); Publish(c); Publish(chain);
        Assert.Equal(5, index.CachedBlockCount);
        index.MatchPrefix(a);                                // a is now the most recently used... except chain's touch below
        index.MatchPrefix(chain);

        Assert.Equal(1, index.Evict(1));                     // b: least recently used
        Assert.Equal(0, index.MatchPrefix(b).Length);
        Assert.Equal(4, index.MatchPrefix(c).Length);        // touch c: order now a, chain, c

        using (var lease = index.Lock(index.MatchPrefix(a)))
        {
            using var holder = index.CreateSequence(chain);  // holds both chain blocks: not evictable
            Assert.Equal(0, pool.Stats().PrefixHitTokens - 7); // fully cached prompt: 7 of 8 tokens reused
            Assert.Equal(1, index.Evict(10));                // only c: a is locked, chain is held
            Assert.Equal(4, index.MatchPrefix(a).Length);
            lease.Dispose();
            lease.Dispose();                                 // a second dispose must not unlock twice
            Assert.False(lease.IsHeld);
            pool.ValidateInvariants();
        }
        Assert.Equal(3, index.Evict(10));                    // a, then chain's leaf, then its parent
        Assert.Equal(0, index.CachedBlockCount);
        Assert.Equal(pool.BlockCount, pool.FreeBlocks);
        pool.ValidateInvariants();
    }

    [Fact]
    public void CapacityIsSetInTokensOrBytes()
    {
        using var byTokens = BlockPool.ForTokens(_backend, Layout, 17);
        Assert.Equal((5, 20L), (byTokens.BlockCount, byTokens.CapacityTokens));
        using var byBytes = BlockPool.ForBytes(_backend, Layout, 3 * Layout.BytesPerBlock + 1);
        Assert.Equal(3, byBytes.BlockCount);
        Assert.Equal(3 * Layout.BytesPerBlock, byBytes.CapacityBytes);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => BlockPool.ForBytes(_backend, Layout, 10));
        Assert.Contains("cannot hold one KV block", e.Message);
    }

    [Fact]
    public void BatchRejectsSequencesWithNothingPendingOrAddedTwice()
    {
        using var pool = Pool(4);
        using var s = new Sequence(pool);
        var batch = new SequenceBatch(Bs);
        Assert.Throws<ArgumentException>(() => batch.Add(s));
        s.Append(Tokens(5));
        batch.Add(s, maxTokens: 3);
        Assert.Equal(-1, batch.OutputIndex(0));              // chunk stops short of the last token: no output
        Assert.Throws<ArgumentException>(() => batch.Add(s));
        batch.MarkComputed();
        Assert.Equal(3, s.ComputedLength);
        Assert.Throws<ArgumentException>(() => new SequenceBatch(8).Add(s));
    }
}
