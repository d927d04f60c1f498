using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Backends.Cpu.Gemm;

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
