using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Ponder.Tensors;

/// <summary>Element types Ponder reads from model files. Arithmetic is f32; other types are storage formats.</summary>
public enum DType
{
    F32,
    F16,
    BF16,
    /// <summary>GGML Q8_0: blocks of 32 values, one f16 scale then 32 signed bytes (34 bytes per block).</summary>
    Q8_0,
}

/// <summary>Sizes and conversions to f32 for every <see cref="DType"/>.</summary>
public static class DTypes
{
    /// <summary>Values per Q8_0 block.</summary>
    public const int Q8BlockValues = 32;
    /// <summary>Bytes per Q8_0 block: an f16 scale and 32 int8 quants.</summary>
    public const int Q8BlockBytes = 34;

    /// <summary>Bytes needed to store <paramref name="count"/> elements; throws when the count does not fit the type's block size.</summary>
    public static long ByteSize(DType type, long count) => type switch
    {
        DType.F32 => checked(count * 4),
        DType.F16 or DType.BF16 => checked(count * 2),
        DType.Q8_0 => count % Q8BlockValues == 0
            ? checked(count / Q8BlockValues * Q8BlockBytes)
            : throw new InvalidDataException($"Q8_0 tensor has {count} elements, not a multiple of {Q8BlockValues}"),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown dtype"),
    };

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
            case DType.Q8_0:
                for (int b = 0; b < dst.Length / Q8BlockValues; b++)
                {
                    var block = src.Slice(b * Q8BlockBytes, Q8BlockBytes);
                    float scale = (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(block));
                    var outBlock = dst.Slice(b * Q8BlockValues, Q8BlockValues);
                    for (int i = 0; i < Q8BlockValues; i++) outBlock[i] = scale * (sbyte)block[2 + i];
                }
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, "unknown dtype");
        }
    }

    /// <summary>Rounds f32 to bf16 (round to nearest even), as PyTorch does.</summary>
    public static ushort ToBF16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    /// <summary>Encodes f32 values as <paramref name="type"/> bytes (the inverse of <see cref="ToF32"/>, lossy for all but F32).</summary>
    public static byte[] FromF32(DType type, ReadOnlySpan<float> src)
    {
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
