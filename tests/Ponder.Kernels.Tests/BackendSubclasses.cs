using Ponder.Backends;

namespace Ponder.Kernels.Tests;

// CPU backend (the reference implementation of IBackend).
public sealed class EmbedTests_Cpu : EmbedTests { protected override IBackend Backend => TestBackends.Cpu; }
public sealed class RmsNormTests_Cpu : RmsNormTests { protected override IBackend Backend => TestBackends.Cpu; }
public sealed class MatMulTests_Cpu : MatMulTests { protected override IBackend Backend => TestBackends.Cpu; }
public sealed class ElementwiseTests_Cpu : ElementwiseTests { protected override IBackend Backend => TestBackends.Cpu; }
public sealed class RopeTests_Cpu : RopeTests { protected override IBackend Backend => TestBackends.Cpu; }
public sealed class AttentionTests_Cpu : AttentionTests { protected override IBackend Backend => TestBackends.Cpu; }

// ILGPU kernels on ILGPU's CPU accelerator.
public sealed class EmbedTests_IlgpuCpu : EmbedTests { protected override IBackend Backend => TestBackends.IlgpuCpu; }
public sealed class RmsNormTests_IlgpuCpu : RmsNormTests { protected override IBackend Backend => TestBackends.IlgpuCpu; }
public sealed class MatMulTests_IlgpuCpu : MatMulTests { protected override IBackend Backend => TestBackends.IlgpuCpu; }
public sealed class ElementwiseTests_IlgpuCpu : ElementwiseTests { protected override IBackend Backend => TestBackends.IlgpuCpu; }
public sealed class RopeTests_IlgpuCpu : RopeTests { protected override IBackend Backend => TestBackends.IlgpuCpu; }
public sealed class AttentionTests_IlgpuCpu : AttentionTests { protected override IBackend Backend => TestBackends.IlgpuCpu; }
public sealed class MatMulF16Tests_IlgpuCpu : MatMulF16Tests { protected override IBackend Backend => TestBackends.IlgpuCpu; }
public sealed class SamplingTests_IlgpuCpu : SamplingTests { protected override IBackend Backend => TestBackends.IlgpuCpu; }

// ILGPU kernels on CUDA: each fact runs every case of one op class, and is skipped where no CUDA device exists.
public sealed class CudaKernelTests
{
    sealed class Embed : EmbedTests { protected override IBackend Backend => TestBackends.Cuda; }
    sealed class RmsNorm : RmsNormTests { protected override IBackend Backend => TestBackends.Cuda; }
    sealed class MatMul : MatMulTests { protected override IBackend Backend => TestBackends.Cuda; }
    sealed class MatMulF16 : MatMulF16Tests { protected override IBackend Backend => TestBackends.Cuda; }
    sealed class Elementwise : ElementwiseTests { protected override IBackend Backend => TestBackends.Cuda; }
    sealed class Rope : RopeTests { protected override IBackend Backend => TestBackends.Cuda; }
    sealed class Attention : AttentionTests { protected override IBackend Backend => TestBackends.Cuda; }
    sealed class Sampling : SamplingTests { protected override IBackend Backend => TestBackends.Cuda; }

    [CudaFact] public void EmbedOnCuda() => BackendTest.RunAll(new Embed());
    [CudaFact] public void RmsNormOnCuda() => BackendTest.RunAll(new RmsNorm());
    [CudaFact] public void MatMulOnCuda() => BackendTest.RunAll(new MatMul());
    [CudaFact] public void MatMulOwnKernelOnCuda()
    {
        TestBackends.Cuda.UseCuBlas = false;
        try { BackendTest.RunAll(new MatMul()); }
        finally { TestBackends.Cuda.UseCuBlas = true; }
    }
    [CudaFact] public void MatMulF16OnCuda() => BackendTest.RunAll(new MatMulF16());
    [CudaFact] public void ElementwiseOnCuda() => BackendTest.RunAll(new Elementwise());
    [CudaFact] public void RopeOnCuda() => BackendTest.RunAll(new Rope());
    [CudaFact] public void AttentionOnCuda() => BackendTest.RunAll(new Attention());
    [CudaFact] public void SamplingOnCuda() => BackendTest.RunAll(new Sampling());
    [CudaFact] public void ForwardOnCudaMatchesCpu() => ForwardTests.CompareForward(TestBackends.Cuda);
}
