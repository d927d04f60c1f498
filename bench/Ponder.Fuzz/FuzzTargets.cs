using System.Text;
using Ponder.Hosting;
using Ponder.Models;
using Ponder.Models.Gguf;
using Ponder.Models.Safetensors;
using Ponder.Server;
using Ponder.Tokenization;

namespace Ponder.Fuzz;

/// <summary>An input made a parser fail in a way it must not: an exception other than its named domain error, or a domain error that does not name its file.</summary>
public sealed class FuzzFindingException(string harness, Exception inner)
    : Exception($"{harness}: {inner.GetType().FullName}: {inner.Message}", inner)
{
    /// <summary>The harness whose parser failed.</summary>
    public string Harness { get; } = harness;
}

/// <summary>
/// The fuzz targets: each takes one input (the bytes of a file or a request body), runs it through the loader or
/// parser a user's file or a client's request goes through, and then uses what it loaded (reads every tensor, encodes
/// and decodes a text, renders a conversation). The one expected outcome for a bad input is the parser's domain
/// exception (<see cref="InvalidDataException"/> / <see cref="NotSupportedException"/> naming the file,
/// <see cref="ChatTemplateException"/>, the server's <see cref="BadRequestException"/>); anything else is a finding.
/// The same code serves the fuzzer, the replay command and the regression tests.
/// </summary>
public static class FuzzTargets
{
    /// <summary>The harness names, as <c>bench/fuzz.sh</c> takes them.</summary>
    public static readonly string[] Names = ["gguf", "safetensors", "config", "tokenizer", "tokenizer-gguf", "tokenizer-model", "template", "request"];

    /// <summary>A valid config.json for the tiny model every file harness uses (its safetensors seed matches it).</summary>
    static readonly ModelConfig Tiny = new()
    {
        Vocab = 8, DModel = 8, NLayers = 1, NHeads = 2, NKvHeads = 1, HeadDim = 4, DFf = 16, TiedEmbeddings = true, MaxPositions = 64, EosTokenIds = [2],
    };

    static readonly ChatTurn[] Conversation = [new("user", "Q: 2+3*4"), new("assistant", "14"), new("user", "<|im_start|>again")];

    // A small Jinja template in the style of the real ones: the request harness renders chats through it.
    const string RequestTemplate =
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + '\\n' }}{% else %}{{ '<|' + m['role'] + '|>' + m['content'] | trim + '\\n' }}{% endif %}{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";

    static readonly Lazy<ChatTemplate> Template = new(() => ChatTemplate.Parse(RequestTemplate, "<s>", "</s>"));

    /// <summary>
    /// Runs <paramref name="input"/> through <paramref name="harness"/>. Returns null when the input was accepted,
    /// the domain exception when it was refused as it should be, and throws <see cref="FuzzFindingException"/> otherwise.
    /// </summary>
    /// <param name="workDir">A private folder for the files the file harnesses write (created if needed).</param>
    public static Exception? Run(string harness, byte[] input, string workDir)
    {
        Directory.CreateDirectory(workDir);
        try
        {
            _ = harness switch
            {
                "gguf" => Gguf(input, workDir),
                "safetensors" => Safetensors(input, workDir),
                "config" => Config(input),
                "tokenizer" => Tokenizer(input, workDir),
                "tokenizer-gguf" => TokenizerToGguf(input, workDir),
                "tokenizer-model" => SentencePieceModel(input, workDir),
                "template" => ChatTemplateInput(input),
                "request" => Request(input),
                _ => throw new ArgumentException($"unknown harness '{harness}' (known: {string.Join(", ", Names)})", nameof(harness)),
            };
            return null;
        }
        catch (ArgumentException e) when (e.ParamName == nameof(harness)) { throw; }
        catch (Exception e) when (IsDomainError(harness, e, workDir)) { return e; }
        catch (Exception e) { throw new FuzzFindingException(harness, e); }
    }

    /// <summary>
    /// Whether <paramref name="e"/> is the clean refusal <paramref name="harness"/>'s parser promises: the right type, and
    /// for a file, a message naming it (the file harnesses write under <paramref name="workDir"/>).
    /// </summary>
    public static bool IsDomainError(string harness, Exception e, string workDir) => harness switch
    {
        "gguf" or "safetensors" or "tokenizer" or "tokenizer-gguf" or "tokenizer-model" => e is InvalidDataException or NotSupportedException && e.Message.Contains(workDir, StringComparison.Ordinal),
        "config" => e is InvalidDataException or NotSupportedException && e.Message.StartsWith("config.json:", StringComparison.Ordinal),
        // A template's own raise_exception refusing the messages is the template working: an ArgumentException on 'messages'.
        "template" => e is ChatTemplateException || e is ArgumentException { ParamName: "messages", InnerException: Jinja.RaisedException },
        "request" => e is BadRequestException,
        _ => false,
    };

    static string Gguf(byte[] input, string dir)
    {
        string path = Path.Combine(dir, "model.gguf");
        File.WriteAllBytes(path, input);
        var (source, tokenizer) = PonderModel.OpenFiles(path);
        using (source) Use(source, tokenizer);
        return path;
    }

    static string Safetensors(byte[] input, string dir)
    {
        string config = Path.Combine(dir, "config.json");
        if (!File.Exists(config)) File.WriteAllText(config, ConfigJson(Tiny));
        File.WriteAllBytes(Path.Combine(dir, SafetensorsSource.SingleFile), input);
        var (source, tokenizer) = PonderModel.OpenFiles(dir);
        using (source) Use(source, tokenizer);
        return dir;
    }

    static string Config(byte[] input)
    {
        var config = ModelConfig.FromHuggingFaceJson(Encoding.UTF8.GetString(input), "config.json");
        _ = TensorNames.Expected(config).Count();
        return "config.json";
    }

    static string Tokenizer(byte[] input, string dir)
    {
        string path = WriteFile(dir, "json", "tokenizer.json", input);
        Use(null, TokenizerFactory.FromHuggingFace(path));
        return path;
    }

    /// <summary>
    /// Writes <paramref name="input"/> as <paramref name="name"/> in <paramref name="folder"/> under <paramref name="dir"/>:
    /// each tokenizer harness has its own folder, because the loaders read config files beside the tokenizer file
    /// and the safetensors harness writes a config.json into <paramref name="dir"/>.
    /// </summary>
    static string WriteFile(string dir, string folder, string name, byte[] input)
    {
        string path = Path.Combine(dir, folder, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, input);
        return path;
    }

    /// <summary>
    /// tokenizer.json through the GGUF export (<see cref="TokenizerFiles.ToGgufMetadata"/>); what it exports must load
    /// through the GGUF vocabulary loader as the same tokenizer (the same ids for the same text), else it is a finding.
    /// </summary>
    static string TokenizerToGguf(byte[] input, string dir)
    {
        string path = WriteFile(dir, "export", "tokenizer.json", input);
        Dictionary<string, object> metadata = TokenizerFiles.ToGgufMetadata(path);
        var json = TokenizerFactory.FromHuggingFace(path);
        ITokenizer gguf;
        try
        {
            // A name without the work folder: the GGUF loader refusing an export is never the clean refusal of a bad input.
            gguf = TokenizerFactory.FromGgufMetadata(metadata, "the exported GGUF metadata")
                ?? throw new InvalidOperationException("the export has no vocabulary");
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException)
        {
            throw new InvalidOperationException($"the GGUF loader refuses what {path} exported: {e.Message}", e);
        }
        if (gguf.VocabSize != json.VocabSize || gguf.BosId != json.BosId || gguf.AddBos != json.AddBos
            || gguf.EosIds.FirstOrDefault(-1) != json.EosIds.FirstOrDefault(-1))
            throw new InvalidOperationException($"the export differs: vocab {gguf.VocabSize} vs {json.VocabSize}, bos {gguf.BosId} vs {json.BosId}, add_bos {gguf.AddBos} vs {json.AddBos}, eos {gguf.EosIds.FirstOrDefault(-1)} vs {json.EosIds.FirstOrDefault(-1)}");
        foreach (bool ordinary in new[] { false, true })
        {
            int[] expected = ordinary ? json.EncodeOrdinary(SampleText) : json.Encode(SampleText);
            int[] actual = ordinary ? gguf.EncodeOrdinary(SampleText) : gguf.Encode(SampleText);
            if (!expected.AsSpan().SequenceEqual(actual))
                throw new InvalidOperationException($"the export encodes differently{(ordinary ? " (ordinary)" : "")}: [{string.Join(' ', actual)}] vs tokenizer.json's [{string.Join(' ', expected)}]");
            if (gguf.Decode(actual) != json.Decode(expected))
                throw new InvalidOperationException("the export decodes differently");
        }
        Use(null, gguf);
        return path;
    }

    /// <summary>A SentencePiece tokenizer.model (protobuf) through <see cref="TokenizerFactory.FromSentencePiece"/>, then encode/decode.</summary>
    static string SentencePieceModel(byte[] input, string dir)
    {
        string path = WriteFile(dir, "spm", "tokenizer.model", input);
        Use(null, TokenizerFactory.FromSentencePiece(path));
        return path;
    }

    static string ChatTemplateInput(byte[] input)
    {
        var template = ChatTemplate.Parse(Encoding.UTF8.GetString(input), "<s>", "</s>");
        _ = template.RenderPrompt(Conversation);
        return "template";
    }

    static string Request(byte[] input)
    {
        var limits = new ServerLimits();
        // Both endpoints read the same body: the fields they share and the ones only one reads all get exercised.
        foreach (bool chat in new[] { false, true })
        {
            try
            {
                using var body = new MemoryStream(input, writable: false);
                _ = OpenAiRequests.ParseBodyAsync(body, e => chat ? OpenAiRequests.Chat(e, Template.Value, 256, limits) : OpenAiRequests.Completion(e, 256, limits), CancellationToken.None)
                    .GetAwaiter().GetResult();
            }
            catch (BadRequestException) when (!chat) { }
        }
        return "request";
    }

    const string SampleText = "Q: 12*3-7 héllo <|im_end|> 😀";

    /// <summary>Uses what was loaded as an engine would: every tensor converted, a text encoded and decoded.</summary>
    static void Use(ITensorSource? source, ITokenizer? tokenizer)
    {
        if (source is not null)
        {
            foreach (var (name, info) in source.Tensors)
            {
                if (info.ElementCount > 1 << 20) continue; // a header may claim a huge tensor the file does not hold: refused before here, but never allocate for it
                source.ReadF32(name, new float[info.ElementCount]);
            }
        }
        if (tokenizer is not null)
        {
            int[] ids = tokenizer.Encode(SampleText, addSpecialTokens: true);
            _ = tokenizer.Decode(ids);
            _ = tokenizer.EncodeOrdinary("<s> a");
            foreach (int id in ids) _ = tokenizer.TokenBytes(id);
        }
    }

    /// <summary>The SentencePiece tests' hand-built BPE: 0 &lt;unk&gt;, 1 &lt;s&gt;, 2 &lt;/s&gt;, the 256 byte pieces, then "▁", "h", "i", "▁h", "▁hi", "t", "▁t" scored for their merges.</summary>
    static List<(string Text, float Score, PieceType Type)> TinySentencePieces()
    {
        var pieces = new List<(string Text, float Score, PieceType Type)> { ("<unk>", 0, PieceType.Unknown), ("<s>", 0, PieceType.Control), ("</s>", 0, PieceType.Control) };
        for (int b = 0; b < 256; b++) pieces.Add(($"<0x{b:X2}>", 0, PieceType.Byte));
        string[] tail = ["\u2581", "h", "i", "\u2581h", "\u2581hi", "t", "\u2581t"];
        float[] tailScores = [-100, -100, -100, -1, -2, -100, -3];
        for (int i = 0; i < tail.Length; i++) pieces.Add((tail[i], tailScores[i], PieceType.Normal));
        return pieces;
    }

    /// <summary>The same pieces as a Llama-2-style tokenizer.json (BPE with byte fallback, Prepend/Replace normalizer), as the tokenizer tests write it.</summary>
    static string Llama2StyleJson()
    {
        var vocab = new System.Text.Json.Nodes.JsonObject();
        var pieces = TinySentencePieces();
        for (int i = 0; i < pieces.Count; i++) vocab[pieces[i].Text] = i;
        return $$$"""
            {"added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true}, {"id": 2, "content": "</s>", "special": true}],
             "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
             "pre_tokenizer": null,
             "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
             "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
             "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true, "vocab": {{{vocab.ToJsonString()}}}, "merges": ["\u2581 h", "\u2581h i", "\u2581 t"]}}
            """;
    }

    static byte[] SentencePieceBytes(List<(string Text, float Score, PieceType Type)> pieces, bool byteFallback)
    {
        var proto = new SentencePieceModelProto { ByteFallback = byteFallback };
        foreach (var (text, score, type) in pieces) proto.Pieces.Add(new(text, score, type));
        return proto.Write();
    }

    /// <summary>config.json text for <paramref name="config"/> (the fields the tiny model needs).</summary>
    static string ConfigJson(ModelConfig c) =>
        $$"""
        {"architectures": ["LlamaForCausalLM"], "vocab_size": {{c.Vocab}}, "hidden_size": {{c.DModel}}, "num_hidden_layers": {{c.NLayers}},
         "num_attention_heads": {{c.NHeads}}, "num_key_value_heads": {{c.NKvHeads}}, "head_dim": {{c.HeadDim}}, "intermediate_size": {{c.DFf}},
         "rms_norm_eps": 1e-5, "rope_theta": 10000, "max_position_embeddings": {{c.MaxPositions}}, "tie_word_embeddings": true, "hidden_act": "silu",
         "bos_token_id": 1, "eos_token_id": 2}
        """;

    /// <summary>Writes a small valid seed corpus for <paramref name="harness"/> into <paramref name="dir"/>, each seed checked to load cleanly.</summary>
    public static void WriteSeeds(string harness, string dir, string repoRoot)
    {
        Directory.CreateDirectory(dir);
        var seeds = new List<(string Name, byte[] Bytes)>();
        string scratch = Path.Combine(Path.GetTempPath(), $"ponder-fuzz-seeds-{Environment.ProcessId}");
        Directory.CreateDirectory(scratch);
        try
        {
            switch (harness)
            {
                case "gguf":
                {
                    var tensors = RandomModels.Create(Tiny, seed: 1);
                    string[] tokens = ["<unk>", "<s>", "</s>", "\u2581", "a", "b", "\u2581a", "ab"];
                    var meta = new Dictionary<string, object>
                    {
                        ["tokenizer.ggml.model"] = "llama",
                        ["tokenizer.ggml.tokens"] = tokens,
                        ["tokenizer.ggml.scores"] = new float[] { 0, 0, 0, -1, -2, -3, -4, -5 },
                        ["tokenizer.ggml.token_type"] = new[] { 2, 3, 3, 1, 1, 1, 1, 1 },
                        ["tokenizer.ggml.bos_token_id"] = 1u,
                        ["tokenizer.ggml.eos_token_id"] = 2u,
                    };
                    foreach (var dtype in new[] { Tensors.DType.F32, Tensors.DType.F16, Tensors.DType.Q8_0 })
                    {
                        string path = Path.Combine(scratch, $"{dtype}.gguf");
                        GgufWriter.Write(path, Tiny, tensors, dtype, meta);
                        seeds.Add(($"tiny-{dtype}.gguf", File.ReadAllBytes(path)));
                    }
                    break;
                }
                case "safetensors":
                {
                    var tensors = RandomModels.Create(Tiny, seed: 1);
                    foreach (var dtype in new[] { Tensors.DType.F32, Tensors.DType.BF16 })
                    {
                        string folder = Path.Combine(scratch, dtype.ToString());
                        SafetensorsWriter.WriteFolder(folder, Tiny, tensors, dtype);
                        seeds.Add(($"tiny-{dtype}.safetensors", File.ReadAllBytes(Path.Combine(folder, SafetensorsSource.SingleFile))));
                    }
                    break;
                }
                case "config":
                    seeds.Add(("tiny.json", Encoding.UTF8.GetBytes(ConfigJson(Tiny))));
                    foreach (string model in new[] { "policy-small", "prm-small" })
                        seeds.Add(($"{model}.json", File.ReadAllBytes(Path.Combine(repoRoot, "weights", model, "config.json"))));
                    seeds.Add(("qwen3-rope.json", Encoding.UTF8.GetBytes("""
                        {"architectures": ["Qwen3ForCausalLM"], "vocab_size": 64, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                         "num_key_value_heads": 1, "head_dim": 8, "intermediate_size": 32, "max_position_embeddings": 128, "tie_word_embeddings": false,
                         "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
                         "sliding_window": 32, "use_sliding_window": true, "eos_token_id": [1, 2]}
                        """)));
                    break;
                case "tokenizer":
                    seeds.Add(("tiny-bytelevel.json", File.ReadAllBytes(Path.Combine(repoRoot, "tests", "Ponder.Tests", "Tokenization", "Data", "tiny-bytelevel.json"))));
                    seeds.Add(("policy-small.json", File.ReadAllBytes(Path.Combine(repoRoot, "weights", "policy-small", "tokenizer.json"))));
                    seeds.Add(("llama2-style.json", Encoding.UTF8.GetBytes(Llama2StyleJson())));
                    break;
                case "tokenizer-gguf":
                    // The byte-level tokenizers the export supports: the tests' hand-built one and a shipped model's.
                    seeds.Add(("tiny-bytelevel.json", File.ReadAllBytes(Path.Combine(repoRoot, "tests", "Ponder.Tests", "Tokenization", "Data", "tiny-bytelevel.json"))));
                    seeds.Add(("policy-small.json", File.ReadAllBytes(Path.Combine(repoRoot, "weights", "policy-small", "tokenizer.json"))));
                    break;
                case "tokenizer-model":
                    // The SentencePiece tests' hand-built BPE, and the gguf seed's eight pieces without byte fallback; written by
                    // the same protobuf writer the GGUF "llama" path uses.
                    seeds.Add(("tiny-bpe.model", SentencePieceBytes(TinySentencePieces(), byteFallback: true)));
                    string[] small = ["<unk>", "<s>", "</s>", "\u2581", "a", "b", "\u2581a", "ab"];
                    PieceType[] smallTypes = [PieceType.Unknown, PieceType.Control, PieceType.Control, PieceType.Normal, PieceType.Normal, PieceType.Normal, PieceType.Normal, PieceType.Normal];
                    seeds.Add(("small-nofallback.model", SentencePieceBytes(small.Select((t, i) => (t, -(float)i, smallTypes[i])).ToList(), byteFallback: false)));
                    break;
                case "template":
                    foreach (string folder in Directory.GetDirectories(Path.Combine(repoRoot, "tests", "Ponder.Tests", "Hosting", "Data", "ChatTemplates")))
                    {
                        string config = Path.Combine(folder, "tokenizer_config.json");
                        if (!File.Exists(config)) continue;
                        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(config));
                        if (doc.RootElement.TryGetProperty("chat_template", out var t) && t.ValueKind == System.Text.Json.JsonValueKind.String)
                            seeds.Add((Path.GetFileName(folder) + ".jinja", Encoding.UTF8.GetBytes(t.GetString()!)));
                    }
                    seeds.Add(("request.jinja", Encoding.UTF8.GetBytes(RequestTemplate)));
                    break;
                case "request":
                    seeds.Add(("completion.json", Encoding.UTF8.GetBytes("""{"model":"m","prompt":"Q: 2+3\n","max_tokens":16,"temperature":0.7,"top_p":0.9,"stop":["\n\n"],"seed":3,"stream":true}""")));
                    seeds.Add(("chat.json", Encoding.UTF8.GetBytes("""{"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_completion_tokens":8,"n":1,"stream_options":{"include_usage":true}}""")));
                    seeds.Add(("ponder.json", Encoding.UTF8.GetBytes("""{"prompt":"Q","messages":[{"role":"user","content":"Q"}],"ponder":{"strategy":"beam","n":8,"beam_width":4,"budget_flops":2e9,"budget_generations":16,"prm":"default"},"presence_penalty":0.5,"frequency_penalty":0,"logprobs":null}""")));
                    break;
                default:
                    throw new ArgumentException($"unknown harness '{harness}' (known: {string.Join(", ", Names)})", nameof(harness));
            }
            foreach (var (name, bytes) in seeds)
            {
                // The request seeds each suit one endpoint, so the other refuses them.
                if (Run(harness, bytes, Path.Combine(scratch, "check")) is { } refused && harness != "request")
                    throw new InvalidOperationException($"seed {name} of {harness} is refused: {refused.Message}");
                File.WriteAllBytes(Path.Combine(dir, name), bytes);
            }
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }
}
