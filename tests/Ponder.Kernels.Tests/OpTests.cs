using Ponder.Backends;

namespace Ponder.Kernels.Tests;

// One abstract class per op with a float64 reference; one subclass per backend (BackendSubclasses.cs).

public abstract class EmbedTests : BackendTest
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 17)]
    public void GathersTableRows(int vocab, int d)
    {
        var table = Random(vocab * d, 1);
        int[] tokens = [vocab - 1, 0, vocab / 2, vocab - 1];
        using var tab = Backend.Upload(table, vocab, d);
        using var x = Poisoned(tokens.Length, d);
        Backend.Embed(tab, tokens, x);
        var expected = tokens.SelectMany(t => table.Skip(t * d).Take(d).Select(v => (double)v)).ToArray();
        Compare.Close(expected, Read(x, tokens.Length), 0, "embed");
    }

    [Fact]
    public void RejectsTokenOutsideVocabulary()
    {
        using var tab = Backend.Upload(new float[6], 3, 2);
        using var x = Backend.Allocate(1, 2);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Backend.Embed(tab, [3], x));
        Assert.Contains("token id 3", e.Message);
    }
}

public abstract class RmsNormTests : BackendTest
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 17)]
    [InlineData(4, 257)]
    public void MatchesReference(int n, int d)
    {
        var xs = Random(n * d, 2, 3f); var ws = Random(d, 3);
        using var x = Backend.Upload(xs, n, d);
        using var w = Backend.Upload(ws, 1, d);
        using var y = Poisoned(n, d);
        long before = Backend.Flops.Total;
        Backend.RmsNorm(x, w, 1e-5f, y, n);
        Assert.Equal(OpFlops.RmsNorm(n, d), Backend.Flops.Total - before);
        var expected = new double[n * d];
        for (int i = 0; i < n; i++)
        {
            double ss = 0;
            for (int j = 0; j < d; j++) ss += (double)xs[i * d + j] * xs[i * d + j];
            double inv = 1 / Math.Sqrt(ss / d + 1e-5);
            for (int j = 0; j < d; j++) expected[i * d + j] = xs[i * d + j] * inv * ws[j];
        }
        Compare.Close(expected, Read(y, n), 1e-5, $"rmsnorm n={n} d={d}");
    }
}

public abstract class MatMulTests : BackendTest
{
    /// <summary>Ragged shapes around tile sizes 4 and 16, M &lt; K and M &gt; K, and n = 1 (the GEMV path).</summary>
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(1, 17, 33)]
    [InlineData(2, 5, 40)]
    [InlineData(17, 15, 16)]
    [InlineData(33, 17, 5)]
    [InlineData(6, 31, 257)]
    public void MatchesReference(int n, int rows, int cols) => Check(n, rows, cols, Upload);

    protected virtual DeviceWeight Upload(float[] w, int rows, int cols) => Backend.UploadWeight(w, rows, cols);

    /// <summary>Weights sharing one input (Q, K, V) in one call, against the float64 reference (bitwise vs single calls: Ponder.Tests, CPU).</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void SharedInputMatchesReference(int n)
    {
        const int cols = 96;
        int[] rows = [64, 17, 200];
        var xs = Random(n * cols, 11);
        var ws = rows.Select((r, i) => Random(r * cols, 12 + i)).ToArray();
        using var x = Backend.Upload(xs, n, cols);
        var weights = rows.Select((r, i) => Upload(ws[i], r, cols)).ToArray();
        var ys = rows.Select(r => Poisoned(n, r)).ToArray();
        try
        {
            long before = Backend.Flops[FlopCategory.Projection];
            Backend.MatMul(x, weights, ys, n, FlopCategory.Projection);
            Assert.Equal(rows.Sum(r => OpFlops.MatMul(n, r, cols)), Backend.Flops[FlopCategory.Projection] - before);
            for (int w = 0; w < rows.Length; w++)
            {
                var expected = new double[n * rows[w]];
                for (int i = 0; i < n; i++)
                    for (int r = 0; r < rows[w]; r++)
                    {
                        double acc = 0;
                        for (int k = 0; k < cols; k++) acc += (double)xs[i * cols + k] * RoundWeight(ws[w][r * cols + k]);
                        expected[i * rows[w] + r] = acc;
                    }
                Compare.Close(expected, Read(ys[w], n), 1e-5, $"shared-input matmul n={n}, weight {w} [{rows[w]}, {cols}]");
            }
            var e = Assert.Throws<ArgumentException>(() => Backend.MatMul(x, weights, ys[..2], n, FlopCategory.Projection));
            Assert.Contains("3 weights but 2 outputs", e.Message);
        }
        finally
        {
            foreach (var d in weights.Concat<IDisposable>(ys)) d.Dispose();
        }
    }

    protected void Check(int n, int rows, int cols, Func<float[], int, int, DeviceWeight> upload, double tol = 1e-5)
    {
        var xs = Random(n * cols, 4); var ws = Random(rows * cols, 5);
        using var x = Backend.Upload(xs, n, cols);
        using var w = upload(ws, rows, cols);
        using var y = Poisoned(n, rows);
        long before = Backend.Flops[FlopCategory.LmHead];
        Backend.MatMul(x, w, y, n, FlopCategory.LmHead);
        Assert.Equal(OpFlops.MatMul(n, rows, cols), Backend.Flops[FlopCategory.LmHead] - before);
        var expected = new double[n * rows];
        for (int i = 0; i < n; i++)
            for (int r = 0; r < rows; r++)
            {
                double acc = 0;
                for (int k = 0; k < cols; k++) acc += (double)xs[i * cols + k] * RoundWeight(ws[r * cols + k]);
                expected[i * rows + r] = acc;
            }
        Compare.Close(expected, Read(y, n), tol, $"matmul n={n} W[{rows}, {cols}]");
    }

    protected virtual double RoundWeight(float w) => w;
}

public abstract class ElementwiseTests : BackendTest
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 17)]
    public void AddBiasAddAndSwiGluMatchReference(int n, int d)
    {
        var a = Random(n * d, 6, 4f); var b = Random(n * d, 7, 4f); var bias = Random(d, 8);
        // Rows past n must stay untouched: poison a spare row and check it stays NaN.
        using var x = Backend.Upload([.. a, .. Enumerable.Repeat(float.NaN, d)], n + 1, d);
        using var y = Backend.Upload([.. b, .. new float[d]], n + 1, d);
        using var bi = Backend.Upload(bias, 1, d);
        Backend.AddBias(x, bi, n);
        Backend.Add(x, y, n);
        Backend.SwiGlu(x, y, n);
        var got = Read(x, n + 1);
        var expected = new double[n * d];
        for (int i = 0; i < n * d; i++)
        {
            double g = (double)a[i] + bias[i % d] + b[i];
            expected[i] = g / (1 + Math.Exp(-g)) * b[i];
        }
        Compare.Close(expected, got.AsSpan(0, n * d), 1e-5, "bias, add, swiglu");
        Assert.All(got.Skip(n * d), v => Assert.True(float.IsNaN(v), "a row past n was written"));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 17)]
    public void ReluMatchesReferenceOnRowsUpToN(int n, int d)
    {
        // Values of both signs and exact zeros; ReLU is exact, so the comparison is exact.
        var a = Random(n * d, 10, 4f);
        for (int i = 0; i < a.Length; i += 5) a[i] = 0f;
        using var x = Backend.Upload([.. a, .. Enumerable.Repeat(-1f, d)], n + 1, d);
        long before = Backend.Flops.Total;
        Backend.Relu(x, n);
        Assert.Equal(OpFlops.Relu(n, d), Backend.Flops.Total - before);
        var got = Read(x, n + 1);
        Compare.Close(a.Select(v => Math.Max((double)v, 0)).ToArray(), got.AsSpan(0, n * d), 0, "relu");
        Assert.All(got.Skip(n * d), v => Assert.Equal(-1f, v)); // a row past n keeps its negative values
    }

    [Fact]
    public void GatherRowsSelectsRows()
    {
        var xs = Random(4 * 9, 9);
        using var x = Backend.Upload(xs, 4, 9);
        using var y = Poisoned(3, 9);
        int[] rows = [2, 0, 3];
        Backend.GatherRows(x, rows, y);
        Compare.Close(rows.SelectMany(r => xs.Skip(r * 9).Take(9).Select(v => (double)v)).ToArray(), Read(y, 3), 0, "gather");
    }
}

public abstract class RopeTests : BackendTest
{
    [Theory]
    [InlineData(3, 8)]
    [InlineData(2, 2)]
    public void RotatesHalvesAtEachPosition(int nHeads, int headDim)
    {
        var batch = new BatchLayout(4);
        batch.Add(5, 3, [0, 1]);   // positions 5, 6, 7
        batch.Add(0, 2, [2]);      // positions 0, 1
        int n = batch.TokenCount, width = nHeads * headDim, positions = 9, half = headDim / 2;
        var table = new float[positions * headDim];
        for (int p = 0; p < positions; p++)
            for (int i = 0; i < half; i++)
            {
                double angle = p * Math.Pow(10000, -2.0 * i / headDim);
                table[p * headDim + i] = (float)Math.Cos(angle);
                table[p * headDim + half + i] = (float)Math.Sin(angle);
            }
        var xs = Random(n * width, 10);
        using var x = Backend.Upload(xs, n, width);
        using var rope = Backend.Upload(table, positions, headDim);
        Backend.Rope(x, nHeads, headDim, rope, batch);
        var expected = new double[n * width];
        for (int r = 0; r < n; r++)
        {
            int p = batch.Positions[r];
            for (int h = 0; h < nHeads; h++)
                for (int i = 0; i < half; i++)
                {
                    int at = r * width + h * headDim;
                    double c = table[p * headDim + i], s = table[p * headDim + half + i];
                    expected[at + i] = xs[at + i] * c - xs[at + i + half] * s;
                    expected[at + i + half] = xs[at + i + half] * c + xs[at + i] * s;
                }
        }
        Compare.Close(expected, Read(x, n), 1e-6, "rope");
    }
}

/// <summary>StoreKv + paged attention + CopyKvBlock against a float64 reference over contiguous per-sequence K/V.</summary>
public abstract class AttentionTests : BackendTest
{
    const int NLayers = 2, NKvHeads = 2, HeadDim = 8, BlockSize = 4, NHeads = 6, BlockCount = 12, Layer = 1;
    static readonly KvLayout Layout = new(NLayers, NKvHeads, HeadDim, BlockSize);
    const int KvDim = NKvHeads * HeadDim, QDim = NHeads * HeadDim;

    sealed record Seq(int Context, int New, int[] Blocks, float[] K, float[] V);

    /// <summary>
    /// Three sequences in one batch: a prefill chunk continuing mid-block (context 5, 3 new), a first token, and a
    /// decode step whose context ends mid-block (context 9). Blocks are scattered; every slot starts as NaN so a read
    /// past a sequence's keys fails.
    /// </summary>
    [Fact]
    public void MixedBatchMatchesReference()
    {
        var seqs = new[]
        {
            MakeSeq(5, 3, [7, 2], 11),
            MakeSeq(0, 1, [4], 12),
            MakeSeq(9, 1, [0, 9, 5], 13),
        };
        using var kv = Backend.AllocateKv(Layout, BlockCount);
        PoisonCache(kv);
        StoreContexts(kv, seqs);
        var batch = new BatchLayout(BlockSize);
        foreach (var s in seqs) batch.Add(s.Context, s.New, s.Blocks);
        int n = batch.TokenCount;
        var qs = Random(n * QDim, 14);
        using var q = Backend.Upload(qs, n, QDim);
        using var k = Backend.Upload(Rows(seqs, s => s.K, newOnly: true), n, KvDim);
        using var v = Backend.Upload(Rows(seqs, s => s.V, newOnly: true), n, KvDim);
        using var o = Poisoned(n, QDim);
        Backend.StoreKv(kv, Layer, k, v, batch);
        var before = Backend.Flops.Snapshot();
        Backend.Attention(q, kv, Layer, NHeads, batch, o);
        var spent = Backend.Flops.Since(before);
        Assert.Equal(OpFlops.Attention(NHeads, HeadDim, batch.CausalKeys), spent[FlopCategory.Attention]);
        Assert.Equal(OpFlops.Softmax(NHeads, batch.CausalKeys), spent[FlopCategory.Elementwise]);
        Compare.Close(Reference(seqs, qs), Read(o, n), 1e-5, "attention");
    }

    [Fact]
    public void CopiedBlockServesAFork()
    {
        var parent = MakeSeq(6, 1, [3, 8], 21);
        using var kv = Backend.AllocateKv(Layout, BlockCount);
        PoisonCache(kv);
        StoreContexts(kv, [parent]);
        // The fork shares block 3 and owns a copy of the partially filled block 8 in block 10.
        Backend.CopyKvBlock(kv, 8, 10);
        var fork = parent with { Blocks = [3, 10] };
        var batch = new BatchLayout(BlockSize);
        batch.Add(fork.Context, fork.New, fork.Blocks);
        var qs = Random(QDim, 22);
        using var q = Backend.Upload(qs, 1, QDim);
        using var k = Backend.Upload(Rows([fork], s => s.K, newOnly: true), 1, KvDim);
        using var v = Backend.Upload(Rows([fork], s => s.V, newOnly: true), 1, KvDim);
        using var o = Poisoned(1, QDim);
        Backend.StoreKv(kv, Layer, k, v, batch);
        Backend.Attention(q, kv, Layer, NHeads, batch, o);
        Compare.Close(Reference([fork], qs), Read(o, 1), 1e-5, "attention through a copied block");
    }

    static Seq MakeSeq(int context, int @new, int[] blocks, int seed) =>
        new(context, @new, blocks, Random((context + @new) * KvDim, seed), Random((context + @new) * KvDim, seed + 100));

    static float[] Rows(IEnumerable<Seq> seqs, Func<Seq, float[]> pick, bool newOnly) =>
        seqs.SelectMany(s => pick(s).Skip((newOnly ? s.Context : 0) * KvDim).Take((newOnly ? s.New : s.Context) * KvDim)).ToArray();

    void PoisonCache(KvStorage kv)
    {
        var all = new BatchLayout(BlockSize);
        all.Add(0, BlockCount * BlockSize, Enumerable.Range(0, BlockCount).ToArray());
        var nan = new float[BlockCount * BlockSize * KvDim];
        Array.Fill(nan, float.NaN);
        using var t = Backend.Upload(nan, BlockCount * BlockSize, KvDim);
        for (int l = 0; l < NLayers; l++) Backend.StoreKv(kv, l, t, t, all);
    }

    void StoreContexts(KvStorage kv, Seq[] seqs)
    {
        var withContext = seqs.Where(s => s.Context > 0).ToArray();
        var batch = new BatchLayout(BlockSize);
        foreach (var s in withContext) batch.Add(0, s.Context, s.Blocks);
        int n = batch.TokenCount;
        using var k = Backend.Upload(Rows(withContext, s => s.K, newOnly: false), n, KvDim);
        using var v = Backend.Upload(Rows(withContext, s => s.V, newOnly: false), n, KvDim);
        Backend.StoreKv(kv, Layer, k, v, batch);
    }

    static double[] Reference(Seq[] seqs, float[] q)
    {
        var result = new List<double>();
        int row = 0, group = NHeads / NKvHeads;
        foreach (var s in seqs)
            for (int i = 0; i < s.New; i++, row++)
            {
                int keys = s.Context + i + 1;
                for (int h = 0; h < NHeads; h++)
                {
                    int kvh = h / group;
                    var scores = new double[keys];
                    for (int j = 0; j < keys; j++)
                    {
                        double dot = 0;
                        for (int e = 0; e < HeadDim; e++) dot += (double)q[row * QDim + h * HeadDim + e] * s.K[j * KvDim + kvh * HeadDim + e];
                        scores[j] = dot / Math.Sqrt(HeadDim);
                    }
                    double max = scores.Max(), sum = scores.Sum(x => Math.Exp(x - max));
                    for (int e = 0; e < HeadDim; e++)
                    {
                        double acc = 0;
                        for (int j = 0; j < keys; j++) acc += Math.Exp(scores[j] - max) / sum * s.V[j * KvDim + kvh * HeadDim + e];
                        result.Add(acc);
                    }
                }
            }
        return result.ToArray();
    }
}
