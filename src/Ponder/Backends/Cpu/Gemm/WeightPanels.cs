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
/// quantized scales (f32): panels x cols/G x NR    scale of (row j, group p/G) at (j/NR)*(cols/G)*NR + (p/G)*NR + j%NR
/// quantized offsets (f32): as the scales          (Q4_1, Q5_1, Q4_K, Q5_K)
/// </code>
/// Quantized values are int8 q with w = q·scale (+ offset), G = <see cref="DTypes.GroupValues"/> (32; 16 for Q6_K).
/// 4-bit types (<see cref="Is4Bit"/>) pack two depth rows per byte instead, q + bias as an unsigned nibble:
/// <code>
/// 4-bit values: panels x cols/2 x NR bytes        (row j, col p) in byte (j/NR)*(cols/2)*NR + (p/2)*NR + j%NR,
///                                                  low nibble for even p, high for odd p
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

    /// <summary>Whether a quantized type's values are kept as 4-bit nibbles (Q4_0, Q4_1, Q4_K) rather than int8.</summary>
    public static bool Is4Bit(DType type) => type is DType.Q4_0 or DType.Q4_1 or DType.Q4_K;

    /// <summary>What a 4-bit type's decoded q is stored as nibble - bias of (Q4_0's q is −8..7, the others' 0..15).</summary>
    public static int NibbleBias(DType type) => type == DType.Q4_0 ? 8 : 0;

    /// <summary>Packs q [rows, cols] (each q + bias in 0..15) as 4-bit panels (see the type's layout); dst has ceil(rows/NR)*NR*cols/2 bytes.</summary>
    public static void PackNibbles(ReadOnlySpan<sbyte> q, int rows, int cols, int nr, int bias, Span<byte> dst)
    {
        dst.Clear();
        for (int j = 0; j < rows; j++)
        {
            var src = q.Slice(j * cols, cols);
            var panel = dst.Slice(j / nr * (cols / 2) * nr);
            int lane = j % nr;
            for (int p = 0; p < cols; p += 2)
                panel[p / 2 * nr + lane] = (byte)((src[p] + bias) | (src[p + 1] + bias) << 4);
        }
    }

    /// <summary>
    /// Writes f32 values of rows [k0, k0 + kc) of panel <paramref name="panel"/> (kc x NR, row-major) to dst.
    /// Quantized types need k0 and kc to be multiples of their group (32 covers every type).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ToF32(DType type, void* values, float* scales, float* offsets, int panel, int cols, int k0, int kc, int nr, float* dst)
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
            case var _ when Is4Bit(type):
            {
                int group = DTypes.GroupValues(type);
                nint at = (nint)panel * (cols / group) * nr + (nint)(k0 / group) * nr;
                byte* q = (byte*)values + (nint)panel * (cols / 2) * nr + (nint)(k0 / 2) * nr;
                if (offsets == null) NibblesToF32<NoOffset>(q, scales + at, null, NibbleBias(type), group, kc, nr, dst);
                else NibblesToF32<Offset>(q, scales + at, offsets + at, NibbleBias(type), group, kc, nr, dst);
                break;
            }
            case var _ when DTypes.IsQuantized(type):
            {
                int group = DTypes.GroupValues(type);
                nint at = (nint)panel * (cols / group) * nr + (nint)(k0 / group) * nr;
                if (offsets == null) QuantToF32<NoOffset>((sbyte*)values + start, scales + at, null, group, kc, nr, dst);
                else QuantToF32<Offset>((sbyte*)values + start, scales + at, offsets + at, group, kc, nr, dst);
                break;
            }
            default:
                throw new NotSupportedException($"weight type {type} has no panel conversion");
        }
    }

    /// <summary>
    /// Whether one token (decode) runs through the row kernels (<see cref="Rows"/>, <see cref="RowsQuant"/>): decode is memory
    /// bound, so they read the weight straight from its panels (16- and 8-bit weights converted in registers) and keep
    /// up to eight FMA chains in flight. They need AVX2 and an FMA tile kernel (the scalar tile does not fuse, so its batch
    /// rows would round differently); a 32-wide AVX-512 panel is done as two 16-wide halves. F16 infinities and NaNs
    /// take the exact conversion path instead, because the fused conversion only handles finite values.
    /// </summary>
    public static bool CanFuseRow(DType type, GemmShape shape, bool hasF16Specials) =>
        Avx2.IsSupported && shape.Isa != GemmIsa.Scalar && shape.NR % 16 == 0
        && (type is DType.F32 or DType.BF16 || DTypes.IsQuantized(type) || (type == DType.F16 && !hasF16Specials));

    /// <summary>Whether any f16 value is an infinity or a NaN (exponent all ones).</summary>
    public static bool HasF16Specials(ReadOnlySpan<ushort> values)
    {
        foreach (ushort h in values)
            if ((h & 0x7C00) == 0x7C00) return true;
        return false;
    }

    /// <summary>
    /// t[i*nr + 0..16] = sum over p &lt; kc of a[p] * w_i[p*nr + 0..16] for 16 columns of each of TP.Count consecutive
    /// panels (panel i's segment at w + i * panelStride), loaded by <typeparamref name="TLoad"/>. One FMA chain per column,
    /// in p order: exactly the arithmetic of the tile kernels on a converted panel, so a token's result does not depend
    /// on its batch. Several panels at once, because one panel's two chains leave the loop waiting on FMA latency.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows<TP, TLoad, T>(T* w, nint panelStride, int nr, float* a, int kc, float* t)
        where TP : struct, IRows where TLoad : struct, IRowLoad<T> where T : unmanaged
    {
        Vector256<float> s00 = default, s01 = default, s10 = default, s11 = default, s20 = default, s21 = default, s30 = default, s31 = default;
        T* w1 = w + panelStride, w2 = w1 + panelStride, w3 = w2 + panelStride;
        nint o = 0;
        for (int p = 0; p < kc; p++, o += nr)
        {
            var a0 = Vector256.Create(a[p]);
            s00 = Vector256.FusedMultiplyAdd(a0, TLoad.Load8(w + o), s00); s01 = Vector256.FusedMultiplyAdd(a0, TLoad.Load8(w + o + 8), s01);
            if (TP.Count > 1) { s10 = Vector256.FusedMultiplyAdd(a0, TLoad.Load8(w1 + o), s10); s11 = Vector256.FusedMultiplyAdd(a0, TLoad.Load8(w1 + o + 8), s11); }
            if (TP.Count > 2) { s20 = Vector256.FusedMultiplyAdd(a0, TLoad.Load8(w2 + o), s20); s21 = Vector256.FusedMultiplyAdd(a0, TLoad.Load8(w2 + o + 8), s21); }
            if (TP.Count > 3) { s30 = Vector256.FusedMultiplyAdd(a0, TLoad.Load8(w3 + o), s30); s31 = Vector256.FusedMultiplyAdd(a0, TLoad.Load8(w3 + o + 8), s31); }
        }
        s00.Store(t); s01.Store(t + 8);
        if (TP.Count > 1) { s10.Store(t + nr); s11.Store(t + nr + 8); }
        if (TP.Count > 2) { s20.Store(t + 2 * nr); s21.Store(t + 2 * nr + 8); }
        if (TP.Count > 3) { s30.Store(t + 3 * nr); s31.Store(t + 3 * nr + 8); }
    }

    /// <summary>Eight consecutive weights of a panel as f32, in registers (AVX2).</summary>
    internal interface IRowLoad<T> where T : unmanaged { static abstract Vector256<float> Load8(T* w); }

    /// <summary>F32: a plain load.</summary>
    internal struct F32Load : IRowLoad<float>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(float* w) => Vector256.Load(w);
    }

    /// <summary>
    /// F16: sign-extend h to 32 bits and shift left 13, which puts the sign in bit 31 and exponent and mantissa in place
    /// for an exponent bias of 15 (clearing bits 28..30 removes the sign copies); multiplying by 2^112 rebiases to 127 and
    /// is exact for normal, subnormal and zero values alike (not for infinities and NaNs: see <see cref="CanFuseRow"/>).
    /// </summary>
    internal struct F16Convert : IRowLoad<ushort>
    {
        const float TwoPow112 = 5.192296858534828e33f; // 2^112, exactly representable

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(ushort* h) =>
            (Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((short*)h), 13) & Vector256.Create(unchecked((int)0x8FFFFFFF))).AsSingle()
            * Vector256.Create(TwoPow112);
    }

    /// <summary>BF16: the high half of an f32, exact for every value.</summary>
    internal struct Bf16Convert : IRowLoad<ushort>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(ushort* h) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(h), 16).AsSingle();
    }

    /// <summary>
    /// As <see cref="Rows"/> for quantized panels: int8 values q and, per <paramref name="group"/> values of p, one f32
    /// scale (and offset when <typeparamref name="TO"/> says so) per column (panel i's at scales + i * scaleStride,
    /// scales[g*nr + 0..16], offsets likewise). Each weight is dequantized in registers, w = q·scale (+ offset, fused:
    /// q·scale is exact, so the fused and the separate add round alike), and accumulated in p order, exactly as the tile
    /// kernels do on a panel <see cref="ToF32"/> converted (batch invariance). Scales and offsets are read from L1 on
    /// every step rather than held: eight accumulators and eight scales would fill all sixteen registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RowsQuant<TP, TO>(sbyte* q, nint panelStride, float* scales, float* offsets, nint scaleStride, int group, int nr, float* a, int kc, float* t)
        where TP : struct, IRows where TO : struct, IOffset
    {
        Vector256<float> s00 = default, s01 = default, s10 = default, s11 = default, s20 = default, s21 = default, s30 = default, s31 = default;
        sbyte* q1 = q + panelStride, q2 = q1 + panelStride, q3 = q2 + panelStride;
        nint o = 0, so = 0;
        for (int block = 0; block < kc; block += group, so += nr)
        {
            float* c0 = scales + so, f0 = offsets + so;
            for (int p = block; p < block + group; p++, o += nr)
            {
                var a0 = Vector256.Create(a[p]);
                s00 = Vector256.FusedMultiplyAdd(a0, Dequant<TO>(q + o, c0, f0), s00);
                s01 = Vector256.FusedMultiplyAdd(a0, Dequant<TO>(q + o + 8, c0 + 8, f0 + 8), s01);
                if (TP.Count > 1)
                {
                    s10 = Vector256.FusedMultiplyAdd(a0, Dequant<TO>(q1 + o, c0 + scaleStride, f0 + scaleStride), s10);
                    s11 = Vector256.FusedMultiplyAdd(a0, Dequant<TO>(q1 + o + 8, c0 + scaleStride + 8, f0 + scaleStride + 8), s11);
                }
                if (TP.Count > 2)
                {
                    s20 = Vector256.FusedMultiplyAdd(a0, Dequant<TO>(q2 + o, c0 + 2 * scaleStride, f0 + 2 * scaleStride), s20);
                    s21 = Vector256.FusedMultiplyAdd(a0, Dequant<TO>(q2 + o + 8, c0 + 2 * scaleStride + 8, f0 + 2 * scaleStride + 8), s21);
                }
                if (TP.Count > 3)
                {
                    s30 = Vector256.FusedMultiplyAdd(a0, Dequant<TO>(q3 + o, c0 + 3 * scaleStride, f0 + 3 * scaleStride), s30);
                    s31 = Vector256.FusedMultiplyAdd(a0, Dequant<TO>(q3 + o + 8, c0 + 3 * scaleStride + 8, f0 + 3 * scaleStride + 8), s31);
                }
            }
        }
        s00.Store(t); s01.Store(t + 8);
        if (TP.Count > 1) { s10.Store(t + nr); s11.Store(t + nr + 8); }
        if (TP.Count > 2) { s20.Store(t + 2 * nr); s21.Store(t + 2 * nr + 8); }
        if (TP.Count > 3) { s30.Store(t + 3 * nr); s31.Store(t + 3 * nr + 8); }
    }

    /// <summary>Whether a quantized type's groups carry an offset; the JIT specializes each struct, so the untaken branch vanishes.</summary>
    internal interface IOffset { static abstract bool Has { get; } }
    internal struct NoOffset : IOffset { public static bool Has => false; }
    internal struct Offset : IOffset { public static bool Has => true; }

    /// <summary>Eight weights q·scale (+ offset) in registers: the same arithmetic as <see cref="QuantToF32"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Dequant<TO>(sbyte* q, float* scale, float* offset) where TO : struct, IOffset => Dequant<TO>(Int8x8(q), scale, offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Dequant<TO>(Vector256<float> q, float* scale, float* offset) where TO : struct, IOffset =>
        TO.Has ? Vector256.FusedMultiplyAdd(q, Vector256.Load(scale), Vector256.Load(offset)) : q * Vector256.Load(scale);

    /// <summary>Eight bytes of nibble pairs as q of the even (low) and odd (high) depth row: nibble − bias, as f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (Vector256<float> Even, Vector256<float> Odd) Nibbles8(byte* q, Vector256<int> bias)
    {
        var v = Avx2.ConvertToVector256Int32(q);
        return (Avx.ConvertToVector256Single((v & Vector256.Create(0xF)) - bias), Avx.ConvertToVector256Single(Avx2.ShiftRightLogical(v, 4) - bias));
    }

    /// <summary>
    /// As <see cref="RowsQuant"/> for 4-bit panels (two depth rows per byte, <paramref name="panelStride"/> in bytes):
    /// each byte load gives the weights of depth rows p and p + 1, dequantized in registers and accumulated p first, as
    /// the tile kernels do on a panel <see cref="ToF32"/> converted. Half the bytes of the int8 form.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RowsQuant4<TP, TO>(byte* q, nint panelStride, float* scales, float* offsets, nint scaleStride, int group, int bias, int nr, float* a, int kc, float* t)
        where TP : struct, IRows where TO : struct, IOffset
    {
        Vector256<float> s00 = default, s01 = default, s10 = default, s11 = default, s20 = default, s21 = default, s30 = default, s31 = default;
        var vb = Vector256.Create(bias);
        nint o = 0, so = 0;
        for (int block = 0; block < kc; block += group, so += nr)
        {
            float* c = scales + so, f = offsets + so;
            for (int p = block; p < block + group; p += 2, o += nr)
            {
                var a0 = Vector256.Create(a[p]);
                var a1 = Vector256.Create(a[p + 1]);
                Pair<TO>(q + o, c, f, vb, a0, a1, ref s00, ref s01);
                if (TP.Count > 1) Pair<TO>(q + panelStride + o, c + scaleStride, f + scaleStride, vb, a0, a1, ref s10, ref s11);
                if (TP.Count > 2) Pair<TO>(q + 2 * panelStride + o, c + 2 * scaleStride, f + 2 * scaleStride, vb, a0, a1, ref s20, ref s21);
                if (TP.Count > 3) Pair<TO>(q + 3 * panelStride + o, c + 3 * scaleStride, f + 3 * scaleStride, vb, a0, a1, ref s30, ref s31);
            }
        }
        s00.Store(t); s01.Store(t + 8);
        if (TP.Count > 1) { s10.Store(t + nr); s11.Store(t + nr + 8); }
        if (TP.Count > 2) { s20.Store(t + 2 * nr); s21.Store(t + 2 * nr + 8); }
        if (TP.Count > 3) { s30.Store(t + 3 * nr); s31.Store(t + 3 * nr + 8); }
    }

    /// <summary>Sixteen columns, depth rows p (a0) then p + 1 (a1), of one 4-bit panel into two accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Pair<TO>(byte* q, float* c, float* f, Vector256<int> bias, Vector256<float> a0, Vector256<float> a1,
        ref Vector256<float> s0, ref Vector256<float> s1) where TO : struct, IOffset
    {
        var (e0, o0) = Nibbles8(q, bias);
        var (e1, o1) = Nibbles8(q + 8, bias);
        s0 = Vector256.FusedMultiplyAdd(a0, Dequant<TO>(e0, c, f), s0);
        s1 = Vector256.FusedMultiplyAdd(a0, Dequant<TO>(e1, c + 8, f + 8), s1);
        s0 = Vector256.FusedMultiplyAdd(a1, Dequant<TO>(o0, c, f), s0);
        s1 = Vector256.FusedMultiplyAdd(a1, Dequant<TO>(o1, c + 8, f + 8), s1);
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

    static void QuantToF32<TO>(sbyte* q, float* scales, float* offsets, int group, int kc, int nr, float* dst) where TO : struct, IOffset
    {
        for (int p = 0; p < kc; p++, q += nr, dst += nr)
        {
            nint g = (nint)(p / group) * nr;
            float* scale = scales + g, offset = offsets + g;
            int j = 0;
            if (Avx2.IsSupported)
                for (; j + 8 <= nr; j += 8) Dequant<TO>(q + j, scale + j, offset + j).Store(dst + j);
            for (; j < nr; j++) dst[j] = TO.Has ? MathF.FusedMultiplyAdd(q[j], scale[j], offset[j]) : q[j] * scale[j];
        }
    }

    static void NibblesToF32<TO>(byte* q, float* scales, float* offsets, int bias, int group, int kc, int nr, float* dst) where TO : struct, IOffset
    {
        var vb = Vector256.Create(bias);
        for (int p = 0; p < kc; p += 2, q += nr, dst += 2 * nr)
        {
            nint g = (nint)(p / group) * nr;
            float* scale = scales + g, offset = offsets + g;
            int j = 0;
            if (Avx2.IsSupported)
                for (; j + 8 <= nr; j += 8)
                {
                    var (even, odd) = Nibbles8(q + j, vb);
                    Dequant<TO>(even, scale + j, offset + j).Store(dst + j);
                    Dequant<TO>(odd, scale + j, offset + j).Store(dst + nr + j);
                }
            for (; j < nr; j++)
            {
                int lo = (q[j] & 0xF) - bias, hi = (q[j] >> 4) - bias;
                dst[j] = TO.Has ? MathF.FusedMultiplyAdd(lo, scale[j], offset[j]) : lo * scale[j];
                dst[nr + j] = TO.Has ? MathF.FusedMultiplyAdd(hi, scale[j], offset[j]) : hi * scale[j];
            }
        }
    }
}
