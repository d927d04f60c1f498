using System.Runtime.CompilerServices;
using Ponder.Backends.Cpu.Gemm;

namespace Ponder.Backends.Cpu;

/// <summary>
/// General single-precision matrix multiply on the CPU (BLAS sgemm semantics, row-major):
/// C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, where op(X) is X or its transpose.
/// The engine's forward uses <see cref="CpuWeight"/>; the trainer's backward uses this.
/// Packed panels, a register-blocked Vector512 (or Vector256, or scalar) micro-kernel and cache blocking live in
/// <c>Backends/Cpu/Gemm</c>; work is split over persistent worker threads.
/// </summary>
internal static class Sgemm
{
    static int s_maxThreads = Environment.ProcessorCount;

    /// <summary>Most threads one multiply uses (default: <see cref="Environment.ProcessorCount"/>; 1 = the caller only).</summary>
    public static int MaxThreads
    {
        get => s_maxThreads;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1, nameof(MaxThreads));
            s_maxThreads = value;
        }
    }

    /// <summary>
    /// C = alpha * op(A) · op(B) + beta * C. op(A) is m x k (A stored k x m when <paramref name="transA"/>), op(B) is k x n
    /// (B stored n x k when <paramref name="transB"/>). beta = 0 overwrites C without reading it (NaN in C is dropped).
    /// FLOPs: 2 * m * n * k.
    /// </summary>
    public static void Multiply(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc) =>
        Multiply(GemmShape.Best, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    /// <summary>As the public overload, with the micro-kernel chosen by the caller (tests run every ISA).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Multiply(GemmShape shape, bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        if (m == 0 || n == 0) return;
        CheckExtent(nameof(c), c.Length, m, n, ldc);
        if (k == 0 || alpha == 0)
        {
            GemmDriver.Scale(m, n, beta, c, ldc);
            return;
        }
        CheckExtent(nameof(a), a.Length, transA ? k : m, transA ? m : k, lda);
        CheckExtent(nameof(b), b.Length, transB ? n : k, transB ? k : n, ldb);
        fixed (float* pa = a, pb = b, pc = c)
            GemmDriver.Run(shape, MaxThreads, m, n, k, alpha, pa, lda, transA, pb, ldb, transB, beta, pc, ldc);
    }

    internal static void CheckExtent(string name, int length, int rows, int cols, int ld)
    {
        if (ld < cols) throw new ArgumentException($"{name}: leading dimension {ld} is smaller than its {cols} columns", name);
        if (rows > 0 && (long)(rows - 1) * ld + cols > length)
            throw new ArgumentException($"{name}: {length} elements cannot hold a [{rows}, {cols}] matrix with leading dimension {ld}", name);
    }
}
