using Ponder.Backends.Cpu;
using Ponder.Backends.Cpu.Gemm;

namespace Ponder.Tests.Gemm;

/// <summary>
/// Sgemm against a naive float64 reference (tolerance in <see cref="GemmReference"/>): every micro-kernel ISA (the ones this
/// machine does not accelerate run emulated), all four transposes, ragged sizes around the tile and block edges, leading
/// dimensions wider than the matrices, alpha/beta variants, and C poisoned with NaN so unwritten elements fail.
/// </summary>
public sealed class SgemmTests
{
    static readonly int[] Ragged = [0, 1, 15, 16, 17, 31, 33];

    public static TheoryData<string, bool, bool> IsaAndTransposes()
    {
        var data = new TheoryData<string, bool, bool>();
        foreach (var isa in Enum.GetValues<GemmIsa>())
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                    data.Add(isa.ToString(), ta, tb);
        return data;
    }

    [Theory]
    [MemberData(nameof(IsaAndTransposes))]
    public void RaggedSizes_AllCombinations_MatchReference(string isaName, bool transA, bool transB)
    {
        var isa = Enum.Parse<GemmIsa>(isaName);
        foreach (int m in Ragged)
            foreach (int n in Ragged)
                foreach (int k in Ragged)
                    Check(isa, transA, transB, m, n, k, 1f, 0f, pad: 0, seed: m * 10000 + n * 100 + k);
    }

    [Theory]
    [MemberData(nameof(IsaAndTransposes))]
    public void SizesCrossingCacheBlocks_WithWideLeadingDimensions_MatchReference(string isaName, bool transA, bool transB)
    {
        var isa = Enum.Parse<GemmIsa>(isaName);
        // k = 700 crosses KC (256 / 640), 257 rows cross MC (120 / 240); (257, 15) makes the split go by rows; 2100 columns cross NC = 2048.
        Check(isa, transA, transB, 257, 33, 31, 1f, 0f, pad: 3, seed: 1);
        Check(isa, transA, transB, 31, 257, 33, 1f, 0f, pad: 5, seed: 2);
        Check(isa, transA, transB, 33, 31, 700, 1f, 0f, pad: 1, seed: 3);
        Check(isa, transA, transB, 257, 15, 17, 1f, 0f, pad: 2, seed: 4);
        Check(isa, transA, transB, 7, 2100, 5, 1f, 0f, pad: 0, seed: 5);
        if (isa == GemmShape.Best.Isa) Check(isa, transA, transB, 257, 257, 257, 1f, 0f, pad: 7, seed: 6);
    }

    [Theory]
    [InlineData(1f, 0f)]
    [InlineData(0.5f, 0f)]
    [InlineData(1f, 1f)]
    [InlineData(-1.5f, 0.25f)]
    [InlineData(0f, 2f)]
    [InlineData(0f, 0f)]
    [InlineData(2f, -1f)]
    public void AlphaBetaVariants_MatchReference(float alpha, float beta)
    {
        foreach (var isa in Enum.GetValues<GemmIsa>())
            foreach (var (m, n, k) in new[] { (17, 33, 31), (1, 16, 300), (13, 40, 0), (130, 17, 700) })
                for (int t = 0; t < 4; t++)
                    Check(isa, (t & 1) != 0, (t & 2) != 0, m, n, k, alpha, beta, pad: 2, seed: m + n + k + t);
    }

    [Fact]
    public void ConcurrentCallers_EachGetTheirOwnResult()
    {
        // The worker threads serve one call at a time; the others run inline and must still be right.
        Parallel.For(0, 6, new ParallelOptions { MaxDegreeOfParallelism = 6 }, t =>
        {
            for (int rep = 0; rep < 5; rep++) Check(GemmShape.Best.Isa, t % 2 == 0, t % 3 == 0, 65 + t, 70, 90, 1f, 0f, pad: 1, seed: t * 31 + rep);
        });
    }

    [Fact]
    public void BadArguments_ThrowNamingTheArgument()
    {
        var a = new float[6]; var b = new float[6]; var c = new float[4];
        var e = Assert.Throws<ArgumentException>(() => Sgemm.Multiply(false, false, 2, 2, 3, 1, a, 2, b, 2, 0, c, 2));
        Assert.Contains("a: leading dimension 2 is smaller than its 3 columns", e.Message);
        e = Assert.Throws<ArgumentException>(() => Sgemm.Multiply(false, false, 2, 2, 3, 1, a, 3, b, 2, 0, new float[3], 2));
        Assert.Contains("c: 3 elements cannot hold a [2, 2] matrix", e.Message);
        e = Assert.Throws<ArgumentException>(() => Sgemm.Multiply(false, true, 2, 2, 3, 1, a, 3, new float[5], 3, 0, c, 2));
        Assert.Contains("b: 5 elements cannot hold a [2, 3] matrix", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Sgemm.Multiply(false, false, -1, 2, 3, 1, a, 3, b, 2, 0, c, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => Sgemm.MaxThreads = 0);
    }

    /// <summary>
    /// The 512-bit kernel writes a full-width tile with alpha = 1 and beta 0 or 1 straight to C (no tile buffer, no
    /// Update pass); a narrower tile still goes through Update. Both must round alike, bit for bit, or a column's value
    /// would depend on where the tile edge falls (that is, on n and the thread split): the first 31 columns of a
    /// 32-column tile must equal the same tile computed 31 columns wide, for every row count and both betas.
    /// </summary>
    [Theory]
    [InlineData(0f)]
    [InlineData(1f)]
    public unsafe void DirectTileToC_EqualsTheTileBufferPath_Bitwise(float beta)
    {
        var shape = GemmShape.For(GemmIsa.Vector512);
        const int kc = 37, ldc = 40;
        var a = GemmReference.Random(kc * shape.MR, 11);
        var b = GemmReference.Random(kc * shape.NR, 12);
        var c0 = GemmReference.Random(shape.MR * ldc, 13);
        var tile = new float[shape.MR * shape.NR];
        for (int rows = 1; rows <= shape.MR; rows++)
        {
            var direct = (float[])c0.Clone();
            var viaTile = (float[])c0.Clone();
            fixed (float* pa = a, pb = b, pt = tile, pd = direct, pv = viaTile)
            {
                GemmKernels.Tile(GemmIsa.Vector512, rows, shape.NR, kc, pa, pb, pt, pd, ldc, 1f, beta);
                GemmKernels.Tile(GemmIsa.Vector512, rows, shape.NR - 1, kc, pa, pb, pt, pv, ldc, 1f, beta);
            }
            for (int r = 0; r < shape.MR; r++)
                for (int j = 0; j < ldc; j++)
                {
                    // Rows past `rows` and columns past NR are untouched by both; column NR - 1 only by the direct call.
                    float expected = r < rows && j == shape.NR - 1 ? direct[r * ldc + j] : viaTile[r * ldc + j];
                    Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(direct[r * ldc + j]),
                        $"rows={rows} beta={beta}: C[{r}, {j}] = {direct[r * ldc + j]} direct, {expected} through the tile buffer");
                }
            // Column NR - 1 of the direct call against a float64 sum, so the comparison above is not vacuous. Bound: kc
            // FMAs and one add, each rounding once (unit roundoff 2^-24), on partial sums at most Σ|terms|.
            for (int r = 0; r < rows; r++)
            {
                double sum = beta * c0[r * ldc + shape.NR - 1], magnitude = Math.Abs(sum);
                for (int p = 0; p < kc; p++)
                {
                    double term = (double)a[p * shape.MR + r] * b[p * shape.NR + shape.NR - 1];
                    sum += term; magnitude += Math.Abs(term);
                }
                double bound = (kc + 1) * Math.Pow(2, -24) * magnitude;
                Assert.InRange(direct[r * ldc + shape.NR - 1], sum - bound, sum + bound);
            }
        }
    }

    /// <summary>One GEMM against the reference; pad widens every leading dimension beyond its matrix.</summary>
    internal static void Check(GemmIsa isa, bool transA, bool transB, int m, int n, int k, float alpha, float beta, int pad, int seed)
    {
        int aRows = transA ? k : m, aCols = transA ? m : k, bRows = transB ? n : k, bCols = transB ? k : n;
        int lda = aCols + pad, ldb = bCols + pad, ldc = n + pad;
        var a = GemmReference.Random(Math.Max(aRows * lda, 1), seed);
        var b = GemmReference.Random(Math.Max(bRows * ldb, 1), seed + 1);
        // beta == 0: the whole of C is NaN, so an element the GEMM forgets fails. Otherwise the window holds values
        // and the padding stays NaN, which must survive untouched.
        var c = new float[Math.Max(m * ldc, 1)];
        Array.Fill(c, float.NaN);
        if (beta != 0)
        {
            var values = GemmReference.Random(c.Length, seed + 2);
            for (int i = 0; i < m; i++) Array.Copy(values, i * ldc, c, i * ldc, n);
        }
        var before = (float[])c.Clone();
        var (expected, bound) = GemmReference.Compute(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        Sgemm.Multiply(GemmShape.For(isa), transA, transB, m, n, k, alpha, a, Math.Max(lda, 1), b, Math.Max(ldb, 1), beta, c, Math.Max(ldc, 1));
        GemmReference.AssertClose($"{isa} transA={transA} transB={transB} m={m} n={n} k={k} alpha={alpha} beta={beta} pad={pad}",
            expected, bound, c, before, m, n, Math.Max(ldc, 1));
    }
}
