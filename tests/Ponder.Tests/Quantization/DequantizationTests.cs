using Ponder.Backends.Cpu;
using Ponder.Backends.Cpu.Gemm;
using Ponder.Tensors;
using Ponder.TestSupport;
using Ponder.Tests.LlamaCpp;

namespace Ponder.Tests.Quantization;

/// <summary>
/// Ponder's dequantizers against ggml's own (<c>dequantize_row_*</c> in the llama.cpp library LLamaSharp ships), bit for
/// bit, on blocks whose every bit is random; and the CPU backend's kept form (int8 q, f32 scales and offsets, converted
/// in registers) against the reference dequantizer, exactly, through both GEMM paths and every micro-kernel.
/// </summary>
public sealed class DequantizationTests
{
    public static TheoryData<DType> QuantizedTypes() => new(Enum.GetValues<DType>().Where(DTypes.IsQuantized));

    [Theory]
    [MemberData(nameof(QuantizedTypes))]
    public void Reference_dequantizer_is_ggmls_bit_for_bit(DType type)
    {
        int count = 64 * DTypes.BlockValues(type);
        foreach (int seed in new[] { 1, 2 })
        {
            // Random: every layout bit and f16 magnitudes from subnormal to 65504; Scaled: O(1) weights.
            foreach (var blocks in new[] { QuantBlocks.Random(type, count, seed), QuantBlocks.Scaled(type, count, seed) })
            {
                var ours = new float[count];
                DTypes.ToF32(type, blocks, ours);
                var theirs = GgmlNative.Dequantize(type, blocks, count);
                for (int i = 0; i < count; i++)
                    if (BitConverter.SingleToInt32Bits(ours[i]) != BitConverter.SingleToInt32Bits(theirs[i]))
                        Assert.Fail($"{type} seed {seed}: value {i} (block {i / DTypes.BlockValues(type)}) is {ours[i]:R}, ggml says {theirs[i]:R}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(QuantizedTypes))]
    public void Kept_weights_multiply_as_their_exact_dequantized_values(DType type)
    {
        // x = e_p picks column p of W: every product but one is a zero, so y is W's value there exactly (up to the sign
        // of a zero) if the in-register and the panel dequantization are exact. n = 1 runs the row kernels, n = cols the tiles.
        const int rows = 37;
        int cols = 2 * DTypes.BlockValues(type);
        if (cols < 64) cols = 64;
        var raw = QuantBlocks.Random(type, (long)rows * cols, seed: cols);
        var w = new float[rows * cols];
        DTypes.ToF32(type, raw, w);
        foreach (var isa in Enum.GetValues<GemmIsa>())
        {
            var weight = CpuWeight.Create(GemmShape.For(isa), raw, type, rows, cols);
            Assert.Equal(type, weight.Type);
            var identity = new float[cols * cols];
            for (int p = 0; p < cols; p++) identity[p * cols + p] = 1;
            var all = new float[cols * rows];
            weight.Multiply(identity, cols, all);
            var one = new float[rows];
            for (int p = 0; p < cols; p++)
            {
                weight.Multiply(identity.AsSpan(p * cols, cols), 1, one);
                for (int r = 0; r < rows; r++)
                {
                    float want = w[r * cols + p];
                    if (!(all[p * rows + r] == want) || !(one[r] == want))
                        Assert.Fail($"{type} {isa}: W[{r}, {p}] = {want:R}, tiles give {all[p * rows + r]:R}, the row path {one[r]:R}");
                }
            }
        }
    }

    [Theory]
    [InlineData(DType.Q4_0, 0.625)]  // nibbles + an f32 scale per 32
    [InlineData(DType.Q4_1, 0.75)]   // nibbles + f32 scale and offset per 32
    [InlineData(DType.Q4_K, 0.75)]
    [InlineData(DType.Q5_0, 1.125)]  // int8 + an f32 scale per 32
    [InlineData(DType.Q8_0, 1.125)]
    [InlineData(DType.Q5_K, 1.25)]   // int8 + f32 scale and offset per 32
    [InlineData(DType.Q6_K, 1.25)]   // int8 + an f32 scale per 16
    public void Kept_weights_take_their_stated_bytes(DType type, double bytesPerWeight)
    {
        int rows = GemmShape.Best.NR * 3, cols = 512;
        var weight = CpuWeight.Create(QuantBlocks.Random(type, (long)rows * cols, 1), type, rows, cols);
        Assert.Equal(bytesPerWeight * rows * cols, weight.Bytes);
    }

    [Fact]
    public void Bad_quantized_shapes_are_refused_by_name()
    {
        var e = Assert.Throws<ArgumentException>(() => CpuWeight.Create(new byte[144 * 3], DType.Q4_K, 3, 224));
        Assert.Contains("Q4_K weight has 224 columns, not a multiple of the 256-value block", e.Message);
        e = Assert.Throws<ArgumentException>(() => CpuWeight.Create(new byte[100], DType.Q6_K, 1, 256));
        Assert.Contains("Q6_K weight has 100 bytes, expected 210 for 1 x 256", e.Message);
        var nse = Assert.Throws<NotSupportedException>(() => DTypes.FromF32(DType.Q4_K, new float[256]));
        Assert.Contains("llama-quantize", nse.Message);
    }
}
