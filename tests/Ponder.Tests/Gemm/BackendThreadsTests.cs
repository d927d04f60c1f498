using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Backends.Cpu.Gemm;
using Ponder.Tensors;

namespace Ponder.Tests.Gemm;

/// <summary>
/// A CPU backend's thread count governs its projections, whatever the process-wide <see cref="Sgemm.MaxThreads"/>
/// (the trainer's setting) says: a model loaded with Threads = 1 must not take a second core.
/// </summary>
public sealed class BackendThreadsTests
{
    [Fact]
    public void ProjectionsUseTheBackendsThreadCountNotSgemmMaxThreads()
    {
        int saved = Sgemm.MaxThreads;
        try
        {
            int two = Math.Min(2, Environment.ProcessorCount);
            foreach (int global in new[] { 1, Environment.ProcessorCount })
            {
                Sgemm.MaxThreads = global;
                Assert.Equal(1, PartsOf(new CpuBackend(1), tokens: 64));
                Assert.Equal(1, PartsOf(new CpuBackend(1), tokens: 1));
                Assert.Equal(two, PartsOf(new CpuBackend(2), tokens: 64));
                Assert.Equal(two, PartsOf(new CpuBackend(2), tokens: 1));
            }
        }
        finally { Sgemm.MaxThreads = saved; }
    }

    /// <summary>
    /// Split by columns across threads, the GEMM packs A once for all of them (each thread packing its share of the row
    /// panels) instead of once per thread. A token's output must not depend on that: the 2-thread result equals the
    /// 1-thread one (which packs block by block itself) bit for bit, on a shape with two row blocks (300 > MC) and
    /// several depth blocks (k = 1536), for f32 and a converted weight type.
    /// </summary>
    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    public void TwoThreadsSharingPackedA_EqualOneThread_Bitwise(DType type)
    {
        const int rows = 576, cols = 1536, tokens = 300;
        var values = GemmReference.Random(rows * cols, 3);
        var w = type == DType.F32 ? CpuWeight.Create(values, rows, cols) : CpuWeight.Create(DTypes.FromF32(type, values), type, rows, cols);
        var x = GemmReference.Random(tokens * cols, 4);
        var one = new float[tokens * rows];
        var two = new float[tokens * rows];
        w.Multiply(x, tokens, one, threads: 1);
        Assert.Equal(1, GemmDriver.LastParts);
        w.Multiply(x, tokens, two, threads: 2);
        Assert.Equal(Math.Min(2, GemmWorkers.Shared.MaxParts), GemmDriver.LastParts);
        for (int i = 0; i < one.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(one[i]) == BitConverter.SingleToInt32Bits(two[i]),
                $"{type}: y[{i / rows}, {i % rows}] = {one[i]} on one thread, {two[i]} on two");
    }

    /// <summary>Parts of the GEMM a matmul of <paramref name="tokens"/> rows through a 576x576 weight (above the split threshold) ran as.</summary>
    static int PartsOf(CpuBackend backend, int tokens)
    {
        using (backend)
        {
            const int d = 576;
            var w = backend.UploadWeight(GemmReference.Random(d * d, 1), d, d);
            var x = backend.Upload(GemmReference.Random(tokens * d, 2), tokens, d);
            var y = backend.Allocate(tokens, d);
            var y2 = backend.Allocate(tokens, d);
            if (tokens == 1) backend.MatMul(x, [w, w], [y, y2], tokens, FlopCategory.Projection);
            else backend.MatMul(x, w, y, tokens, FlopCategory.Projection);
            return GemmDriver.LastParts;
        }
    }
}
