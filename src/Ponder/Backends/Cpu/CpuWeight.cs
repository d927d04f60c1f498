using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Ponder.Backends.Cpu.Gemm;
using Ponder.Tensors;

namespace Ponder.Backends.Cpu;

/// <summary>
/// A weight matrix W [rows = out, cols = in] prepared once at load for the CPU forward pass.
/// <see cref="Multiply(ReadOnlySpan{float}, int, Span{float})"/> computes y[n, rows] = x[n, cols] · Wᵀ, the projection every linear layer does.
/// W is stored pre-packed as op(B) = Wᵀ in the micro-kernel's layout: ceil(rows/NR) panels, each cols x NR
/// (the NR output rows of a panel interleaved per input column), so a multiply streams it once with unit stride.
/// F16 and BF16 weights stay in their format; block-quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)
/// are kept decoded as values q (4-bit nibbles for Q4_0, Q4_1 and Q4_K, int8 for the others) plus an f32 scale (and,
/// for Q4_1, Q5_1, Q4_K and Q5_K, an f32 offset) per group of 32 values (16 for Q6_K), w = q·scale + offset, which is
/// exactly llama.cpp's dequantized value (see <see cref="DTypes"/>). Either is converted to f32 a panel segment at a
/// time during the multiply, or in registers for one token. Bytes a weight: 0.625 (Q4_0), 0.75 (Q4_1, Q4_K), 1.125
/// (Q8_0, Q5_0), 1.25 (Q5_1, Q5_K, Q6_K): more than the file's 4.5 to 8.5 bits (the scales are decoded to f32), a
/// sixth to a third of f32's.
/// </summary>
public sealed unsafe class CpuWeight
{
    readonly byte[] _values; // pinned; (ceil(rows / NR), cols, NR) elements of Type, padding rows zero
    readonly float[]? _scales; // pinned; quantized types: (ceil(rows / NR), cols / group, NR)
    readonly float[]? _offsets; // pinned; Q4_1, Q5_1, Q4_K, Q5_K: as _scales
    readonly GemmShape _shape;
    readonly bool _fuseRow; // decode runs the row kernels (WeightPanels.CanFuseRow)

    CpuWeight(byte[] values, float[]? scales, float[]? offsets, DType type, GemmShape shape, int rows, int cols)
    {
        _values = values; _scales = scales; _offsets = offsets; Type = type; _shape = shape; Rows = rows; Cols = cols;
        _fuseRow = WeightPanels.CanFuseRow(type, shape, type == DType.F16 && WeightPanels.HasF16Specials(MemoryMarshal.Cast<byte, ushort>(values)));
    }

    /// <summary>Output features (rows of W).</summary>
    public int Rows { get; }
    /// <summary>Input features (columns of W).</summary>
    public int Cols { get; }
    /// <summary>The element type the weight is kept in.</summary>
    public DType Type { get; }
    /// <summary>Bytes this weight occupies in memory (packed, including the padding of the last panel, scales and offsets).</summary>
    public long Bytes => _values.LongLength + ((_scales?.LongLength ?? 0) + (_offsets?.LongLength ?? 0)) * sizeof(float);

    /// <summary>Prepares W (row-major, rows x cols) for multiplication.</summary>
    public static CpuWeight Create(ReadOnlySpan<float> w, int rows, int cols) => Create(GemmShape.Best, w, rows, cols);

    /// <summary>
    /// Prepares W stored as <paramref name="type"/> (little-endian, row-major rows x cols, Q8_0 blocks running along a row)
    /// and keeps it in that format (quantized types as int8 values, scales and offsets). Quantized types need cols to be a
    /// multiple of their block (32 values, 256 for the K types).
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
        bool quantized = DTypes.IsQuantized(type);
        if (quantized && cols % DTypes.BlockValues(type) != 0)
            throw new ArgumentException($"{type} weight has {cols} columns, not a multiple of the {DTypes.BlockValues(type)}-value block", nameof(cols));
        long need = DTypes.ByteSize(type, (long)rows * cols);
        if (data.Length != need)
            throw new ArgumentException($"{type} weight has {data.Length} bytes, expected {need} for {rows} x {cols}", nameof(data));
        int nr = shape.NR;
        long padded = (long)(rows + nr - 1) / nr * nr * cols;
        switch (type)
        {
            case DType.F32:
                return new CpuWeight(Pack(MemoryMarshal.Cast<byte, float>(data), rows, cols, nr, padded), null, null, type, shape, rows, cols);
            case DType.F16:
            case DType.BF16:
                return new CpuWeight(Pack(MemoryMarshal.Cast<byte, ushort>(data), rows, cols, nr, padded), null, null, type, shape, rows, cols);
            case var _ when quantized:
            {
                int blockValues = DTypes.BlockValues(type), blockBytes = DTypes.BlockBytes(type), group = DTypes.GroupValues(type);
                int groupsPerBlock = blockValues / group;
                bool hasOffset = DTypes.HasOffset(type);
                var quants = new sbyte[(long)rows * cols];
                var scales = new float[(long)rows * cols / group];
                var offsets = hasOffset ? new float[scales.Length] : null;
                for (long b = 0; b < (long)rows * cols / blockValues; b++)
                    DTypes.DecodeBlock(type, data.Slice(checked((int)(b * blockBytes)), blockBytes),
                        quants.AsSpan(checked((int)(b * blockValues)), blockValues),
                        scales.AsSpan(checked((int)(b * groupsPerBlock)), groupsPerBlock),
                        hasOffset ? offsets.AsSpan(checked((int)(b * groupsPerBlock)), groupsPerBlock) : default);
                byte[] values;
                if (WeightPanels.Is4Bit(type))
                {
                    values = GC.AllocateUninitializedArray<byte>(checked((int)(padded / 2)), pinned: true);
                    WeightPanels.PackNibbles(quants, rows, cols, nr, WeightPanels.NibbleBias(type), values);
                }
                else values = Pack<sbyte>(quants, rows, cols, nr, padded);
                return new CpuWeight(values, PackGroups(scales, rows, cols / group, nr, padded / group),
                    offsets is null ? null : PackGroups(offsets, rows, cols / group, nr, padded / group), type, shape, rows, cols);
            }
            default:
                throw new NotSupportedException($"weight type {type} is not supported by the CPU matmul");
        }
    }

    static float[] PackGroups(float[] perGroup, int rows, int groupsPerRow, int nr, long count)
    {
        var packed = GC.AllocateUninitializedArray<float>(checked((int)count), pinned: true);
        WeightPanels.Pack<float>(perGroup, rows, groupsPerRow, nr, packed);
        return packed;
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

    /// <summary>
    /// This weight as a target of a shared-input dispatch writing its Rows outputs a token to <paramref name="y"/>:
    /// <see cref="GemmDriver.RunRows"/> (requires <see cref="RowPath"/>) or <see cref="GemmDriver.RunShared"/>.
    /// </summary>
    internal RowWeight Target(float* y) =>
        // The arrays are pinned (allocated on the pinned object heap), so their addresses stay valid.
        new(Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_values)), Type, Pointer(_scales), Pointer(_offsets), Rows, y);

    static float* Pointer(float[]? a) => a == null ? null : (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(a));

    /// <summary>y[n, Rows] = x[n, Cols] · Wᵀ (y is overwritten) on up to <see cref="Sgemm.MaxThreads"/> threads. FLOPs: 2 * n * Rows * Cols.</summary>
    public void Multiply(ReadOnlySpan<float> x, int n, Span<float> y) => Multiply(x, n, y, Sgemm.MaxThreads);

    /// <summary>y[n, Rows] = x[n, Cols] · Wᵀ (y is overwritten) on up to <paramref name="threads"/> threads (the caller's included). FLOPs: 2 * n * Rows * Cols.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Multiply(ReadOnlySpan<float> x, int n, Span<float> y, int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if ((long)n * Cols > x.Length)
            throw new ArgumentException($"x has {x.Length} values, expected at least {n} x {Cols} (tokens x in features)", nameof(x));
        if ((long)n * Rows > y.Length)
            throw new ArgumentException($"y has {y.Length} values, expected at least {n} x {Rows} (tokens x out features)", nameof(y));
        if (n == 0 || Rows == 0) return;
        if (Cols == 0) { y[..(n * Rows)].Clear(); return; }
        fixed (float* px = x, py = y, ps = _scales, po = _offsets)
        fixed (byte* pw = _values)
            GemmDriver.Run(_shape, threads, n, Rows, Cols, 1f, px, Cols, false, null, 0, true, 0f, py, Rows, pw, Type, ps, _fuseRow, po);
    }
}
