using CsCheck;
using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Cache;

namespace Ponder.Tests.Cache;

/// <summary>
/// Property-based: random programs of create-from-prompt (prefix attach) / fork / append / compute / release /
/// evict / lock operations against a simple model (the tokens each live sequence should hold). After every
/// operation: reference counts equal holders (counted here independently), no block is both free and held,
/// tokens read back equal the model's, and every computed position's K/V read back through the block table equals
/// the fake value written for it. The fake K/V depends on the whole prefix up to the position (as a real model's
/// does), so attaching or sharing the wrong block is caught. At the end everything returns to the pool.
/// </summary>
public sealed class CacheModelTests
{
    const int BlockSize = 4, Blocks = 30, MaxLive = 10, NLayers = 2, NKvHeads = 1, HeadDim = 2;

    readonly record struct Op(int Kind, int A, int B)
    {
        public override string ToString() => $"{(Kind)Kind}({A},{B})";
    }

    enum Kind { Create, Fork, Append, Compute, Release, Evict, Lock, Unlock }

    static readonly Gen<Op> GenOp = Gen.Select(Gen.Int[0, 7], Gen.Int[0, 999], Gen.Int[0, 999], (k, a, b) => new Op(k, a, b));

    // Three "documents" whose prefixes prompts take, so prompts share prefixes and hit the index.
    static readonly int[][] Documents = [.. Enumerable.Range(0, 3).Select(d => Enumerable.Range(0, 48).Select(i => (i * 7 + d * (i / 9)) % 5).ToArray())];

    [Fact]
    public void RandomProgramsKeepCacheConsistent() =>
        GenOp.Array[100, 300].Sample(RunProgram, iter: 30);

    static void RunProgram(Op[] ops)
    {
        using var backend = new CpuBackend(threads: 1);
        using var pool = new BlockPool(backend, new KvLayout(NLayers, NKvHeads, HeadDim, BlockSize), Blocks);
        var index = new PrefixIndex(pool, "policy");
        var kv = (CpuKvStorage)pool.Storage;
        var live = new List<(Sequence Seq, List<int> Tokens)>();
        var leases = new List<PrefixLease>();
        var batch = new SequenceBatch(BlockSize);

        for (int step = 0; step < ops.Length; step++)
        {
            var (kind, a, b) = ((Kind)ops[step].Kind, ops[step].A, ops[step].B);
            var before = Snapshot(pool, live);
            bool full = false;
            try
            {
                switch (kind)
                {
                    case Kind.Create when live.Count < MaxLive:
                        {
                            int[] prompt = Documents[a % 3][..(b % 30)];
                            if (a % 4 == 0 && prompt.Length > 0) prompt[^1] = 5 + a % 3; // diverge at the end
                            var s = index.CreateSequence(prompt);
                            live.Add((s, [.. prompt]));
                            Assert.True(s.ComputedLength % BlockSize == 0 || s.ComputedLength == prompt.Length - 1, $"computed {s.ComputedLength} of {prompt.Length}");
                            break;
                        }
                    case Kind.Fork when live.Count is > 0 and < MaxLive:
                        {
                            var (parent, tokens) = live[a % live.Count];
                            var child = parent.Fork();
                            Assert.Equal(parent.ComputedLength, child.ComputedLength);
                            live.Add((child, [.. tokens]));
                            break;
                        }
                    case Kind.Append when live.Count > 0:
                        {
                            var (s, tokens) = live[a % live.Count];
                            int[] add = [.. Enumerable.Range(0, 1 + b % 6).Select(i => (a + i * b) % 7)];
                            s.Append(add);
                            tokens.AddRange(add);
                            break;
                        }
                    case Kind.Compute when live.Count > 0:
                        Compute(live, a, b, batch, kv);
                        break;
                    case Kind.Release when live.Count > 0:
                        live[a % live.Count].Seq.Dispose();
                        live.RemoveAt(a % live.Count);
                        break;
                    case Kind.Evict:
                        {
                            int cachedBefore = index.CachedBlockCount;
                            int freed = index.Evict(b % 5);
                            Assert.Equal(cachedBefore - freed, index.CachedBlockCount);
                            Assert.Equal(before.Free + freed, pool.FreeBlocks);
                            break;
                        }
                    case Kind.Lock when live.Count > 0:
                        leases.Add(index.Lock(index.MatchPrefix(live[a % live.Count].Seq.TokenSpan)));
                        break;
                    case Kind.Unlock when leases.Count > 0:
                        leases[a % leases.Count].Dispose();
                        leases.RemoveAt(a % leases.Count);
                        break;
                }
            }
            catch (KvCacheFullException)
            {
                full = true;
                batch.Clear();
            }
            if (full && kind != Kind.Compute) Assert.Equal(before, Snapshot(pool, live));
            Check(pool, index, live, kv);
        }

        foreach (var l in leases) l.Dispose();
        foreach (var (s, _) in live) s.Dispose();
        index.Evict(int.MaxValue);
        Assert.Equal(pool.BlockCount, pool.FreeBlocks);
        Assert.Equal(0, index.CachedBlockCount);
        pool.ValidateInvariants();
    }

    /// <summary>Runs a fake forward over up to three live sequences: writes each pending row's fake K/V at its slot.</summary>
    static void Compute(List<(Sequence Seq, List<int> Tokens)> live, int a, int b, SequenceBatch batch, CpuKvStorage kv)
    {
        batch.Clear();
        for (int j = 0; j < Math.Min(3, live.Count); j++)
        {
            var s = live[(a + j) % live.Count].Seq;
            if (s.PendingLength > 0) batch.Add(s, 1 + (b + j) % 8);
        }
        if (batch.Count == 0) return;
        var layout = batch.Layout;
        Assert.Equal(layout.TokenCount, batch.Tokens.Length);
        for (int r = 0; r < layout.TokenCount; r++)
        {
            var s = batch[layout.SequenceOf[r]];
            int pos = layout.Positions[r], slot = layout.Slots[r];
            Assert.Equal(s.Tokens[pos], batch.Tokens[r]);
            Assert.Equal(s.Blocks[pos / BlockSize] * BlockSize + pos % BlockSize, slot);
            Assert.Equal(1, s.Pool.RefCount(slot / BlockSize)); // only a sole holder writes a block
            int h = PrefixHash(s.TokenSpan, pos);
            for (int l = 0; l < NLayers; l++)
                for (int kOrV = 0; kOrV < 2; kOrV++)
                    for (int d = 0; d < NKvHeads * HeadDim; d++)
                        kv.Plane(slot / BlockSize, l, kOrV)[slot % BlockSize * NKvHeads * HeadDim + d] = Fake(h, l, kOrV, d);
        }
        for (int i = 0; i < batch.Count; i++)
        {
            int o = batch.OutputIndex(i);
            if (o >= 0) Assert.Equal(layout.QueryStart[i] + layout.QueryCount[i] - 1, batch.OutputRows[o]);
        }
        batch.MarkComputed();
    }

    static int PrefixHash(ReadOnlySpan<int> tokens, int pos)
    {
        int h = 17;
        for (int i = 0; i <= pos; i++) h = NextHash(h, tokens[i]);
        return h;
    }

    static int NextHash(int h, int token) => unchecked(h * 31 + token + 1);

    // Exact in float: at most 2^20.
    static float Fake(int prefixHash, int layer, int kOrV, int d) => (prefixHash * 8 + layer * 4 + kOrV * 2 + d) & 0xFFFFF;

    static void Check(BlockPool pool, PrefixIndex index, List<(Sequence Seq, List<int> Tokens)> live, CpuKvStorage kv)
    {
        pool.ValidateInvariants();
        // Reference counts, counted independently of the pool's own check.
        var holders = new int[pool.BlockCount];
        foreach (var (s, _) in live) foreach (int blk in s.Blocks) holders[blk]++;
        foreach (int blk in index.CachedBlocks()) holders[blk]++;
        for (int blk = 0; blk < pool.BlockCount; blk++) Assert.Equal(holders[blk], pool.RefCount(blk));
        Assert.Equal(holders.Count(h => h == 0), pool.FreeBlocks);

        foreach (var (s, tokens) in live)
        {
            Assert.Equal(tokens, s.Tokens);
            Assert.Equal((tokens.Count + BlockSize - 1) / BlockSize, s.Blocks.Count);
            int h = PrefixHash(s.TokenSpan, -1);
            for (int pos = 0; pos < s.ComputedLength; pos++)
            {
                int blk = s.Blocks[pos / BlockSize];
                h = NextHash(h, s.Tokens[pos]);
                for (int l = 0; l < NLayers; l++)
                    for (int kOrV = 0; kOrV < 2; kOrV++)
                        for (int d = 0; d < NKvHeads * HeadDim; d++)
                        {
                            float got = kv.Plane(blk, l, kOrV)[pos % BlockSize * NKvHeads * HeadDim + d];
                            if (got != Fake(h, l, kOrV, d))
                                Assert.Fail($"position {pos} (block {blk}) layer {l} {(kOrV == 0 ? "K" : "V")}[{d}] = {got}, expected {Fake(h, l, kOrV, d)}");
                        }
            }
        }
    }

    sealed record State(int Free, int Cached, string Sequences);

    static State Snapshot(BlockPool pool, List<(Sequence Seq, List<int> Tokens)> live) =>
        new(pool.FreeBlocks, pool.Indexes.Sum(i => i.CachedBlockCount),
            string.Join(";", live.Select(l => $"{l.Seq.ComputedLength}/{string.Join(",", l.Seq.Tokens)}/{string.Join(",", l.Seq.Blocks)}")));
}
