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
                    (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q + j)) * Vector256.Load(scale + j)).Store(dst + j);
            for (; j < nr; j++) dst[j] = q[j] * scale[j];
        }
    }
}
