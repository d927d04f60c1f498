using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Sampling;
using Ponder.Tensors;
using Ponder.TestSupport;

namespace Ponder.Tests.Gemm;

/// <summary>
/// A token's projection must not depend on what else is in its batch, to the bit: a decode step alone and the same
/// row inside a prefill of any size give identical outputs. Search relies on it (a beam's logits are the same whether
/// its prefix came from a fork, the prefix index or a recomputation), and so does per-sequence seed reproducibility.
/// </summary>
public sealed class BatchInvarianceTests
{
    [Theory]
    [InlineData(DType.F32, 96, 576)]
    [InlineData(DType.F32, 1536, 200)]    // depth in several blocks, ragged
    [InlineData(DType.F16, 64, 1536)]
    [InlineData(DType.Q8_0, 80, 640)]
    [InlineData(DType.F32, 1000, 96)]     // decode: 63 panels (the last ragged) in groups of 4 over both threads
    [InlineData(DType.Q8_0, 1000, 96)]
    [InlineData(DType.BF16, 200, 1536)]   // decode: groups of 3, depth in three blocks
    [InlineData(DType.Q4_K, 200, 1536)]   // quantized with offsets, groups of 32
    [InlineData(DType.Q6_K, 80, 768)]     // groups of 16
    [InlineData(DType.Q5_0, 1000, 96)]
    [InlineData(DType.Q4_1, 96, 640)]
    public void Each_row_is_bitwise_the_same_whatever_the_batch_size(DType type, int rows, int cols)
    {
        var rng = new Rng(42);
        var w = new float[rows * cols];
        for (int i = 0; i < w.Length; i++) w[i] = (float)(rng.NextDouble() * 2 - 1);
        var weight = type == DType.F32 ? CpuWeight.Create(w, rows, cols)
            : CpuWeight.Create(DTypes.IsQuantized(type) ? QuantBlocks.Scaled(type, (long)rows * cols, seed: 3) : DTypes.FromF32(type, w), type, rows, cols);

        const int n = 37;
        var x = new float[n * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        var all = new float[n * rows];
        weight.Multiply(x, n, all);

        foreach (int batch in new[] { 1, 2, 5, 12, 13, 25 })
        {
            var part = new float[batch * rows];
            for (int start = 0; start + batch <= n; start += batch)
            {
                weight.Multiply(x.AsSpan(start * cols, batch * cols), batch, part);
                for (int i = 0; i < batch * rows; i++)
                    if (BitConverter.SingleToInt32Bits(part[i]) != BitConverter.SingleToInt32Bits(all[start * rows + i]))
                        Assert.Fail($"{type} [{rows}x{cols}]: row {start + i / rows} column {i % rows} is {part[i]:R} in a batch of {batch}, {all[start * rows + i]:R} in a batch of {n}");
            }
        }
    }

    [Fact]
    public void A_shared_input_dispatch_of_mixed_types_is_bitwise_the_single_multiplies()
    {
        // One token times weights of mixed types in one row dispatch (IBackend.MatMul over several weights).
        const int cols = 768;
        foreach (var types in new[] { new[] { DType.Q8_0, DType.F16, DType.F32, DType.BF16 }, new[] { DType.Q4_K, DType.Q6_K, DType.Q5_0, DType.Q5_K } })
            SharedDispatch(cols, types, [576, 192, 193, 40]);
    }

    static void SharedDispatch(int cols, DType[] types, int[] rows)
    {
        var rng = new Rng(7);
        float[] Random(int count) { var v = new float[count]; for (int i = 0; i < count; i++) v[i] = (float)(rng.NextDouble() * 2 - 1); return v; }
        using var backend = new CpuBackend(2);
        using var x = backend.Upload(Random(cols), 1, cols);
        var weights = new DeviceWeight[types.Length];
        var shared = new DeviceTensor[types.Length];
        for (int i = 0; i < types.Length; i++)
        {
            var w = Random(rows[i] * cols);
            weights[i] = types[i] == DType.F32 ? backend.UploadWeight(w, rows[i], cols)
                : backend.UploadWeight(DTypes.IsQuantized(types[i]) ? QuantBlocks.Scaled(types[i], (long)rows[i] * cols, seed: i) : DTypes.FromF32(types[i], w), types[i], rows[i], cols);
            shared[i] = backend.Allocate(1, rows[i]);
        }
        backend.MatMul(x, weights, shared, 1, FlopCategory.Projection);
        for (int i = 0; i < types.Length; i++)
        {
            using var single = backend.Allocate(1, rows[i]);
            backend.MatMul(x, weights[i], single, 1, FlopCategory.Projection);
            var (got, want) = (new float[rows[i]], new float[rows[i]]);
            backend.Download(shared[i], got);
            backend.Download(single, want);
            for (int j = 0; j < rows[i]; j++)
                Assert.True(BitConverter.SingleToInt32Bits(got[j]) == BitConverter.SingleToInt32Bits(want[j]),
                    $"{types[i]} [{rows[i]}x{cols}] output {j}: {got[j]:R} shared, {want[j]:R} alone");
        }
    }
}
