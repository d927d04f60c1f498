using Ponder.Backends.Cpu;
using Ponder.Backends.Cpu.Gemm;

namespace Ponder.Tests.Gemm;

/// <summary>
/// CpuWeight (y[n, rows] = x[n, cols] · Wᵀ with W pre-packed) against the float64 reference, for every micro-kernel ISA:
/// token counts for decode (1), batched decode and prefill, ragged weight shapes, y poisoned with NaN and longer than
/// n * rows so both forgotten and stray writes fail.
/// </summary>
public sealed class CpuWeightTests
{
    public static TheoryData<string> Isas() => new(Enum.GetNames<GemmIsa>());

    [Theory]
    [MemberData(nameof(Isas))]
    public void RaggedShapes_MatchReference(string isaName)
    {
        var isa = Enum.Parse<GemmIsa>(isaName);
        foreach (var (rows, cols) in new[] { (1, 1), (15, 17), (16, 16), (17, 33), (33, 257), (257, 31), (40, 600) })
            foreach (int n in new[] { 0, 1, 2, 7, 16, 17, 64 })
                Check(isa, rows, cols, n, seed: rows * 1000 + cols + n);
    }

    [Fact]
    public void LargeShapes_MatchReference()
    {
        // Prefill crosses the MC and KC blocks; 2100 outputs cross NC; n = 1 with many columns streams one long panel.
        Check(GemmShape.Best.Isa, 70, 300, 257, seed: 1);
        Check(GemmShape.Best.Isa, 2100, 20, 33, seed: 2);
        Check(GemmShape.Best.Isa, 100, 3000, 1, seed: 3);
    }

    [Fact]
    public void BytesCoverThePackedWeight_AndBadSizesThrow()
    {
        var w = CpuWeight.Create(new float[17 * 5], 17, 5);
        Assert.Equal((17, 5), (w.Rows, w.Cols));
        int nr = GemmShape.Best.NR;
        Assert.Equal((17 + nr - 1) / nr * nr * 5 * 4L, w.Bytes);
        var e = Assert.Throws<ArgumentException>(() => CpuWeight.Create(new float[10], 3, 4));
        Assert.Contains("weight has 10 values, expected 3 x 4", e.Message);
        e = Assert.Throws<ArgumentException>(() => w.Multiply(new float[9], 2, new float[34]));
        Assert.Contains("x has 9 values, expected at least 2 x 5", e.Message);
        e = Assert.Throws<ArgumentException>(() => w.Multiply(new float[10], 2, new float[33]));
        Assert.Contains("y has 33 values, expected at least 2 x 17", e.Message);
    }

    static void Check(GemmIsa isa, int rows, int cols, int n, int seed)
    {
        var w = GemmReference.Random(rows * cols, seed);
        var x = GemmReference.Random(Math.Max(n * cols, 1), seed + 1);
        var weight = CpuWeight.Create(GemmShape.For(isa), w, rows, cols);
        var y = new float[n * rows + 5];
        Array.Fill(y, float.NaN);
        var before = (float[])y.Clone();
        weight.Multiply(x.AsSpan(0, n * cols), n, y);
        var (expected, bound) = GemmReference.Compute(false, true, n, rows, cols, 1f, x, cols, w, cols, 0f, y, rows);
        GemmReference.AssertClose($"{isa} rows={rows} cols={cols} n={n}", expected, bound, y, before, n, rows, rows);
    }
}
