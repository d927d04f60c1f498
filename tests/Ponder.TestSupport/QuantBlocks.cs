using Ponder.Models;
using Ponder.Tensors;

namespace Ponder.TestSupport;

/// <summary>
/// Random blocks of GGML's quantized types: every quant and scale bit random, so each bit of the layout is exercised,
/// with the f16 fields (scales, mins) kept finite. Their decoded values span many magnitudes, which is what a
/// decoder test wants; <see cref="Scaled"/> gives blocks whose values are O(1) for multiplication tests.
/// </summary>
public static class QuantBlocks
{
    /// <summary>Byte offsets of the f16 fields in a block of <paramref name="type"/>.</summary>
    public static int[] HalfFields(DType type) => type switch
    {
        DType.Q8_0 or DType.Q4_0 or DType.Q5_0 => [0],
        DType.Q4_1 or DType.Q5_1 or DType.Q4_K or DType.Q5_K => [0, 2],
        DType.Q6_K => [208],
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not a quantized type"),
    };

    /// <summary><paramref name="count"/> values (whole blocks) of random bytes with finite f16 fields (subnormals and negatives included).</summary>
    public static byte[] Random(DType type, long count, int seed)
    {
        var rng = new Random(seed);
        var data = new byte[DTypes.ByteSize(type, count)];
        rng.NextBytes(data);
        int bytes = DTypes.BlockBytes(type);
        for (int b = 0; b < data.Length; b += bytes)
            foreach (int at in HalfFields(type))
                if ((data[b + at + 1] & 0x7C) == 0x7C) data[b + at + 1] ^= 0x40; // exponent all ones (inf, NaN): clear a bit
        return data;
    }

    /// <summary>
    /// As <see cref="Random"/>, with every f16 field set to a random value of magnitude about <paramref name="scale"/>
    /// divided by the type's largest |q| (times its largest sub-scale for the K types), so weights are O(<paramref name="scale"/>).
    /// </summary>
    public static byte[] Scaled(DType type, long count, int seed, float scale = 1f)
    {
        var data = Random(type, count, seed);
        var rng = new Random(seed + 1);
        float unit = type switch
        {
            DType.Q8_0 => 127, DType.Q4_0 => 8, DType.Q5_0 => 16, DType.Q4_1 => 15, DType.Q5_1 => 31,
            DType.Q4_K => 15 * 63, DType.Q5_K => 31 * 63, DType.Q6_K => 32 * 127,
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not a quantized type"),
        };
        int bytes = DTypes.BlockBytes(type);
        for (int b = 0; b < data.Length; b += bytes)
            foreach (int at in HalfFields(type))
            {
                var h = (Half)((rng.NextDouble() * 2 - 1) * scale / unit);
                BitConverter.TryWriteBytes(data.AsSpan(b + at, 2), BitConverter.HalfToUInt16Bits(h));
            }
        return data;
    }
}

/// <summary>
/// A random model whose 2-D weights are stored as random blocks of a quantized type (O(1) values), as a GGUF source
/// would offer them: <see cref="TryReadRaw"/> gives the blocks, <see cref="ReadF32"/> their reference dequantization.
/// </summary>
public sealed class QuantizedTestSource : ITensorSource
{
    readonly Dictionary<string, HostTensor> _f32;
    readonly Dictionary<string, byte[]> _raw = [];

    /// <summary>Every 2-D weight of <paramref name="config"/> as <paramref name="type"/> (rows must fit its blocks), the rest f32.</summary>
    public QuantizedTestSource(ModelConfig config, DType type, int seed)
    {
        Config = config;
        _f32 = RandomModel.Create(config, seed);
        var infos = new Dictionary<string, TensorInfo>();
        int i = 0;
        foreach (var (name, t) in _f32)
        {
            var shape = t.Shape.Select(x => (long)x).ToArray();
            if (t.Shape.Length == 2)
            {
                // Scaled to about 1/sqrt(columns), as RandomModel scales its f32 projections, so activations stay O(1).
                _raw[name] = QuantBlocks.Scaled(type, t.Data.Length, seed * 1000 + i++, 1f / MathF.Sqrt(t.Cols));
                DTypes.ToF32(type, _raw[name], t.Data);
                infos[name] = new TensorInfo(name, type, shape);
            }
            else infos[name] = new TensorInfo(name, DType.F32, shape);
        }
        Tensors = infos;
    }

    /// <inheritdoc />
    public string Location => "(random quantized)";
    /// <inheritdoc />
    public ModelConfig Config { get; }
    /// <inheritdoc />
    public IReadOnlyDictionary<string, TensorInfo> Tensors { get; }
    /// <summary>The dequantized weights, for the reference forward.</summary>
    public IReadOnlyDictionary<string, HostTensor> Dequantized => _f32;

    /// <inheritdoc />
    public void ReadF32(string name, Span<float> destination) => _f32[name].Data.CopyTo(destination);

    /// <inheritdoc />
    public bool TryReadRaw(string name, Span<byte> destination)
    {
        if (!_raw.TryGetValue(name, out var raw)) return false;
        raw.CopyTo(destination);
        return true;
    }

    /// <inheritdoc />
    public void Dispose() { }
}
