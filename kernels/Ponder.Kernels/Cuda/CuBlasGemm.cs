using ILGPU;
using ILGPU.Runtime.Cuda;

namespace Ponder.Kernels.Ilgpu;

/// <summary>
/// Projections through cuBLAS Sgemm (ILGPU.Algorithms' <see cref="CuBlas"/>), on the accelerator's default stream.
/// Only <see cref="TryCreate"/> touches the native library, and only <see cref="IlgpuBackend"/> on a CUDA accelerator
/// calls it, so CPU-only hosts never load cuBLAS.
/// </summary>
internal sealed class CuBlasGemm : IDisposable
{
    readonly CuBlas _blas;

    CuBlasGemm(CuBlas blas) => _blas = blas;

    /// <summary>cuBLAS bound to <paramref name="accelerator"/>, or null when the library is missing or fails to start (then our kernels serve).</summary>
    public static CuBlasGemm? TryCreate(CudaAccelerator accelerator)
    {
        try
        {
            var blas = new CuBlas(accelerator);
            blas.Stream = accelerator.DefaultStream as CudaStream ?? blas.Stream;
            return new CuBlasGemm(blas);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException or CuBlasException or BadImageFormatException)
        {
            return null;
        }
    }

    /// <summary>
    /// y [n, rows] = x [n, cols] · Wᵀ with row-major W [rows, cols]. cuBLAS is column-major: row-major y is column-major
    /// Yc [rows, n], W read column-major is Wᵀ [cols, rows] (ld cols), x is xᵀ [cols, n] (ld cols), so
    /// Yc = op(Wᵀ)ᵀ · xᵀ = Sgemm(T, N, m = rows, n = n, k = cols, A = W, lda = cols, B = x, ldb = cols, C = y, ldc = rows).
    /// </summary>
    public void Multiply(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, int n, int rows, int cols) =>
        _blas.Gemm(CuBlasOperation.Transpose, CuBlasOperation.NonTranspose, rows, n, cols, 1f, w, cols, x, cols, 0f, y, rows);

    public void Dispose() => _blas.Dispose();
}
