using System.Runtime.CompilerServices;

namespace Ponder.Backends.Cpu;

/// <summary>
/// A weight matrix W [rows = out, cols = in] prepared once at load for the CPU forward pass.
/// <see cref="Multiply"/> computes y[n, rows] = x[n, cols] · Wᵀ, the projection every linear layer does.
/// </summary>
public sealed class CpuWeight
{
    readonly float[] _w; // (rows, cols) row-major

    CpuWeight(float[] w, int rows, int cols) { _w = w; Rows = rows; Cols = cols; }

    public int Rows { get; }
    public int Cols { get; }
    /// <summary>Bytes this weight occupies in memory.</summary>
    public long Bytes => (long)_w.Length * sizeof(float);

    /// <summary>Prepares W (row-major, rows x cols) for multiplication.</summary>
    public static CpuWeight Create(ReadOnlySpan<float> w, int rows, int cols)
    {
        if ((long)rows * cols != w.Length)
            throw new ArgumentException($"weight has {w.Length} values, expected {rows} x {cols}", nameof(w));
        return new CpuWeight(w.ToArray(), rows, cols);
    }

    /// <summary>y[n, Rows] = x[n, Cols] · Wᵀ. FLOPs: 2 * n * Rows * Cols.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Multiply(ReadOnlySpan<float> x, int n, Span<float> y) =>
        Sgemm.Multiply(false, true, n, Rows, Cols, 1f, x, Cols, _w, Cols, 0f, y, Rows);
}
