using Ponder.Backends.Cpu;
using Ponder.Sampling;
using Ponder.Tensors;

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
    public void Each_row_is_bitwise_the_same_whatever_the_batch_size(DType type, int rows, int cols)
    {
        var rng = new Rng(42);
        var w = new float[rows * cols];
        for (int i = 0; i < w.Length; i++) w[i] = (float)(rng.NextDouble() * 2 - 1);
        var weight = type == DType.F32 ? CpuWeight.Create(w, rows, cols) : CpuWeight.Create(DTypes.FromF32(type, w), type, rows, cols);

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
}
