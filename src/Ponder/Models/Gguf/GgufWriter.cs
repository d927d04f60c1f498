using System.Text;
using Ponder.Models.Safetensors;
using Ponder.Tensors;

namespace Ponder.Models.Gguf;

/// <summary>Writes GGUF v3 files that llama.cpp loads and <see cref="GgufSource"/> reads back.</summary>
public static class GgufWriter
{
    /// <summary>
    /// Writes <paramref name="tensors"/> (HF names, HF row order) as a GGUF model at <paramref name="path"/>.
    /// 2-D weights are stored as <paramref name="dtype"/> (F32, F16, BF16 or Q8_0; Q8_0 needs rows that are a multiple
    /// of 32 values, other rows fall back to F16, as llama.cpp's converter does); 1-D tensors (norms, biases) stay F32.
    /// Other quantizations come from llama.cpp's quantizer, applied to such a file.
    /// Q/K rows are permuted to llama.cpp's RoPE layout for <c>llama</c>. Without a <c>tokenizer.ggml.model</c> in
    /// <paramref name="extraMetadata"/>, the file says <c>no_vocab</c> and llama.cpp runs it on token ids.
    /// </summary>
    /// <param name="path">The file to create (overwritten).</param>
    /// <param name="config">Shapes and hyper-parameters, written as <c>llama.*</c> / <c>qwen2.*</c> / <c>qwen3.*</c> metadata.</param>
    /// <param name="tensors">Every tensor of <see cref="TensorNames.Expected"/>, by HF name.</param>
    /// <param name="dtype">Storage type of 2-D weights.</param>
    /// <param name="extraMetadata">Extra keys (e.g. <c>tokenizer.ggml.*</c>), typed by their .NET type: string, bool,
    /// byte, sbyte, short, ushort, int (INT32), uint (UINT32), long (INT64), ulong (UINT64), float (FLOAT32),
    /// double (FLOAT64), and arrays of these. They override keys the writer would write.</param>
    /// <exception cref="ArgumentException">A tensor is missing, misshapen, or has no GGUF name; a metadata value has an unsupported type.</exception>
    public static void Write(string path, ModelConfig config, IReadOnlyDictionary<string, HostTensor> tensors,
        DType dtype = DType.F32, IReadOnlyDictionary<string, object>? extraMetadata = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        // GGUF has no names for a two-layer reward head (llama.cpp's converter does not take Qwen2ForProcessRewardModel):
        // a file only Ponder could read is not written.
        if (config.Head == HeadKind.ProcessReward)
            throw new NotSupportedException("a process reward head (Qwen2ForProcessRewardModel: score.0 / ReLU / score.2) has no GGUF form; keep it as safetensors");
        // Mistral computes as Llama does (llama.cpp keeps no sliding window for it).
        string arch = config.Architecture switch { Architecture.Qwen2 => "qwen2", Architecture.Qwen3 => "qwen3", Architecture.Phi3 => "phi3", _ => "llama" };
        // Phi-3's projections are stored fused, as llama.cpp's phi3 expects: attn_qkv = q | k | v, ffn_up = gate | up.
        var fused = TensorNames.Fused(config).ToList();
        var fusedAway = fused.SelectMany(f => f.Parts.Select(p => p.Name)).ToHashSet(StringComparer.Ordinal);
        bool permuteQk = arch == "llama";

        var entries = new List<(string Name, HostTensor Tensor, DType Type)>();
        var ordered = ModelTensors.CheckAndOrder(config, tensors, nameof(tensors)).Where(n => !fusedAway.Contains(n)).ToList();
        var merged = new Dictionary<string, HostTensor>(tensors);
        foreach (var (name, parts, _) in fused)
        {
            merged[name] = new HostTensor([.. parts.SelectMany(p => tensors[p.Name].Data)], [parts.Sum(p => p.Rows), config.DModel]);
            ordered.Add(name);
        }
        foreach (string name in ordered)
        {
            var t = merged[name];
            string gguf = GgufNames.ToGguf(name, config.NLayers);
            DType type = t.Shape.Length < 2 ? DType.F32
                : DTypes.IsQuantized(dtype) && t.Shape[^1] % DTypes.BlockValues(dtype) != 0 ? DType.F16
                : dtype;
            int heads = permuteQk ? GgufNames.RopeHeads(name, config) : 0;
            if (heads > 0)
            {
                var permuted = new float[t.Data.Length];
                GgufNames.PermuteRows<float>(t.Data, permuted, heads, config.HeadDim, t.Data.Length / (heads * config.HeadDim), toGguf: true);
                t = new HostTensor(permuted, t.Shape);
            }
            entries.Add((gguf, t, type));
        }
        if (config.RopeScaling is { } scaling)
            entries.Add((GgufNames.RopeFreqs, new HostTensor(Llama3RopeFactors(config.HeadDim, config.RopeTheta, scaling), [config.HeadDim / 2]), DType.F32));

        var metadata = new List<(string Key, object Value)>
        {
            ("general.architecture", arch),
            ("general.name", "ponder"),
            ($"{arch}.vocab_size", (uint)config.Vocab),
            ($"{arch}.context_length", (uint)config.MaxPositions),
            ($"{arch}.embedding_length", (uint)config.DModel),
            ($"{arch}.block_count", (uint)config.NLayers),
            ($"{arch}.feed_forward_length", (uint)config.DFf),
            ($"{arch}.attention.head_count", (uint)config.NHeads),
            ($"{arch}.attention.head_count_kv", (uint)config.NKvHeads),
            ($"{arch}.attention.key_length", (uint)config.HeadDim),
            ($"{arch}.attention.value_length", (uint)config.HeadDim),
            ($"{arch}.rope.dimension_count", (uint)config.HeadDim),
            ($"{arch}.attention.layer_norm_rms_epsilon", config.RmsNormEps),
            ($"{arch}.rope.freq_base", (float)config.RopeTheta),
        };
        if (config.RopeScaling is { } s)
        {
            metadata.Add((GgufMetadata.RopeScalingType, "llama3"));
            metadata.Add((GgufMetadata.RopeScalingFactor, s.Factor));
            metadata.Add((GgufMetadata.RopeScalingLow, s.LowFreqFactor));
            metadata.Add((GgufMetadata.RopeScalingHigh, s.HighFreqFactor));
            metadata.Add((GgufMetadata.RopeScalingOriginal, (uint)s.OriginalMaxPositionEmbeddings));
        }
        if (config.Head == HeadKind.Value) metadata.Add((GgufMetadata.HeadKindKey, "value"));
        if (config.SharedValueHead) metadata.Add((GgufMetadata.SharedValueHeadKey, 1u));
        if (config.BosTokenId is int bos) metadata.Add(("tokenizer.ggml.bos_token_id", (uint)bos));
        if (config.EosTokenIds.Count > 0)
        {
            metadata.Add(("tokenizer.ggml.eos_token_id", (uint)config.EosTokenIds[0]));
            if (config.EosTokenIds.Count > 1) metadata.Add((GgufMetadata.EosIds, config.EosTokenIds.ToArray()));
        }
        if (extraMetadata is null || !extraMetadata.ContainsKey("tokenizer.ggml.model"))
            metadata.Add(("tokenizer.ggml.model", "no_vocab"));
        if (extraMetadata is not null)
            foreach (var (key, value) in extraMetadata)
            {
                metadata.RemoveAll(m => m.Key == key);
                metadata.Add((key, value));
            }

        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        using var w = new BinaryWriter(stream, Encoding.UTF8);
        w.Write(GgufFile.Magic);
        w.Write(GgufFile.SupportedVersion);
        w.Write((ulong)entries.Count);
        w.Write((ulong)metadata.Count);
        foreach (var (key, value) in metadata)
        {
            WriteString(w, key);
            WriteValue(w, key, value);
        }
        long offset = 0;
        var offsets = new List<long>();
        foreach (var (name, t, type) in entries)
        {
            WriteString(w, name);
            w.Write((uint)t.Shape.Length);
            for (int d = t.Shape.Length - 1; d >= 0; d--) w.Write((ulong)t.Shape[d]);
            w.Write((uint)GgufFile.ToGgml(type));
            w.Write((ulong)offset);
            offsets.Add(offset);
            offset = GgufFile.Align(offset + DTypes.ByteSize(type, t.Data.Length), GgufFile.DefaultAlignment);
        }
        Pad(w);
        long dataStart = stream.Position;
        for (int i = 0; i < entries.Count; i++)
        {
            Pad(w, dataStart + offsets[i] - stream.Position);
            w.Write(DTypes.FromF32(entries[i].Type, entries[i].Tensor.Data));
        }
        Pad(w);
    }

    /// <summary>
    /// llama.cpp's <c>rope_freqs</c> for llama3 scaling: per rotary pair, the divisor of its frequency, so that
    /// theta^(-2i/headDim) / factor[i] equals Hugging Face's adjusted inv_freq.
    /// </summary>
    internal static float[] Llama3RopeFactors(int headDim, double theta, Llama3RopeScaling s)
    {
        var factors = new float[headDim / 2];
        double lowWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
        double highWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
        for (int i = 0; i < factors.Length; i++)
        {
            double invFreq = Math.Pow(theta, -2.0 * i / headDim);
            double wavelen = 2 * Math.PI / invFreq;
            if (wavelen < highWavelen) factors[i] = 1;
            else if (wavelen > lowWavelen) factors[i] = (float)s.Factor;
            else
            {
                double smooth = (s.OriginalMaxPositionEmbeddings / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                factors[i] = (float)(1 / ((1 - smooth) / s.Factor + smooth));
            }
        }
        return factors;
    }

    private static void Pad(BinaryWriter w, long count = -1)
    {
        if (count < 0) count = GgufFile.Align(w.BaseStream.Position, GgufFile.DefaultAlignment) - w.BaseStream.Position;
        for (long i = 0; i < count; i++) w.Write((byte)0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static GgufValueType TypeOf(string key, object value) => value switch
    {
        byte => GgufValueType.UInt8,
        sbyte => GgufValueType.Int8,
        ushort => GgufValueType.UInt16,
        short => GgufValueType.Int16,
        uint => GgufValueType.UInt32,
        int => GgufValueType.Int32,
        float => GgufValueType.Float32,
        bool => GgufValueType.Bool,
        string => GgufValueType.String,
        ulong => GgufValueType.UInt64,
        long => GgufValueType.Int64,
        double => GgufValueType.Float64,
        Array => GgufValueType.Array,
        _ => throw new ArgumentException($"metadata '{key}' has type {value?.GetType().Name ?? "null"}, which GGUF cannot store", nameof(value)),
    };

    private static void WriteValue(BinaryWriter w, string key, object value, bool typed = true)
    {
        var type = TypeOf(key, value);
        if (typed) w.Write((uint)type);
        switch (value)
        {
            case byte v: w.Write(v); break;
            case sbyte v: w.Write(v); break;
            case ushort v: w.Write(v); break;
            case short v: w.Write(v); break;
            case uint v: w.Write(v); break;
            case int v: w.Write(v); break;
            case float v: w.Write(v); break;
            case bool v: w.Write((byte)(v ? 1 : 0)); break;
            case string v: WriteString(w, v); break;
            case ulong v: w.Write(v); break;
            case long v: w.Write(v); break;
            case double v: w.Write(v); break;
            case Array a:
                var elementType = a.GetType().GetElementType()!;
                if (elementType.IsArray || elementType == typeof(object))
                    throw new ArgumentException($"metadata '{key}' is an array of {elementType.Name}; GGUF arrays need one scalar type", nameof(value));
                object sample = elementType == typeof(string) ? "" : Activator.CreateInstance(elementType)!;
                w.Write((uint)TypeOf(key, sample));
                w.Write((ulong)a.Length);
                foreach (object item in a) WriteValue(w, key, item ?? throw new ArgumentException($"metadata '{key}' has a null element", nameof(value)), typed: false);
                break;
        }
    }
}
