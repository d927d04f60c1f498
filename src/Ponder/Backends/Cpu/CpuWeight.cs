using System.Runtime.CompilerServices;
using Ponder.Backends.Cpu.Gemm;

namespace Ponder.Backends.Cpu;

/// <summary>
/// A weight matrix W [rows = out, cols = in] prepared once at load for the CPU forward pass.
/// <see cref="Multiply"/> computes y[n, rows] = x[n, cols] · Wᵀ, the projection every linear layer does.
/// W is stored pre-packed as op(B) = Wᵀ in the micro-kernel's layout: ceil(rows/NR) panels, each cols x NR
/// (the NR output rows of a panel interleaved per input column), so a multiply streams it once with unit stride.
/// </summary>
public sealed class CpuWeight
{
    readonly float[] _packed; // (ceil(rows / NR), cols, NR), padding outputs zero
    readonly GemmShape _shape;

    CpuWeight(float[] packed, GemmShape shape, int rows, int cols) { _packed = packed; _shape = shape; Rows = rows; Cols = cols; }

    /// <summary>Output features (rows of W).</summary>
    public int Rows { get; }
    /// <summary>Input features (columns of W).</summary>
    public int Cols { get; }
    /// <summary>Bytes this weight occupies in memory (packed, including the padding of the last panel).</summary>
    public long Bytes => (long)_packed.Length * sizeof(float);

    /// <summary>Prepares W (row-major, rows x cols) for multiplication.</summary>
    public static CpuWeight Create(ReadOnlySpan<float> w, int rows, int cols) => Create(GemmShape.Best, w, rows, cols);

    /// <summary>As the public overload, packed for the given micro-kernel (tests run every ISA).</summary>
    internal static unsafe CpuWeight Create(GemmShape shape, ReadOnlySpan<float> w, int rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        if ((long)rows * cols != w.Length)
            throw new ArgumentException($"weight has {w.Length} values, expected {rows} x {cols}", nameof(w));
        int panels = (rows + shape.NR - 1) / shape.NR;
        var packed = GC.AllocateUninitializedArray<float>(checked(panels * cols * shape.NR), pinned: true);
        if (packed.Length > 0)
            fixed (float* pw = w, pp = packed)
                GemmPacking.PackB(pw, cols, trans: true, 0, cols, 0, rows, shape.NR, pp, (nint)cols * shape.NR);
        return new CpuWeight(packed, shape, rows, cols);
    }

    /// <summary>y[n, Rows] = x[n, Cols] · Wᵀ (y is overwritten). FLOPs: 2 * n * Rows * Cols.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public unsafe void Multiply(ReadOnlySpan<float> x, int n, Span<float> y)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if ((long)n * Cols > x.Length)
            throw new ArgumentException($"x has {x.Length} values, expected at least {n} x {Cols} (tokens x in features)", nameof(x));
        if ((long)n * Rows > y.Length)
            throw new ArgumentException($"y has {y.Length} values, expected at least {n} x {Rows} (tokens x out features)", nameof(y));
        if (n == 0 || Rows == 0) return;
        if (Cols == 0) { y[..(n * Rows)].Clear(); return; }
        fixed (float* px = x, py = y, pw = _packed)
            GemmDriver.Run(_shape, Sgemm.MaxThreads, n, Rows, Cols, 1f, px, Cols, false, null, 0, true, pw, 0f, py, Rows);
    }
}
