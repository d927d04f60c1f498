using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace Ponder.Backends.Cpu;

/// <summary>
/// General single-precision matrix multiply on the CPU (BLAS sgemm semantics, row-major):
/// C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, where op(X) is X or its transpose.
/// The engine's forward uses <see cref="CpuWeight"/>; the trainer's backward uses this.
/// </summary>
public static class Sgemm
{
    /// <summary>FLOPs: 2 * m * n * k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Multiply(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        if (m == 0 || n == 0) return;
        CheckExtent(nameof(a), a.Length, transA ? k : m, transA ? m : k, lda);
        CheckExtent(nameof(b), b.Length, transB ? n : k, transB ? k : n, ldb);
        CheckExtent(nameof(c), c.Length, m, n, ldc);

        // Baseline: rows of C in parallel; each element is a dot product of contiguous vectors.
        // op(A) rows must be contiguous, so a transposed A is copied once; B^T rows likewise.
        float[]? aCopy = null, bCopy = null;
        if (transA) { aCopy = Transpose(a, k, m, lda); lda = k; }
        if (!transB) { bCopy = Transpose(b, k, n, ldb); ldb = k; }
        fixed (float* pa0 = a, pb0 = b, pc = c, pat = aCopy, pbt = bCopy)
        {
            float* pa = transA ? pat : pa0, pb = transB ? pb0 : pbt;
            nint ia = (nint)pa, ib = (nint)pb, ic = (nint)pc;
            int la = lda, lb = ldb;
            Parallel.For(0, m, i =>
            {
                var rowA = new ReadOnlySpan<float>((float*)ia + (long)i * la, k);
                float* rowC = (float*)ic + (long)i * ldc;
                for (int j = 0; j < n; j++)
                {
                    float dot = k == 0 ? 0 : TensorPrimitives.Dot(rowA, new ReadOnlySpan<float>((float*)ib + (long)j * lb, k));
                    rowC[j] = beta == 0 ? alpha * dot : alpha * dot + beta * rowC[j];
                }
            });
        }
    }

    static float[] Transpose(ReadOnlySpan<float> x, int rows, int cols, int ld)
    {
        var t = new float[(long)rows * cols];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                t[(long)c * rows + r] = x[r * ld + c];
        return t;
    }

    static void CheckExtent(string name, int length, int rows, int cols, int ld)
    {
        if (ld < cols) throw new ArgumentException($"{name}: leading dimension {ld} is smaller than its {cols} columns", name);
        if (rows > 0 && (long)(rows - 1) * ld + cols > length)
            throw new ArgumentException($"{name}: {length} elements cannot hold a [{rows}, {cols}] matrix with leading dimension {ld}", name);
    }
}
