using Ponder.Tensors;

namespace Ponder.Models.Gguf;

/// <summary>
/// A llama.cpp GGUF model (architectures <c>llama</c>, <c>qwen2</c> and <c>qwen3</c>) as an <see cref="ITensorSource"/>: tensors
/// get their Hugging Face names and row-major shapes, and Q/K rows of <c>llama</c> files are put back in HF order.
/// </summary>
public sealed class GgufSource : ITensorSource
{
    private readonly GgufFile _file;
    private readonly Dictionary<string, GgufTensorInfo> _byHf = [];
    private readonly Dictionary<string, TensorInfo> _tensors = [];
    private readonly bool _permuteQk;

    /// <inheritdoc />
    public string Location => _file.Path;
    /// <inheritdoc />
    public ModelConfig Config { get; }
    /// <inheritdoc />
    public IReadOnlyDictionary<string, TensorInfo> Tensors => _tensors;
    /// <summary>The parsed file (metadata such as the tokenizer's <c>tokenizer.ggml.*</c> keys).</summary>
    public GgufFile File => _file;

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is malformed, or a tensor is missing or has the wrong shape.</exception>
    /// <exception cref="NotSupportedException">The architecture or a tensor's type is not supported.</exception>
    public GgufSource(string path)
    {
        _file = new GgufFile(path);
        try
        {
            string arch = _file.Metadata.TryGetValue("general.architecture", out object? a) && a is string s
                ? s : throw new InvalidDataException($"{path}: general.architecture is missing or not a string");
            var architecture = arch switch
            {
                "llama" => Architecture.Llama,
                "qwen2" => Architecture.Qwen2,
                "qwen3" => Architecture.Qwen3,
                "phi3" => Architecture.Phi3,
                _ => throw new NotSupportedException($"{path}: GGUF architecture '{arch}' is not supported (supported: llama, qwen2, qwen3, phi3)"),
            };
            // llama.cpp runs qwen2, qwen3 and phi3 with NEOX (rotate-half) RoPE, so its converter leaves Q/K rows in HF order.
            _permuteQk = architecture == Architecture.Llama;

            foreach (var t in _file.Tensors)
            {
                if (t.Name == GgufNames.RopeFreqs && !_file.Metadata.ContainsKey(GgufMetadata.RopeScalingType))
                    throw new NotSupportedException($"{path}: tensor '{GgufNames.RopeFreqs}' (llama3 RoPE scaling) without {GgufMetadata.RopeScalingType}: the scaling parameters cannot be recovered");
                if (t.Name == GgufNames.RopeFreqs) continue;
                string hf = GgufNames.ToHf(t.Name, architecture)
                    ?? throw new NotSupportedException($"{path}: tensor '{t.Name}' is not part of a {arch} model as Ponder computes it; loading would ignore it");
                var dtype = t.DType ?? throw _file.Unsupported(t);
                _byHf[hf] = t;
                _tensors[hf] = new TensorInfo(hf, dtype, t.Shape);
            }
            Config = GgufMetadata.ReadConfig(_file, architecture, arch, _byHf);
            foreach (var (fused, parts, meaning) in TensorNames.Fused(Config)) Split(fused, parts, meaning);
            TensorNames.CheckComplete(this);
        }
        catch
        {
            _file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Phi-3's fused attn_qkv (q | k | v rows) and ffn_up (gate | up rows) become the separate tensors the forward pass
    /// multiplies: each a row range of the stored tensor, read in place (quantized rows are whole blocks).
    /// </summary>
    void Split(string fused, (string Name, int Rows)[] parts, string meaning)
    {
        if (!_byHf.TryGetValue(fused, out var t)) return;
        int rows = parts.Sum(p => p.Rows);
        var info = _tensors[fused];
        if (!info.Shape.SequenceEqual([rows, (long)Config.DModel]))
            throw new InvalidDataException($"{Location}: tensor '{t.Name}' has shape {info.ShapeText}, expected [{rows}, {Config.DModel}] {meaning}");
        long rowBytes = t.ByteSize / rows, offset = t.Offset;
        foreach (var (name, partRows) in parts)
        {
            if (_tensors.ContainsKey(name))
                throw new InvalidDataException($"{Location}: both '{t.Name}' and the tensor of '{name}' are present; a file has one or the other");
            _byHf[name] = t with { Dims = [Config.DModel, partRows], Offset = offset, ByteSize = partRows * rowBytes };
            _tensors[name] = new TensorInfo(name, info.Type, [partRows, Config.DModel]);
            offset += partRows * rowBytes;
        }
        _byHf.Remove(fused);
        _tensors.Remove(fused);
    }

    /// <inheritdoc />
    public void ReadF32(string name, Span<float> destination)
    {
        if (!_byHf.TryGetValue(name, out var t))
            throw new ArgumentException($"{Location}: no tensor named '{name}'", nameof(name));
        var info = _tensors[name];
        if (destination.Length != info.ElementCount)
            throw new ArgumentException($"{Location}: tensor '{name}' has {info.ElementCount} elements, destination holds {destination.Length}", nameof(destination));
        int heads = _permuteQk ? GgufNames.RopeHeads(name, Config) : 0;
        if (heads == 0)
        {
            _file.ReadF32(t, destination);
            return;
        }
        var stored = new float[destination.Length];
        _file.ReadF32(t, stored);
        GgufNames.PermuteRows<float>(stored, destination, heads, Config.HeadDim, destination.Length / (heads * Config.HeadDim), toGguf: false);
    }

    /// <inheritdoc />
    public bool TryReadRaw(string name, Span<byte> destination)
    {
        if (!_byHf.TryGetValue(name, out var t))
            throw new ArgumentException($"{Location}: no tensor named '{name}'", nameof(name));
        var raw = _file.Raw(t);
        if (destination.Length != raw.Length)
            throw new ArgumentException($"{Location}: tensor '{name}' has {raw.Length} bytes, destination holds {destination.Length}", nameof(destination));
        int heads = _permuteQk ? GgufNames.RopeHeads(name, Config) : 0;
        // Blocks run along a row, so un-permuting Q/K rows moves whole rows of bytes.
        if (heads == 0) raw.CopyTo(destination);
        else GgufNames.PermuteRows(raw, destination, heads, Config.HeadDim, raw.Length / (heads * Config.HeadDim), toGguf: false);
        return true;
    }

    /// <summary>Releases the memory map.</summary>
    public void Dispose() => _file.Dispose();
}

/// <summary>The metadata keys Ponder reads and writes, and the config they make.</summary>
internal static class GgufMetadata
{
    // llama.cpp knows no llama3 rope_scaling keys (its converter bakes the factors into rope_freqs); these keep
    // the parameters so a Ponder file reads back to the same config.
    public const string RopeScalingType = "ponder.rope_scaling.type";
    public const string RopeScalingFactor = "ponder.rope_scaling.factor";
    public const string RopeScalingLow = "ponder.rope_scaling.low_freq_factor";
    public const string RopeScalingHigh = "ponder.rope_scaling.high_freq_factor";
    public const string RopeScalingOriginal = "ponder.rope_scaling.original_max_position_embeddings";
    public const string HeadKindKey = "ponder.head";
    /// <summary>1 when a causal LM carries a shared value row (<see cref="ModelConfig.SharedValueHead"/>).</summary>
    public const string SharedValueHeadKey = "ponder.value_head";
    public const string EosIds = "ponder.eos_token_ids";

    public static ModelConfig ReadConfig(GgufFile file, Architecture architecture, string arch, IReadOnlyDictionary<string, GgufTensorInfo> tensors)
    {
        var md = file.Metadata;
        long? Integer(string key)
        {
            if (!md.TryGetValue(key, out object? v)) return null;
            return v switch
            {
                byte or sbyte or ushort or short or uint or int or long => Convert.ToInt64(v),
                ulong u when u <= long.MaxValue => (long)u,
                _ => throw new InvalidDataException($"{file.Path}: metadata '{key}' = {v} is not an integer"),
            };
        }
        int Int(string key, int? fallback = null)
        {
            long v = Integer(key) ?? fallback ?? throw new InvalidDataException($"{file.Path}: metadata '{key}' is missing");
            return v is < int.MinValue or > int.MaxValue ? throw new InvalidDataException($"{file.Path}: metadata '{key}' = {v} overflows") : (int)v;
        }
        double Real(string key, double fallback) => md.TryGetValue(key, out object? v)
            ? v switch
            {
                float f => f,
                double d => d,
                _ => throw new InvalidDataException($"{file.Path}: metadata '{key}' = {v} is not a float"),
            }
            : fallback;

        string p = arch + ".";
        int dModel = Int(p + "embedding_length");
        int nHeads = Int(p + "attention.head_count");
        int headDim = Int(p + "attention.key_length", nHeads > 0 ? dModel / nHeads : 0);
        // Metadata that would change the computation in ways Ponder does not implement is refused by name.
        NotSupportedException Refuse(string what) => new($"{file.Path}: metadata {what} is not supported by Ponder's {arch} forward pass; loading it would compute something else");
        if (md.TryGetValue(p + "rope.scaling.type", out object? rst) && rst is string ropeScaling && ropeScaling != "none")
            throw Refuse($"'{p}rope.scaling.type' = '{ropeScaling}'");
        if (Integer(p + "expert_count") is long experts && experts > 0) throw Refuse($"'{p}expert_count' = {experts} (mixture of experts)");
        if (Integer(p + "attention.value_length") is long valueLength && valueLength != headDim)
            throw Refuse($"'{p}attention.value_length' = {valueLength} (values of another width than keys, {headDim})");
        if (Integer(p + "rope.dimension_count") is long ropeDims && ropeDims != headDim)
            throw Refuse($"'{p}rope.dimension_count' = {ropeDims} (RoPE on part of each {headDim}-wide head)");
        int maxPositions = Int(p + "context_length", 2048);
        // A sliding window changes attention only past the window: capping the context there keeps full attention exact.
        if (Integer(p + "attention.sliding_window") is long window && window > 0 && window < maxPositions) maxPositions = (int)window;
        int vocab = Int(p + "vocab_size",
            md.TryGetValue("tokenizer.ggml.tokens", out object? tokens) && tokens is string[] ts ? ts.Length
            : tensors.TryGetValue(TensorNames.Embedding, out var emb) ? (int)emb.Dims[^1] : null);

        Llama3RopeScaling? scaling = null;
        if (md.TryGetValue(RopeScalingType, out object? st))
            scaling = st is "llama3"
                ? new Llama3RopeScaling(Real(RopeScalingFactor, 8), Real(RopeScalingLow, 1), Real(RopeScalingHigh, 4), Int(RopeScalingOriginal, 8192))
                : throw new NotSupportedException($"{file.Path}: {RopeScalingType} '{st}' is not supported (supported: llama3)");

        bool value = md.TryGetValue(HeadKindKey, out object? hk) && hk is "value";
        IReadOnlyList<int> eos = md.TryGetValue(EosIds, out object? e) && e is int[] ids ? ids
            : md.ContainsKey("tokenizer.ggml.eos_token_id") ? [Int("tokenizer.ggml.eos_token_id")] : [];
        int? bos = md.ContainsKey("tokenizer.ggml.bos_token_id") ? Int("tokenizer.ggml.bos_token_id") : null;
        return new ModelConfig
        {
            Architecture = architecture,
            Head = value ? HeadKind.Value : HeadKind.LanguageModel,
            NumLabels = value && tensors.TryGetValue(TensorNames.ValueHead, out var vh) ? (int)vh.Dims[^1] : 1,
            Vocab = vocab,
            DModel = dModel,
            NLayers = Int(p + "block_count"),
            NHeads = nHeads,
            NKvHeads = Int(p + "attention.head_count_kv", nHeads),
            HeadDim = headDim,
            DFf = Int(p + "feed_forward_length"),
            RmsNormEps = (float)Real(p + "attention.layer_norm_rms_epsilon", 1e-5),
            RopeTheta = Real(p + "rope.freq_base", 10000),
            RopeScaling = scaling,
            MaxPositions = maxPositions,
            TiedEmbeddings = !value && !tensors.ContainsKey(TensorNames.LmHead),
            QkvBias = tensors.ContainsKey(TensorNames.QBias(0)),
            QkNorm = architecture == Architecture.Qwen3,
            BosTokenId = bos,
            EosTokenIds = eos,
            SharedValueHead = Int(SharedValueHeadKey, 0) switch
            {
                0 => false,
                1 => true,
                int v => throw new InvalidDataException($"{file.Path}: metadata '{SharedValueHeadKey}' = {v}; expected 0 or 1"),
            },
        }.Validate(file.Path);
    }
}
