using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Ponder.Tensors;

/// <summary>Element types Ponder reads from model files. Arithmetic is f32; other types are storage formats.</summary>
public enum DType
{
    /// <summary>IEEE 754 single precision (4 bytes).</summary>
    F32,
    /// <summary>IEEE 754 half precision (2 bytes), widened to f32 on read.</summary>
    F16,
    /// <summary>bfloat16 (2 bytes: the upper half of an f32), widened to f32 on read.</summary>
    BF16,
    /// <summary>GGML Q8_0: blocks of 32 values, one f16 scale then 32 signed bytes (34 bytes per block).</summary>
    Q8_0,
    /// <summary>GGML Q4_0: blocks of 32, an f16 scale d and 16 bytes of 4-bit q; w = d·(q − 8) (18 bytes).</summary>
    Q4_0,
    /// <summary>GGML Q4_1: blocks of 32, f16 d and m, 16 bytes of 4-bit q; w = d·q + m (20 bytes).</summary>
    Q4_1,
    /// <summary>GGML Q5_0: blocks of 32, f16 d, 32 high bits, 16 bytes of low nibbles; w = d·(q − 16) (22 bytes).</summary>
    Q5_0,
    /// <summary>GGML Q5_1: blocks of 32, f16 d and m, 32 high bits, 16 bytes of low nibbles; w = d·q + m (24 bytes).</summary>
    Q5_1,
    /// <summary>
    /// GGML Q4_K: super-blocks of 256, f16 d and dmin, eight 6-bit (scale, min) pairs in 12 bytes, 128 bytes of 4-bit q;
    /// in sub-block j of 32, w = d·sc_j·q − dmin·m_j (144 bytes).
    /// </summary>
    Q4_K,
    /// <summary>GGML Q5_K: as <see cref="Q4_K"/> with a fifth bit per value in 32 more bytes (176 bytes per 256).</summary>
    Q5_K,
    /// <summary>
    /// GGML Q6_K: super-blocks of 256, 4 low bits (128 bytes), 2 high bits (64 bytes), sixteen int8 scales, f16 d last;
    /// in group j of 16, w = d·sc_j·(q − 32) (210 bytes).
    /// </summary>
    Q6_K,
}

/// <summary>
/// Sizes and conversions to f32 for every <see cref="DType"/>. Block-quantized types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
/// Q4_K, Q5_K, Q6_K) decode, per block, to small integers q and, per group of <see cref="GroupValues"/> values, an f32
/// scale and offset: w = q·scale + offset (offset 0 for the symmetric types). That form is exact: each scale is an f16
/// times a 6- or 8-bit integer and each q·scale fits f32's 24-bit significand, so w is the value llama.cpp's
/// dequantizer computes, bit for bit (one rounding, at the offset's add). <see cref="ToF32"/> is the reference
/// dequantizer; the CPU backend keeps the decoded q, scales and offsets and dequantizes in registers.
/// </summary>
public static class DTypes
{
    /// <summary>Values per Q8_0 block.</summary>
    public const int Q8BlockValues = 32;
    /// <summary>Bytes per Q8_0 block: an f16 scale and 32 int8 quants.</summary>
    public const int Q8BlockBytes = 34;
    /// <summary>Values per K-quant super-block (Q4_K, Q5_K, Q6_K).</summary>
    public const int KBlockValues = 256;

    /// <summary>Whether <paramref name="type"/> stores blocks of quantized values (everything but F32, F16, BF16).</summary>
    public static bool IsQuantized(DType type) => type >= DType.Q8_0;

    /// <summary>Values per block (1 for F32, F16 and BF16).</summary>
    public static int BlockValues(DType type) => type switch
    {
        DType.F32 or DType.F16 or DType.BF16 => 1,
        DType.Q8_0 or DType.Q4_0 or DType.Q4_1 or DType.Q5_0 or DType.Q5_1 => 32,
        DType.Q4_K or DType.Q5_K or DType.Q6_K => KBlockValues,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown dtype"),
    };

    /// <summary>Bytes per block (per value for F32, F16 and BF16).</summary>
    public static int BlockBytes(DType type) => type switch
    {
        DType.F32 => 4,
        DType.F16 or DType.BF16 => 2,
        DType.Q8_0 => Q8BlockBytes,
        DType.Q4_0 => 18,
        DType.Q4_1 => 20,
        DType.Q5_0 => 22,
        DType.Q5_1 => 24,
        DType.Q4_K => 144,
        DType.Q5_K => 176,
        DType.Q6_K => 210,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown dtype"),
    };

    /// <summary>Values sharing one scale (and offset) of a quantized type: 16 for Q6_K, 32 for the others.</summary>
    public static int GroupValues(DType type) => type == DType.Q6_K ? 16 : IsQuantized(type) ? 32
        : throw new ArgumentOutOfRangeException(nameof(type), type, "not a quantized type");

    /// <summary>Whether a quantized type adds an offset per group (Q4_1, Q5_1: +m; Q4_K, Q5_K: −dmin·m).</summary>
    public static bool HasOffset(DType type) => type is DType.Q4_1 or DType.Q5_1 or DType.Q4_K or DType.Q5_K;

    /// <summary>Bytes needed to store <paramref name="count"/> elements; throws when the count does not fit the type's block size.</summary>
    public static long ByteSize(DType type, long count)
    {
        int values = BlockValues(type);
        if (count % values != 0)
            throw new InvalidDataException($"{type} tensor has {count} elements, not a multiple of {values}");
        return checked(count / values * BlockBytes(type));
    }

    /// <summary>Converts <paramref name="dst"/>.Length values stored as <paramref name="type"/> (little-endian) to f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ToF32(DType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        long need = ByteSize(type, dst.Length);
        if (src.Length < need)
            throw new ArgumentException($"{type} source has {src.Length} bytes, {need} needed for {dst.Length} values", nameof(src));
        switch (type)
        {
            case DType.F32:
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(src[..(int)need]).CopyTo(dst);
                break;
            case DType.F16:
                System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(
                    System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(src[..(int)need]), dst);
                break;
            case DType.BF16:
                for (int i = 0; i < dst.Length; i++)
                    dst[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(src.Slice(2 * i, 2)) << 16);
                break;
            default:
            {
                int values = BlockValues(type), bytes = BlockBytes(type), group = GroupValues(type);
                bool offsets = HasOffset(type);
                Span<sbyte> q = stackalloc sbyte[KBlockValues];
                Span<float> scale = stackalloc float[KBlockValues / 16], offset = stackalloc float[KBlockValues / 16];
                for (int b = 0; b < dst.Length / values; b++)
                {
                    DecodeBlock(type, src.Slice(b * bytes, bytes), q, scale, offset);
                    var w = dst.Slice(b * values, values);
                    // q·scale is exact (see the type's summary); the symmetric types add nothing, so a zero keeps its sign.
                    if (offsets) for (int i = 0; i < values; i++) w[i] = q[i] * scale[i / group] + offset[i / group];
                    else for (int i = 0; i < values; i++) w[i] = q[i] * scale[i / group];
                }
                break;
            }
        }
    }

    /// <summary>
    /// Decodes one block of a quantized type: q[0..BlockValues) the integers, scale and offset per group of
    /// <see cref="GroupValues"/> (offset left alone for the symmetric types). Layouts as GGML's ggml-common.h defines them.
    /// </summary>
    public static void DecodeBlock(DType type, ReadOnlySpan<byte> b, Span<sbyte> q, Span<float> scale, Span<float> offset)
    {
        switch (type)
        {
            case DType.Q8_0:
                scale[0] = F16(b, 0);
                for (int i = 0; i < 32; i++) q[i] = (sbyte)b[2 + i];
                break;
            case DType.Q4_0:
            case DType.Q4_1:
            {
                // qs[j] holds value j in its low nibble and value j + 16 in its high nibble.
                int qs = type == DType.Q4_0 ? 2 : 4, bias = type == DType.Q4_0 ? 8 : 0;
                scale[0] = F16(b, 0);
                if (type == DType.Q4_1) offset[0] = F16(b, 2);
                for (int j = 0; j < 16; j++)
                {
                    q[j] = (sbyte)((b[qs + j] & 0xF) - bias);
                    q[j + 16] = (sbyte)((b[qs + j] >> 4) - bias);
                }
                break;
            }
            case DType.Q5_0:
            case DType.Q5_1:
            {
                // As Q4_0/Q4_1, plus bit j of the 32-bit qh is the fifth bit of value j.
                int at = type == DType.Q5_0 ? 2 : 4, bias = type == DType.Q5_0 ? 16 : 0;
                scale[0] = F16(b, 0);
                if (type == DType.Q5_1) offset[0] = F16(b, 2);
                uint qh = BinaryPrimitives.ReadUInt32LittleEndian(b[at..]);
                for (int j = 0; j < 16; j++)
                {
                    int qs = b[at + 4 + j];
                    q[j] = (sbyte)(((qs & 0xF) | (int)((qh >> j) & 1) << 4) - bias);
                    q[j + 16] = (sbyte)(((qs >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - bias);
                }
                break;
            }
            case DType.Q4_K:
            case DType.Q5_K:
            {
                // 64 values per step: the low nibbles of 32 bytes of qs are sub-block 2c, the high nibbles 2c + 1;
                // Q5_K's qh[l] holds the fifth bit of value l of sub-block s in its bit s.
                float d = F16(b, 0), dmin = F16(b, 2);
                var scales = b.Slice(4, 12);
                bool five = type == DType.Q5_K;
                var qh = five ? b.Slice(16, 32) : default;
                var qs = b.Slice(five ? 48 : 16, 128);
                for (int c = 0; c < 4; c++)
                    for (int half = 0; half < 2; half++)
                    {
                        int s = 2 * c + half;
                        var (sc, m) = ScaleMinK4(s, scales);
                        scale[s] = d * sc;
                        offset[s] = -(dmin * m);
                        for (int l = 0; l < 32; l++)
                        {
                            int v = half == 0 ? qs[32 * c + l] & 0xF : qs[32 * c + l] >> 4;
                            if (five) v |= ((qh[l] >> s) & 1) << 4;
                            q[32 * s + l] = (sbyte)v;
                        }
                    }
                break;
            }
            case DType.Q6_K:
            {
                // Two halves of 128: value 128h + 32k + l takes the low (k = 0, 1) or high (k = 2, 3) nibble of
                // ql[64h + l + 32(k % 2)] and bits 2k..2k+1 of qh[32h + l]; group g of 16 has scale d·sc[g].
                var ql = b[..128];
                var qh = b.Slice(128, 64);
                float d = F16(b, 208);
                for (int g = 0; g < 16; g++) scale[g] = d * (sbyte)b[192 + g];
                for (int h = 0; h < 2; h++)
                    for (int k = 0; k < 4; k++)
                        for (int l = 0; l < 32; l++)
                        {
                            int low = ql[64 * h + l + 32 * (k % 2)];
                            low = k < 2 ? low & 0xF : low >> 4;
                            int high = (qh[32 * h + l] >> (2 * k)) & 3;
                            q[128 * h + 32 * k + l] = (sbyte)((low | high << 4) - 32);
                        }
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, "not a quantized type");
        }
    }

    /// <summary>The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block, packed in 12 bytes.</summary>
    static (int Scale, int Min) ScaleMinK4(int j, ReadOnlySpan<byte> s) => j < 4
        ? (s[j] & 63, s[j + 4] & 63)
        : ((s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4, (s[j + 4] >> 4) | (s[j] >> 6) << 4);

    static float F16(ReadOnlySpan<byte> b, int at) => (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(b[at..]));

    /// <summary>Rounds f32 to bf16 (round to nearest even), as PyTorch does.</summary>
    public static ushort ToBF16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    /// <summary>
    /// Encodes f32 values as <paramref name="type"/> bytes (the inverse of <see cref="ToF32"/>, lossy for all but F32).
    /// Quantizes to Q8_0 only: the other quantized types come from llama.cpp's quantizer (llama-quantize), whose
    /// searches for scales Ponder does not reproduce.
    /// </summary>
    public static byte[] FromF32(DType type, ReadOnlySpan<float> src)
    {
        if (IsQuantized(type) && type != DType.Q8_0)
            throw new NotSupportedException($"Ponder does not quantize to {type}; make {type} files with llama.cpp's llama-quantize");
        var dst = new byte[ByteSize(type, src.Length)];
        switch (type)
        {
            case DType.F32:
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(src).CopyTo(dst);
                break;
            case DType.F16:
                for (int i = 0; i < src.Length; i++) BinaryPrimitives.WriteHalfLittleEndian(dst.AsSpan(2 * i), (Half)src[i]);
                break;
            case DType.BF16:
                for (int i = 0; i < src.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(dst.AsSpan(2 * i), ToBF16(src[i]));
                break;
            case DType.Q8_0:
                for (int b = 0; b < src.Length / Q8BlockValues; b++)
                {
                    var values = src.Slice(b * Q8BlockValues, Q8BlockValues);
                    float amax = 0;
                    foreach (float v in values) amax = MathF.Max(amax, MathF.Abs(v));
                    float scale = amax / 127f;
                    Half scaleHalf = (Half)scale;
                    float inv = scale == 0 ? 0 : 1f / scale;
                    var block = dst.AsSpan(b * Q8BlockBytes, Q8BlockBytes);
                    BinaryPrimitives.WriteHalfLittleEndian(block, scaleHalf);
                    for (int i = 0; i < Q8BlockValues; i++) block[2 + i] = (byte)(sbyte)Math.Clamp(MathF.Round(values[i] * inv), -127, 127);
                }
                break;
        }
        return dst;
    }
}
