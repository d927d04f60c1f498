using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Tensors;

namespace Ponder.Tests.Gemm;

/// <summary>
/// Weights that share one input (Q, K and V; gate and up) go through the backend's multi-weight MatMul, which packs A
/// once for all of them. Each weight's output must be bitwise what its own MatMul gives (A packed per weight), and the
/// FLOP ledger must count every weight exactly as the separate calls do.
/// </summary>
public sealed class SharedInputMatMulTests
{
    /// <summary>
    /// 300 tokens (two row blocks, 300 &gt; MC) and 12 (one partial block), depth 608 (several depth blocks, a multiple
    /// of the Q8_0 group), three weights of different row counts (200 ends in a partial panel) and element types, so
    /// the shared packed A is read at every row-block and depth-block offset and through the converting path.
    /// </summary>
    [Theory]
    [InlineData(1, 300)]
    [InlineData(2, 300)]
    [InlineData(1, 12)]
    [InlineData(2, 12)]
    public void SharedPackOfA_EqualsOneMatMulPerWeight_Bitwise(int threads, int tokens)
    {
        const int cols = 608;
        int[] rows = [200, 64, 96];
        DType[] types = [DType.F32, DType.F16, DType.Q8_0];
        using var backend = new CpuBackend(threads);
        var weights = new DeviceWeight[rows.Length];
        for (int i = 0; i < rows.Length; i++)
        {
            var values = GemmReference.Random(rows[i] * cols, 10 + i);
            weights[i] = types[i] == DType.F32 ? backend.UploadWeight(values, rows[i], cols)
                : backend.UploadWeight(DTypes.FromF32(types[i], values), types[i], rows[i], cols);
        }
        var x = backend.Upload(GemmReference.Random(tokens * cols, 20), tokens, cols);
        var shared = rows.Select(r => backend.Allocate(tokens, r)).ToArray();
        var alone = rows.Select(r => backend.Allocate(tokens, r)).ToArray();

        var before = backend.Flops.Snapshot();
        backend.MatMul(x, weights, shared, tokens, FlopCategory.Projection);
        long sharedFlops = backend.Flops.Since(before)[FlopCategory.Projection];
        before = backend.Flops.Snapshot();
        for (int i = 0; i < rows.Length; i++) backend.MatMul(x, weights[i], alone[i], tokens, FlopCategory.Projection);
        long aloneFlops = backend.Flops.Since(before)[FlopCategory.Projection];

        // 2 * tokens * rows * cols per weight, the same counted either way.
        Assert.Equal(2L * tokens * rows.Sum() * cols, sharedFlops);
        Assert.Equal(aloneFlops, sharedFlops);
        for (int w = 0; w < rows.Length; w++)
        {
            var a = new float[tokens * rows[w]];
            var b = new float[tokens * rows[w]];
            backend.Download(shared[w], a);
            backend.Download(alone[w], b);
            for (int i = 0; i < a.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(a[i]) == BitConverter.SingleToInt32Bits(b[i]),
                    $"{types[w]} weight {w}, {threads} thread(s): y[{i / rows[w]}, {i % rows[w]}] = {a[i]} shared, {b[i]} alone");
        }
    }
}
