using Ponder.Backends;
using Ponder.Backends.Cpu;

namespace Ponder.Tests.Forward;

/// <summary>
/// The CPU attention puts at most 32 query vectors in one lane set; a KV head with more query heads (multi-query
/// attention with many heads) is split across sets by head. Checked against a float64 reference, and a decode token's
/// output bitwise equal alone and batched.
/// </summary>
public sealed class WideGroupAttentionTests
{
    const int NHeads = 40, NKvHeads = 1, HeadDim = 4, Bs = 4, QDim = NHeads * HeadDim, KvDim = NKvHeads * HeadDim;

    [Fact]
    public void FortyQueryHeadsOnOneKvHeadMatchTheReference()
    {
        using var backend = new CpuBackend(2);
        var layout = new KvLayout(1, NKvHeads, HeadDim, Bs);
        using var kv = backend.AllocateKv(layout, 8);
        var rng = new Random(5);
        float[] Rand(int n) => [.. Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1))];
        // Sequence A: 7 tokens in blocks 0, 1 (prefill); sequence B: 5 cached tokens in blocks 2, 3 plus one decode token.
        var kA = Rand(7 * KvDim); var vA = Rand(7 * KvDim); var kB = Rand(6 * KvDim); var vB = Rand(6 * KvDim);
        var cache = new BatchLayout(Bs);
        cache.Add(0, 5, [2, 3]);
        using (var k5 = backend.Upload(kB.AsSpan(0, 5 * KvDim), 5, KvDim)) using (var v5 = backend.Upload(vB.AsSpan(0, 5 * KvDim), 5, KvDim))
            backend.StoreKv(kv, 0, k5, v5, cache);

        var batch = new BatchLayout(Bs);
        batch.Add(0, 7, [0, 1]);
        batch.Add(5, 1, [2, 3]);
        var qs = Rand(8 * QDim);
        using var q = backend.Upload(qs, 8, QDim);
        using var k = backend.Upload([.. kA, .. kB.AsSpan(5 * KvDim)], 8, KvDim);
        using var v = backend.Upload([.. vA, .. vB.AsSpan(5 * KvDim)], 8, KvDim);
        using var o = backend.Allocate(8, QDim);
        backend.StoreKv(kv, 0, k, v, batch);
        backend.Attention(q, kv, 0, NHeads, batch, o);
        var got = new float[8 * QDim];
        backend.Download(o, got);

        for (int row = 0; row < 8; row++)
        {
            bool a = row < 7;
            var ks = a ? kA : kB; var vs = a ? vA : vB;
            int keys = a ? row + 1 : 6;
            for (int h = 0; h < NHeads; h++)
            {
                var scores = new double[keys];
                for (int j = 0; j < keys; j++)
                {
                    double dot = 0;
                    for (int e = 0; e < HeadDim; e++) dot += (double)qs[row * QDim + h * HeadDim + e] * ks[j * KvDim + e];
                    scores[j] = dot / Math.Sqrt(HeadDim);
                }
                double max = scores.Max(), sum = scores.Sum(x => Math.Exp(x - max));
                for (int e = 0; e < HeadDim; e++)
                {
                    double expected = 0;
                    for (int j = 0; j < keys; j++) expected += Math.Exp(scores[j] - max) / sum * vs[j * KvDim + e];
                    // f32 dot products, exp and sums over ≤ 7 terms of magnitude ≤ 1: a few ulp of 1.
                    Assert.True(Math.Abs(got[row * QDim + h * HeadDim + e] - expected) < 1e-5, $"row {row} head {h} dim {e}: {got[row * QDim + h * HeadDim + e]} vs {expected}");
                }
            }
        }

        // The decode token alone gives the same bits.
        var alone = new BatchLayout(Bs);
        alone.Add(5, 1, [2, 3]);
        using var q1 = backend.Upload(qs.AsSpan(7 * QDim), 1, QDim);
        using var o1 = backend.Allocate(1, QDim);
        backend.Attention(q1, kv, 0, NHeads, alone, o1);
        var single = new float[QDim];
        backend.Download(o1, single);
        Assert.Equal(got.AsSpan(7 * QDim).ToArray(), single);
    }
}
