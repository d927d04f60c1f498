using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Ponder.Tensors;

namespace Ponder.Backends.Cpu.Gemm;

/// <summary>
/// A weight W [rows, cols] stored as op(B) = Wᵀ micro-panels in its own element type, and the conversion of one panel
/// segment to f32 right before the micro-kernel reads it (so 16-bit and 8-bit weights cost their own bytes of memory traffic).
/// <code>
/// values: ceil(rows/NR) panels x cols x NR        element (row j, col p) at (j/NR)*cols*NR + p*NR + j%NR
/// Q8_0 scales (f32): panels x cols/32 x NR         scale of (row j, block p/32) at (j/NR)*(cols/32)*NR + (p/32)*NR + j%NR
/// </code>
/// Padding rows of the last panel are zero.
/// </summary>
internal static unsafe class WeightPanels
{
    /// <summary>Transposes w [rows, cols] into panels of NR rows (see the type's layout); dst has ceil(rows/NR)*NR*cols elements.</summary>
    public static void Pack<T>(ReadOnlySpan<T> w, int rows, int cols, int nr, Span<T> dst) where T : unmanaged
    {
        dst.Clear();
        for (int j = 0; j < rows; j++)
        {
            var src = w.Slice(j * cols, cols);
            var panel = dst.Slice(j / nr * cols * nr);
            int lane = j % nr;
            for (int p = 0; p < cols; p++) panel[p * nr + lane] = src[p];
        }
    }

    /// <summary>
    /// Writes f32 values of rows [k0, k0 + kc) of panel <paramref name="panel"/> (kc x NR, row-major) to dst.
    /// Q8_0 needs k0 and kc to be multiples of 32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ToF32(DType type, void* values, float* scales, int panel, int cols, int k0, int kc, int nr, float* dst)
    {
        nint start = (nint)panel * cols * nr + (nint)k0 * nr;
        int count = kc * nr;
        switch (type)
        {
            case DType.F16:
                TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>((Half*)values + start, count), new Span<float>(dst, count));
                break;
            case DType.BF16:
                Bf16ToF32((ushort*)values + start, dst, count);
                break;
            case DType.Q8_0:
                Q8ToF32((sbyte*)values + start, scales + (nint)panel * (cols / DTypes.Q8BlockValues) * nr + (nint)(k0 / DTypes.Q8BlockValues) * nr, kc, nr, dst);
                break;
            default:
                throw new NotSupportedException($"weight type {type} has no panel conversion");
        }
    }

    /// <summary>
    /// Whether the fused one-row kernels (<see cref="Row16"/>, <see cref="RowQ8"/>) run here for this weight: decode
    /// (one token) is memory bound, and converting in registers keeps a 16- or 8-bit weight's smaller traffic the limit.
    /// They need AVX2 (a 32-wide AVX-512 panel is done as two 16-wide halves); F16 infinities and NaNs take the exact
    /// conversion path instead, because the fused conversion only handles finite values.
    /// </summary>
    public static bool CanFuseRow(DType type, GemmShape shape, bool hasF16Specials) =>
        Avx2.IsSupported && shape.NR % 16 == 0 && (type is DType.Q8_0 or DType.BF16 || (type == DType.F16 && !hasF16Specials));

    /// <summary>Whether any f16 value is an infinity or a NaN (exponent all ones).</summary>
    public static bool HasF16Specials(ReadOnlySpan<ushort> values)
    {
        foreach (ushort h in values)
            if ((h & 0x7C00) == 0x7C00) return true;
        return false;
    }

    /// <summary>
    /// t[0..16] = sum over p &lt; kc of a[p*mr] * w[p*nr + 0..16] for 16 columns of an F16 or BF16 panel segment
    /// starting at w, converted by <typeparamref name="TConvert"/>. One FMA chain per column, in p order: exactly the
    /// arithmetic of the tile kernels on a converted panel, so a token's result does not depend on its batch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Row16<TConvert>(ushort* w, int nr, float* a, int mr, int kc, float* t) where TConvert : struct, IConvert16
    {
        Vector256<float> s0 = default, s1 = default;
        for (int p = 0; p < kc; p++, a += mr, w += nr)
        {
            var a0 = Vector256.Create(a[0]);
            s0 = Vector256.FusedMultiplyAdd(a0, TConvert.Load8(w), s0);
            s1 = Vector256.FusedMultiplyAdd(a0, TConvert.Load8(w + 8), s1);
        }
        s0.Store(t);
        s1.Store(t + 8);
    }

    /// <summary>Eight 16-bit floats to f32 in registers (AVX2).</summary>
    internal interface IConvert16 { static abstract Vector256<float> Load8(ushort* h); }

    /// <summary>
    /// F16: sign-extend h to 32 bits and shift left 13, which puts the sign in bit 31 and exponent and mantissa in place
    /// for an exponent bias of 15 (clearing bits 28..30 removes the sign copies); multiplying by 2^112 rebiases to 127 and
    /// is exact for normal, subnormal and zero values alike (not for infinities and NaNs: see <see cref="CanFuseRow"/>).
    /// </summary>
    internal struct F16Convert : IConvert16
    {
        const float TwoPow112 = 5.192296858534828e33f; // 2^112, exactly representable

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(ushort* h) =>
            (Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((short*)h), 13) & Vector256.Create(unchecked((int)0x8FFFFFFF))).AsSingle()
            * Vector256.Create(TwoPow112);
    }

    /// <summary>BF16: the high half of an f32, exact for every value.</summary>
    internal struct Bf16Convert : IConvert16
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(ushort* h) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(h), 16).AsSingle();
    }

    /// <summary>
    /// t[0..16] = sum over p &lt; kc of a[p*mr] * w[p*nr + 0..16] for 16 columns of a Q8_0 panel segment: int8 values q
    /// and one f32 scale per 32 values of p (scales[block*nr + 0..16]). Each weight is dequantized (q * scale) and
    /// accumulated in p order, exactly as the tile kernels do on a converted panel (batch invariance).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RowQ8(sbyte* q, float* scales, int nr, float* a, int mr, int kc, float* t)
    {
        Vector256<float> s0 = default, s1 = default;
        for (int block = 0; block < kc; block += DTypes.Q8BlockValues, scales += nr)
        {
            var scale0 = Vector256.Load(scales);
            var scale1 = Vector256.Load(scales + 8);
            for (int p = 0; p < DTypes.Q8BlockValues; p++, a += mr, q += nr)
            {
                var a0 = Vector256.Create(a[0]);
                s0 = Vector256.FusedMultiplyAdd(a0, Int8x8(q) * scale0, s0);
                s1 = Vector256.FusedMultiplyAdd(a0, Int8x8(q + 8) * scale1, s1);
            }
        }
        s0.Store(t);
        s1.Store(t + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Int8x8(sbyte* q) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q));

    static void Bf16ToF32(ushort* src, float* dst, int count)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + 16 <= count; i += 16)
            {
                var v = Vector256.Load(src + i);
                // bf16 is the high half of an f32.
                Vector256.ShiftLeft(Vector256.WidenLower(v), 16).AsSingle().Store(dst + i);
                Vector256.ShiftLeft(Vector256.WidenUpper(v), 16).AsSingle().Store(dst + i + 8);
            }
        for (; i < count; i++) dst[i] = BitConverter.Int32BitsToSingle(src[i] << 16);
    }

    static void Q8ToF32(sbyte* q, float* scales, int kc, int nr, float* dst)
    {
        for (int p = 0; p < kc; p++, q += nr, dst += nr)
        {
            float* scale = scales + p / DTypes.Q8BlockValues * nr;
            int j = 0;
            if (Avx2.IsSupported)
                for (; j + 8 <= nr; j += 8)
                    (Int8x8(q + j) * Vector256.Load(scale + j)).Store(dst + j);
            for (; j < nr; j++) dst[j] = q[j] * scale[j];
        }
    }
}
