using System.Text.Json;
using System.Text.Json.Nodes;

namespace Ponder.Models;

/// <summary>The transformer families Ponder runs. All are Llama-shaped decoders that differ in details.</summary>
public enum Architecture
{
    /// <summary><c>LlamaForCausalLM</c> (Llama 2/3, SmolLM).</summary>
    Llama,
    /// <summary><c>Qwen2ForCausalLM</c>: Llama with biases on Q, K and V.</summary>
    Qwen2,
    /// <summary>
    /// <c>MistralForCausalLM</c>. Attention is full, so a config with a sliding window gets its context capped at the
    /// window (<see cref="ModelConfig.MaxPositions"/>): within it, sliding and full attention are the same.
    /// </summary>
    Mistral,
    /// <summary><c>Qwen3ForCausalLM</c>: Llama with a per-head RMSNorm on q and k before RoPE (<see cref="ModelConfig.QkNorm"/>), no QKV bias.</summary>
    Qwen3,
    /// <summary><c>Phi3ForCausalLM</c>: Llama with fused <c>qkv_proj</c> and <c>gate_up_proj</c>, split at load.</summary>
    Phi3,
}

/// <summary>What the last hidden state feeds.</summary>
public enum HeadKind
{
    /// <summary>Logits over the vocabulary (<c>lm_head.weight</c>, or the embedding when tied).</summary>
    LanguageModel,
    /// <summary>A value head (<c>score.weight</c>, [numLabels, dModel]), as in <c>LlamaForTokenClassification</c>; PRMs use one label.</summary>
    Value,
    /// <summary>
    /// A process reward model's two-layer head, as in <c>Qwen2ForProcessRewardModel</c> (Qwen2.5-Math-PRM): on the final
    /// normed hidden state, <c>score.0</c> (Linear dModel → dModel, with bias), ReLU, <c>score.2</c> (Linear dModel →
    /// numLabels = 2, with bias). A step's score is the softmax probability of label 1 at the separator that ends it.
    /// </summary>
    ProcessReward,
}

/// <summary>The <c>llama3</c> rope_scaling variant (Llama 3.1+): long wavelengths are stretched by <see cref="Factor"/>.</summary>
public sealed record Llama3RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositionEmbeddings);

/// <summary>
/// Shapes and hyper-parameters of a Llama-family model, read from a Hugging Face <c>config.json</c> or GGUF metadata.
/// Names follow the house vocabulary: dModel, nLayers, nHeads, nKvHeads, headDim, dFf, vocab.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>The architecture family (Llama, Qwen2, Qwen3, Mistral, ...), from config.json's <c>architectures</c> or GGUF's <c>general.architecture</c>.</summary>
    public Architecture Architecture { get; init; } = Architecture.Llama;
    /// <summary>What the last layer feeds: a language-model head (logits over the vocabulary) or a value head (a PRM's scores).</summary>
    public HeadKind Head { get; init; } = HeadKind.LanguageModel;
    /// <summary>Outputs of a value head (1 for a PRM; 2 for a <see cref="HeadKind.ProcessReward"/> head). Ignored for language models.</summary>
    public int NumLabels { get; init; } = 1;
    /// <summary>Vocabulary size: rows of the embedding and of the LM head.</summary>
    public required int Vocab { get; init; }
    /// <summary>Width of the residual stream (hidden_size).</summary>
    public required int DModel { get; init; }
    /// <summary>Number of transformer layers.</summary>
    public required int NLayers { get; init; }
    /// <summary>Query heads per layer.</summary>
    public required int NHeads { get; init; }
    /// <summary>Key/value heads per layer (fewer than nHeads under grouped-query attention).</summary>
    public required int NKvHeads { get; init; }
    /// <summary>Width of one attention head (dModel / nHeads unless the config says otherwise, as Qwen3's does).</summary>
    public required int HeadDim { get; init; }
    /// <summary>Inner width of the SwiGLU feed-forward (intermediate_size).</summary>
    public required int DFf { get; init; }
    /// <summary>The epsilon added to the mean square in every RMSNorm.</summary>
    public float RmsNormEps { get; init; } = 1e-5f;
    /// <summary>RoPE base frequency.</summary>
    public double RopeTheta { get; init; } = 10000.0;
    /// <summary>Llama 3.1-style RoPE frequency scaling; null when the model has none.</summary>
    public Llama3RopeScaling? RopeScaling { get; init; }
    /// <summary>Positions the model was trained for (max_position_embeddings); prompts plus output must fit.</summary>
    public int MaxPositions { get; init; } = 2048;
    /// <summary>The LM head reuses the embedding matrix (no separate <c>lm_head.weight</c>).</summary>
    public bool TiedEmbeddings { get; init; }
    /// <summary>Biases on the Q, K and V projections (Qwen2).</summary>
    public bool QkvBias { get; init; }
    /// <summary>
    /// A per-head RMSNorm (weights <c>q_norm</c>, <c>k_norm</c> of headDim, the model's eps) on every query and key
    /// head after the projections and before RoPE (Qwen3).
    /// </summary>
    public bool QkNorm { get; init; }
    /// <summary>The beginning-of-sequence token, when the model has one.</summary>
    public int? BosTokenId { get; init; }
    /// <summary>Tokens that end generation (config.json and generation_config.json together).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    /// <summary>
    /// A language model that also carries a one-row value head (<c>value_head.weight</c>, [1, dModel]) on its final
    /// normed hidden state (config.json <c>"ponder_value_head": 1</c>): a PRM sharing the policy's backbone. Its row is
    /// the head's last output row (index vocab), so every forward returns the step score with the logits.
    /// </summary>
    public bool SharedValueHead { get; init; }

    /// <summary>Query width: nHeads * headDim.</summary>
    public int QDim => NHeads * HeadDim;
    /// <summary>Key/value width: nKvHeads * headDim.</summary>
    public int KvDim => NKvHeads * HeadDim;
    /// <summary>Rows of the output head: vocab (+ 1 with <see cref="SharedValueHead"/>) for a language model, numLabels for a value or process-reward head.</summary>
    public int HeadRows => Head == HeadKind.LanguageModel ? Vocab + (SharedValueHead ? 1 : 0) : NumLabels;

    /// <summary>Parameters of one decoder layer (projections, biases, two norms).</summary>
    public long LayerParameters =>
        (long)DModel * QDim + 2L * DModel * KvDim + (long)QDim * DModel
        + (QkvBias ? QDim + 2L * KvDim : 0)
        + (QkNorm ? 2L * HeadDim : 0)
        + 3L * DModel * DFf
        + 2L * DModel;

    /// <summary>Token embedding parameters (vocab * dModel).</summary>
    public long EmbeddingParameters => (long)Vocab * DModel;

    /// <summary>Output head parameters that are not the (tied) embedding.</summary>
    public long HeadParameters => Head switch
    {
        HeadKind.Value => (long)NumLabels * DModel,
        HeadKind.ProcessReward => (long)DModel * DModel + DModel + (long)NumLabels * DModel + NumLabels, // score.0 and score.2 with biases
        _ => (TiedEmbeddings ? 0 : (long)Vocab * DModel) + (SharedValueHead ? DModel : 0),
    };

    /// <summary>All parameters, counting a tied embedding once.</summary>
    public long TotalParameters => EmbeddingParameters + NLayers * LayerParameters + DModel + HeadParameters;

    /// <summary>
    /// Parameters excluding the token embedding and an untied LM head (Kaplan et al.'s convention, which the
    /// paper's 2N / 6N approximations use). A value or process-reward head is counted: it is compute, not a lookup.
    /// </summary>
    public long NonEmbeddingParameters => NLayers * LayerParameters + DModel
        + (Head != HeadKind.LanguageModel ? HeadParameters : SharedValueHead ? DModel : 0);

    /// <summary>Largest dimension accepted from a file; larger values are taken to be corruption.</summary>
    public const int MaxDimension = 1 << 20;

    /// <summary>Throws <see cref="InvalidDataException"/> naming the field and the source when the config is impossible.</summary>
    public ModelConfig Validate(string source)
    {
        void Positive(string name, long value, long max = MaxDimension)
        {
            if (value <= 0 || value > max)
                throw new InvalidDataException($"{source}: {name} = {value} is out of range (1..{max})");
        }
        Positive("vocab_size", Vocab, 1 << 24);
        Positive("hidden_size (dModel)", DModel);
        Positive("num_hidden_layers (nLayers)", NLayers, 4096);
        Positive("num_attention_heads (nHeads)", NHeads, 4096);
        Positive("num_key_value_heads (nKvHeads)", NKvHeads, 4096);
        Positive("head_dim", HeadDim, 4096);
        Positive("intermediate_size (dFf)", DFf);
        Positive("max_position_embeddings", MaxPositions, 1 << 24);
        if (NHeads % NKvHeads != 0)
            throw new InvalidDataException($"{source}: num_attention_heads {NHeads} is not a multiple of num_key_value_heads {NKvHeads}");
        if (HeadDim % 2 != 0)
            throw new InvalidDataException($"{source}: head_dim {HeadDim} must be even for RoPE");
        if (!(RmsNormEps > 0 && RmsNormEps < 1))
            throw new InvalidDataException($"{source}: rms_norm_eps = {RmsNormEps} is out of range (0..1)");
        if (!(RopeTheta > 0) || double.IsInfinity(RopeTheta))
            throw new InvalidDataException($"{source}: rope_theta = {RopeTheta} must be positive");
        if (Head == HeadKind.Value) Positive("num_labels", NumLabels, 1 << 16);
        if (Head == HeadKind.ProcessReward && NumLabels != 2)
            throw new InvalidDataException($"{source}: num_labels = {NumLabels}; a process reward head (score.2) classifies each step into 2 labels (wrong, right)");
        if (QkNorm != (Architecture == Architecture.Qwen3))
            throw new InvalidDataException($"{source}: per-head q/k norms go with Qwen3 and only Qwen3 (architecture {Architecture}, q/k norm {QkNorm})");
        if (Head == HeadKind.Value && Architecture is not (Architecture.Llama or Architecture.Qwen2))
            throw new InvalidDataException($"{source}: a value head is supported on Llama and Qwen2 backbones, not {Architecture}");
        if (Head == HeadKind.ProcessReward && Architecture != Architecture.Qwen2)
            throw new InvalidDataException($"{source}: a process reward head (score.0 / ReLU / score.2) is supported on the Qwen2 backbone, not {Architecture}");
        if (SharedValueHead && Head != HeadKind.LanguageModel)
            throw new InvalidDataException($"{source}: ponder_value_head is for causal language models; a token-classification model's score head already is its value head");
        if ((long)QDim * DModel > int.MaxValue || (long)DFf * DModel > int.MaxValue || (long)Vocab * DModel > int.MaxValue)
            throw new InvalidDataException($"{source}: a weight matrix would exceed {int.MaxValue} elements");
        foreach (int id in EosTokenIds)
            if (id < 0 || id >= Vocab) throw new InvalidDataException($"{source}: eos_token_id {id} is outside the vocabulary (0..{Vocab - 1})");
        if (BosTokenId is int bos && (bos < 0 || bos >= Vocab))
            throw new InvalidDataException($"{source}: bos_token_id {bos} is outside the vocabulary (0..{Vocab - 1})");
        return this;
    }

    /// <summary>The Hugging Face <c>architectures</c> Ponder reads.</summary>
    public const string SupportedHuggingFace = "LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM, Phi3ForCausalLM, LlamaForTokenClassification, Qwen2ForTokenClassification, Qwen2ForProcessRewardModel";

    /// <summary>
    /// Reads a Hugging Face <c>config.json</c>. Fields that would change the computation in ways Ponder does not
    /// implement are refused by name (an activation other than SiLU, MLP or output-projection biases, partial RoPE,
    /// RoPE scalings other than llama3); a sliding attention window caps the context at the window.
    /// </summary>
    public static ModelConfig FromHuggingFaceJson(string json, string source)
    {
        JsonNode root;
        // Duplicate keys are refused at parse (JsonNode would throw a bare ArgumentException on first access).
        try
        {
            JsonFile.CheckEscapedStrings(System.Text.Encoding.UTF8.GetBytes(json), source, default);
            root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false }) ?? throw new InvalidDataException($"{source}: empty config");
        }
        catch (JsonException e) { throw new InvalidDataException($"{source}: not valid JSON ({e.Message})", e); }
        if (root is not JsonObject obj) throw new InvalidDataException($"{source}: config is not a JSON object");

        // Every field is read through Value: a field of the wrong JSON type is an error naming it, never a cast failure.
        T Value<T>(JsonNode? node, string key, string expected) =>
            node is JsonValue v && v.TryGetValue(out T? x) && x is not null ? x : throw new InvalidDataException($"{source}: '{key}' is not {expected}");
        string archName = obj["architectures"] is JsonArray { Count: > 0 } a ? Value<string>(a[0], "architectures[0]", "a string") : "";
        (Architecture arch, HeadKind head) = archName switch
        {
            "LlamaForCausalLM" => (Architecture.Llama, HeadKind.LanguageModel),
            "Qwen2ForCausalLM" => (Architecture.Qwen2, HeadKind.LanguageModel),
            "MistralForCausalLM" => (Architecture.Mistral, HeadKind.LanguageModel),
            "LlamaForTokenClassification" => (Architecture.Llama, HeadKind.Value),
            "Qwen2ForTokenClassification" => (Architecture.Qwen2, HeadKind.Value),
            "Qwen3ForCausalLM" => (Architecture.Qwen3, HeadKind.LanguageModel),
            "Phi3ForCausalLM" => (Architecture.Phi3, HeadKind.LanguageModel),
            "Qwen2ForProcessRewardModel" => (Architecture.Qwen2, HeadKind.ProcessReward),
            "" => throw new InvalidDataException($"{source}: 'architectures' is missing"),
            _ => throw new NotSupportedException($"{source}: architecture '{archName}' is not supported (supported: {SupportedHuggingFace})"),
        };

        int Int(string key, int? fallback = null)
        {
            var node = obj[key];
            if (node is null) return fallback ?? throw new InvalidDataException($"{source}: '{key}' is missing");
            long v = Value<long>(node, key, "an integer");
            if (v < int.MinValue || v > int.MaxValue) throw new InvalidDataException($"{source}: '{key}' = {v} overflows");
            return (int)v;
        }
        double Num(string key, double fallback) => obj[key] is { } n ? Value<double>(n, key, "a number") : fallback;

        int dModel = Int("hidden_size");
        int nHeads = Int("num_attention_heads");
        Llama3RopeScaling? scaling = null;
        if (obj["rope_scaling"] is JsonObject rs)
        {
            double Scale(string key, double fallback) => rs[key] is { } n ? Value<double>(n, "rope_scaling." + key, "a number") : fallback;
            string type = (rs["rope_type"] ?? rs["type"]) is { } typeNode ? Value<string>(typeNode, "rope_scaling.rope_type", "a string") : "";
            if (type == "llama3")
                scaling = new Llama3RopeScaling(
                    Scale("factor", 8), Scale("low_freq_factor", 1), Scale("high_freq_factor", 4),
                    rs["original_max_position_embeddings"] is { } o ? Value<int>(o, "rope_scaling.original_max_position_embeddings", "an integer") : 8192);
            else if (type is not ("default" or ""))
                throw new NotSupportedException($"{source}: rope_scaling type '{type}' is not supported (supported: llama3)");
        }
        var eos = new List<int>();
        switch (obj["eos_token_id"])
        {
            case JsonArray arr: eos.AddRange(arr.Select((n, i) => Value<int>(n, $"eos_token_id[{i}]", "an integer token id"))); break;
            case JsonValue v: eos.Add(Value<int>(v, "eos_token_id", "an integer token id")); break;
            case JsonObject: throw new InvalidDataException($"{source}: 'eos_token_id' is not an integer token id or a list of them");
        }
        string Unsupported(string what) => $"{source}: {what} is not supported by Ponder's {archName} forward pass; loading it would compute something else";
        string? act = (obj["hidden_act"] ?? obj["hidden_activation"]) is JsonValue actNode && actNode.TryGetValue<string>(out var actName) ? actName : null;
        if (act is not (null or "silu" or "swish"))
            throw new NotSupportedException(Unsupported($"hidden_act '{act}' (only silu: the MLP is SwiGLU)"));
        if (obj["mlp_bias"] is JsonValue mb && mb.TryGetValue<bool>(out bool mlpBias) && mlpBias)
            throw new NotSupportedException(Unsupported("mlp_bias = true (biases on gate, up and down)"));
        // Llama, Mistral and Qwen3 put attention_bias on o_proj as well: a checkpoint that has o_proj.bias is refused
        // by the tensor check (TensorNames.CheckComplete), one without it is a Q/K/V-biased model Ponder runs.
        bool attentionBias = obj["attention_bias"] is JsonValue ab && Value<bool>(ab, "attention_bias", "true or false");
        if (obj["partial_rotary_factor"] is JsonValue pr && pr.TryGetValue<double>(out double partial) && partial != 1)
            throw new NotSupportedException(Unsupported($"partial_rotary_factor = {partial} (RoPE on part of each head)"));
        int maxPositions = Int("max_position_embeddings", 2048);
        // A sliding window (Mistral, Phi-3; Qwen2/3 when use_sliding_window is true) changes attention only past the
        // window: capping the context there keeps full attention exact.
        bool sliding = arch is Architecture.Qwen2 or Architecture.Qwen3
            ? obj["use_sliding_window"] is JsonValue usw && Value<bool>(usw, "use_sliding_window", "true or false")
            : obj["sliding_window"] is JsonValue;
        if (sliding && obj["sliding_window"] is JsonValue swNode && swNode.TryGetValue<long>(out long window) && window > 0 && window < maxPositions)
            maxPositions = (int)window;
        int sharedValueHead = Int("ponder_value_head", 0);
        if (sharedValueHead is not (0 or 1))
            throw new InvalidDataException($"{source}: 'ponder_value_head' = {sharedValueHead}; expected 0 (none) or 1 (one value row, value_head.weight [1, hidden_size])");
        int? numLabels = obj["num_labels"] is JsonValue nl ? Value<int>(nl, "num_labels", "an integer")
            : obj["id2label"] is JsonObject id2 ? id2.Count : null;

        return new ModelConfig
        {
            Architecture = arch,
            Head = head,
            // Qwen2ForProcessRewardModel's config leaves num_labels to transformers' default, 2.
            NumLabels = numLabels ?? (head == HeadKind.ProcessReward ? 2 : 1),
            Vocab = Int("vocab_size"),
            DModel = dModel,
            NLayers = Int("num_hidden_layers"),
            NHeads = nHeads,
            NKvHeads = Int("num_key_value_heads", nHeads),
            HeadDim = Int("head_dim", nHeads > 0 ? dModel / nHeads : 0),
            DFf = Int("intermediate_size"),
            RmsNormEps = (float)Num("rms_norm_eps", 1e-6),
            RopeTheta = Num("rope_theta", 10000),
            RopeScaling = scaling,
            MaxPositions = maxPositions,
            TiedEmbeddings = obj["tie_word_embeddings"] is JsonValue t && Value<bool>(t, "tie_word_embeddings", "true or false"),
            QkvBias = arch == Architecture.Qwen2 || attentionBias,
            QkNorm = arch == Architecture.Qwen3,
            BosTokenId = obj["bos_token_id"] is JsonValue b ? Value<int>(b, "bos_token_id", "an integer token id") : null,
            EosTokenIds = eos,
            SharedValueHead = sharedValueHead == 1,
        }.Validate(source);
    }

    /// <summary>Writes a Hugging Face <c>config.json</c> that <see cref="FromHuggingFaceJson"/> (and transformers) read back.</summary>
    public string ToHuggingFaceJson()
    {
        string arch = (Architecture, Head) switch
        {
            (Architecture.Qwen2, HeadKind.LanguageModel) => "Qwen2ForCausalLM",
            (Architecture.Qwen3, HeadKind.LanguageModel) => "Qwen3ForCausalLM",
            (Architecture.Phi3, HeadKind.LanguageModel) => "Phi3ForCausalLM",
            (Architecture.Mistral, HeadKind.LanguageModel) => "MistralForCausalLM",
            (Architecture.Qwen2, HeadKind.Value) => "Qwen2ForTokenClassification",
            (Architecture.Qwen2, HeadKind.ProcessReward) => "Qwen2ForProcessRewardModel",
            (_, HeadKind.Value) => "LlamaForTokenClassification",
            _ => "LlamaForCausalLM",
        };
        var obj = new JsonObject
        {
            ["architectures"] = new JsonArray(arch),
            ["model_type"] = Architecture.ToString().ToLowerInvariant(),
            ["vocab_size"] = Vocab,
            ["hidden_size"] = DModel,
            ["num_hidden_layers"] = NLayers,
            ["num_attention_heads"] = NHeads,
            ["num_key_value_heads"] = NKvHeads,
            ["head_dim"] = HeadDim,
            ["intermediate_size"] = DFf,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["max_position_embeddings"] = MaxPositions,
            ["tie_word_embeddings"] = TiedEmbeddings,
            ["attention_bias"] = QkvBias,
            ["hidden_act"] = "silu",
            ["torch_dtype"] = "float32",
        };
        if (Head != HeadKind.LanguageModel) obj["num_labels"] = NumLabels;
        if (SharedValueHead) obj["ponder_value_head"] = 1;
        if (BosTokenId is int bos) obj["bos_token_id"] = bos;
        if (EosTokenIds.Count == 1) obj["eos_token_id"] = EosTokenIds[0];
        else if (EosTokenIds.Count > 1) obj["eos_token_id"] = new JsonArray(EosTokenIds.Select(i => (JsonNode)i).ToArray());
        if (RopeScaling is { } s)
            obj["rope_scaling"] = new JsonObject
            {
                ["rope_type"] = "llama3", ["factor"] = s.Factor, ["low_freq_factor"] = s.LowFreqFactor,
                ["high_freq_factor"] = s.HighFreqFactor, ["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings,
            };
        return obj.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
