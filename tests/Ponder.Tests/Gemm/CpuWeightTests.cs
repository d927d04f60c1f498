using Ponder.Backends.Cpu;
using Ponder.Backends.Cpu.Gemm;
using Ponder.Tensors;

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
        foreach (var (rows, cols) in new[] { (1, 1), (15, 17), (16, 16), (17, 33), (33, 257), (257, 31), (40, 700) })
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

    [Theory]
    [InlineData("F16")]
    [InlineData("BF16")]
    [InlineData("Q8_0")]
    [InlineData("Q4_0")]
    [InlineData("Q5_1")]
    [InlineData("Q4_K")]
    [InlineData("Q5_K")]
    [InlineData("Q6_K")]
    public void TypedWeights_MatchReferenceOnTheirDecodedValues(string typeName)
    {
        // The reference multiplies the f32 values DTypes.ToF32 decodes, so only the GEMM's own rounding is tolerated.
        var type = Enum.Parse<DType>(typeName);
        foreach (var isa in Enum.GetValues<GemmIsa>())
            foreach (var (rows, cols) in DTypes.BlockValues(type) == DTypes.KBlockValues ? new[] { (17, 256), (33, 1280) } : new[] { (17, 32), (15, 64), (33, 704) })
                foreach (int n in new[] { 1, 5, 64 })
                {
                    var raw = type is DType.F16 or DType.BF16 or DType.Q8_0 ? DTypes.FromF32(type, GemmReference.Random(rows * cols, rows + cols + n))
                        : TestSupport.QuantBlocks.Scaled(type, (long)rows * cols, rows + cols + n);
                    var w = new float[rows * cols];
                    DTypes.ToF32(type, raw, w);
                    var weight = CpuWeight.Create(GemmShape.For(isa), raw, type, rows, cols);
                    Assert.Equal(type, weight.Type);
                    Check(weight, w, n, seed: n, $"{isa} {type}");
                }
    }

    [Fact]
    public void F16EdgeValues_DecodeExactly_AndNaNPropagates()
    {
        // Subnormals, signed zeros and the largest finite half go through the fused in-register conversion of decode;
        // a weight holding a NaN takes the exact conversion path, and the NaN must reach its output row only.
        Half[] edge = [(Half)0f, (Half)(-0f), Half.Epsilon, -Half.Epsilon, (Half)6.1e-5f, (Half)(-3e-6f), Half.MaxValue, Half.MinValue];
        foreach (bool withNaN in new[] { false, true })
            foreach (var isa in Enum.GetValues<GemmIsa>())
            {
                const int rows = 20, cols = 64;
                var values = new float[rows * cols];
                for (int i = 0; i < values.Length; i++) values[i] = (float)edge[i % edge.Length] * (i % 3 == 0 ? 1e-4f : 1f);
                var raw = DTypes.FromF32(DType.F16, values);
                if (withNaN) BitConverter.TryWriteBytes(raw.AsSpan(2 * (3 * cols + 5)), BitConverter.HalfToUInt16Bits(Half.NaN));
                var w = new float[rows * cols];
                DTypes.ToF32(DType.F16, raw, w);
                var weight = CpuWeight.Create(GemmShape.For(isa), raw, DType.F16, rows, cols);
                var x = GemmReference.Random(cols, 7);
                var y = new float[rows];
                weight.Multiply(x, 1, y);
                for (int r = 0; r < rows; r++)
                {
                    if (withNaN && r == 3) { Assert.True(float.IsNaN(y[r]), $"{isa}: row 3 holds a NaN weight, got {y[r]}"); continue; }
                    double expected = 0, abs = 0;
                    for (int p = 0; p < cols; p++) { expected += (double)x[p] * w[r * cols + p]; abs += Math.Abs((double)x[p] * w[r * cols + p]); }
                    Assert.True(Math.Abs(y[r] - expected) <= 4 * Math.Sqrt(cols + 2) * GemmReference.Eps32 * abs + 1e-30,
                        $"{isa} nan={withNaN} row {r}: expected {expected:R}, actual {y[r]:R}");
                }
            }
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

        int padded = (3 + nr - 1) / nr * nr;
        Assert.Equal(padded * 64 + padded * 2 * 4L, CpuWeight.Create(new byte[3 * 2 * 34], DType.Q8_0, 3, 64).Bytes);
        Assert.Equal(padded * 64 * 2L, CpuWeight.Create(new byte[3 * 64 * 2], DType.F16, 3, 64).Bytes);
        e = Assert.Throws<ArgumentException>(() => CpuWeight.Create(new byte[100], DType.Q8_0, 3, 33));
        Assert.Contains("Q8_0 weight has 33 columns, not a multiple of the 32-value block", e.Message);
        e = Assert.Throws<ArgumentException>(() => CpuWeight.Create(new byte[100], DType.F16, 3, 32));
        Assert.Contains("F16 weight has 100 bytes, expected 192 for 3 x 32", e.Message);
    }

    static void Check(GemmIsa isa, int rows, int cols, int n, int seed)
    {
        var w = GemmReference.Random(rows * cols, seed);
        Check(CpuWeight.Create(GemmShape.For(isa), w, rows, cols), w, n, seed + 1, isa.ToString());
    }

    /// <summary>Multiplies n random tokens by <paramref name="weight"/>, whose f32 values are <paramref name="w"/>.</summary>
    static void Check(CpuWeight weight, float[] w, int n, int seed, string what)
    {
        int rows = weight.Rows, cols = weight.Cols;
        var x = GemmReference.Random(Math.Max(n * cols, 1), seed);
        var y = new float[n * rows + 5];
        Array.Fill(y, float.NaN);
        var before = (float[])y.Clone();
        weight.Multiply(x.AsSpan(0, n * cols), n, y);
        var (expected, bound) = GemmReference.Compute(false, true, n, rows, cols, 1f, x, cols, w, cols, 0f, y, rows);
        GemmReference.AssertClose($"{what} rows={rows} cols={cols} n={n}", expected, bound, y, before, n, rows, rows);
    }
}
