using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Ponder.Backends.Cpu.Gemm;
using Ponder.Tensors;

namespace Ponder.Backends.Cpu;

/// <summary>
/// A weight matrix W [rows = out, cols = in] prepared once at load for the CPU forward pass.
/// <see cref="Multiply"/> computes y[n, rows] = x[n, cols] · Wᵀ, the projection every linear layer does.
/// W is stored pre-packed as op(B) = Wᵀ in the micro-kernel's layout: ceil(rows/NR) panels, each cols x NR
/// (the NR output rows of a panel interleaved per input column), so a multiply streams it once with unit stride.
/// F16, BF16 and Q8_0 weights stay in their format (Q8_0 as int8 values plus one f32 scale per 32) and are converted
/// to f32 a panel segment at a time during the multiply.
/// </summary>
public sealed unsafe class CpuWeight
{
    readonly byte[] _values; // pinned; (ceil(rows / NR), cols, NR) elements of Type, padding rows zero
    readonly float[]? _scales; // pinned; Q8_0 only: (ceil(rows / NR), cols / 32, NR)
    readonly GemmShape _shape;
    readonly bool _fuseRow; // decode runs the row kernels (WeightPanels.CanFuseRow)

    CpuWeight(byte[] values, float[]? scales, DType type, GemmShape shape, int rows, int cols)
    {
        _values = values; _scales = scales; Type = type; _shape = shape; Rows = rows; Cols = cols;
        _fuseRow = WeightPanels.CanFuseRow(type, shape, type == DType.F16 && WeightPanels.HasF16Specials(MemoryMarshal.Cast<byte, ushort>(values)));
    }

    /// <summary>Output features (rows of W).</summary>
    public int Rows { get; }
    /// <summary>Input features (columns of W).</summary>
    public int Cols { get; }
    /// <summary>The element type the weight is kept in.</summary>
    public DType Type { get; }
    /// <summary>Bytes this weight occupies in memory (packed, including the padding of the last panel and Q8_0 scales).</summary>
    public long Bytes => _values.LongLength + (_scales?.LongLength ?? 0) * sizeof(float);

    /// <summary>Prepares W (row-major, rows x cols) for multiplication.</summary>
    public static CpuWeight Create(ReadOnlySpan<float> w, int rows, int cols) => Create(GemmShape.Best, w, rows, cols);

    /// <summary>
    /// Prepares W stored as <paramref name="type"/> (little-endian, row-major rows x cols, Q8_0 blocks running along a row)
    /// and keeps it in that format. Q8_0 needs cols to be a multiple of 32.
    /// </summary>
    public static CpuWeight Create(ReadOnlySpan<byte> data, DType type, int rows, int cols) => Create(GemmShape.Best, data, type, rows, cols);

    /// <summary>As the public overload, packed for the given micro-kernel (tests run every ISA).</summary>
    internal static CpuWeight Create(GemmShape shape, ReadOnlySpan<float> w, int rows, int cols)
    {
        CheckShape(rows, cols);
        if ((long)rows * cols != w.Length)
            throw new ArgumentException($"weight has {w.Length} values, expected {rows} x {cols}", nameof(w));
        return Create(shape, MemoryMarshal.AsBytes(w), DType.F32, rows, cols);
    }

    /// <summary>As the public overload, packed for the given micro-kernel (tests run every ISA).</summary>
    internal static CpuWeight Create(GemmShape shape, ReadOnlySpan<byte> data, DType type, int rows, int cols)
    {
        CheckShape(rows, cols);
        if (type == DType.Q8_0 && cols % DTypes.Q8BlockValues != 0)
            throw new ArgumentException($"Q8_0 weight has {cols} columns, not a multiple of the {DTypes.Q8BlockValues}-value block", nameof(cols));
        long need = DTypes.ByteSize(type, (long)rows * cols);
        if (data.Length != need)
            throw new ArgumentException($"{type} weight has {data.Length} bytes, expected {need} for {rows} x {cols}", nameof(data));
        int nr = shape.NR;
        long padded = (long)(rows + nr - 1) / nr * nr * cols;
        switch (type)
        {
            case DType.F32:
                return new CpuWeight(Pack(MemoryMarshal.Cast<byte, float>(data), rows, cols, nr, padded), null, type, shape, rows, cols);
            case DType.F16:
            case DType.BF16:
                return new CpuWeight(Pack(MemoryMarshal.Cast<byte, ushort>(data), rows, cols, nr, padded), null, type, shape, rows, cols);
            case DType.Q8_0:
            {
                int blocksPerRow = cols / DTypes.Q8BlockValues;
                var quants = new sbyte[(long)rows * cols];
                var scales = new float[(long)rows * blocksPerRow];
                for (int b = 0; b < scales.Length; b++)
                {
                    var block = data.Slice(b * DTypes.Q8BlockBytes, DTypes.Q8BlockBytes);
                    scales[b] = (float)BitConverter.UInt16BitsToHalf((ushort)(block[0] | block[1] << 8));
                    MemoryMarshal.Cast<byte, sbyte>(block[2..]).CopyTo(quants.AsSpan(b * DTypes.Q8BlockValues));
                }
                var packedScales = GC.AllocateUninitializedArray<float>(checked((int)(padded / DTypes.Q8BlockValues)), pinned: true);
                WeightPanels.Pack<float>(scales, rows, blocksPerRow, nr, packedScales);
                return new CpuWeight(Pack<sbyte>(quants, rows, cols, nr, padded), packedScales, type, shape, rows, cols);
            }
            default:
                throw new NotSupportedException($"weight type {type} is not supported by the CPU matmul");
        }
    }

    static byte[] Pack<T>(ReadOnlySpan<T> w, int rows, int cols, int nr, long padded) where T : unmanaged
    {
        var bytes = GC.AllocateUninitializedArray<byte>(checked((int)(padded * sizeof(T))), pinned: true);
        WeightPanels.Pack(w, rows, cols, nr, MemoryMarshal.Cast<byte, T>(bytes.AsSpan()));
        return bytes;
    }

    static void CheckShape(int rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
    }

    /// <summary>Whether one token runs through the row kernels (<see cref="GemmDriver.RunRows"/>), so it can share a dispatch.</summary>
    internal bool RowPath => _fuseRow;
    internal GemmShape Shape => _shape;

    /// <summary>This weight as a target of a row dispatch writing its Rows outputs to <paramref name="y"/>. Requires <see cref="RowPath"/>.</summary>
    internal RowWeight RowTarget(float* y) =>
        // The arrays are pinned (allocated on the pinned object heap), so their addresses stay valid.
        new(Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_values)), Type,
            _scales == null ? null : (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_scales)), Rows, y);

    /// <summary>y[n, Rows] = x[n, Cols] · Wᵀ (y is overwritten). FLOPs: 2 * n * Rows * Cols.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Multiply(ReadOnlySpan<float> x, int n, Span<float> y)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if ((long)n * Cols > x.Length)
            throw new ArgumentException($"x has {x.Length} values, expected at least {n} x {Cols} (tokens x in features)", nameof(x));
        if ((long)n * Rows > y.Length)
            throw new ArgumentException($"y has {y.Length} values, expected at least {n} x {Rows} (tokens x out features)", nameof(y));
        if (n == 0 || Rows == 0) return;
        if (Cols == 0) { y[..(n * Rows)].Clear(); return; }
        fixed (float* px = x, py = y, ps = _scales)
        fixed (byte* pw = _values)
            GemmDriver.Run(_shape, Sgemm.MaxThreads, n, Rows, Cols, 1f, px, Cols, false, null, 0, true, 0f, py, Rows, pw, Type, ps, _fuseRow);
    }
}
