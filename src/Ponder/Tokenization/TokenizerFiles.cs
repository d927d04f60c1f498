using System.Text.Json;
using System.Text.Json.Nodes;

namespace Ponder.Tokenization;

/// <summary>Writes tokenizer files for Ponder's own models (a pure byte-level vocabulary) and exports them to GGUF metadata.</summary>
public static class TokenizerFiles
{
    /// <summary>The BOS token name that <see cref="WriteByteLevel"/> wires into the post-processor when listed.</summary>
    public const string BosToken = "<|bos|>";

    /// <summary>
    /// Writes a standard Hugging Face tokenizer.json for a byte-level vocabulary: ids 0..255 are the 256 bytes (in
    /// GPT-2's byte-to-unicode spelling, so id == byte value), no merges, then <paramref name="specialTokens"/> as
    /// ids 256, 257... When "&lt;|bos|&gt;" is among them, a TemplateProcessing post-processor prepends it.
    /// </summary>
    public static void WriteByteLevel(string tokenizerJsonPath, IReadOnlyList<string> specialTokens)
    {
        ArgumentException.ThrowIfNullOrEmpty(tokenizerJsonPath);
        ArgumentNullException.ThrowIfNull(specialTokens);
        var vocab = new JsonObject();
        for (int b = 0; b < 256; b++) vocab[ByteLevelAlphabet.ByteToChar((byte)b).ToString()] = b;
        var added = new JsonArray();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < specialTokens.Count; i++)
        {
            string token = specialTokens[i];
            if (string.IsNullOrEmpty(token) || !seen.Add(token))
                throw new ArgumentException($"special token {i} (\"{token}\") is empty or repeated", nameof(specialTokens));
            if (token.Length == 1 && ByteLevelAlphabet.TryCharToByte(token[0], out _))
                throw new ArgumentException($"special token \"{token}\" collides with a byte token", nameof(specialTokens));
            added.Add(new JsonObject
            {
                ["id"] = 256 + i, ["content"] = token, ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
            });
        }
        JsonNode? post = null;
        int bosIndex = specialTokens.ToList().IndexOf(BosToken);
        if (bosIndex >= 0)
        {
            JsonObject Special() => new() { ["SpecialToken"] = new JsonObject { ["id"] = BosToken, ["type_id"] = 0 } };
            JsonObject Seq(string id, int typeId) => new() { ["Sequence"] = new JsonObject { ["id"] = id, ["type_id"] = typeId } };
            post = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(Special(), Seq("A", 0)),
                ["pair"] = new JsonArray(Special(), Seq("A", 0), Seq("B", 1)),
                ["special_tokens"] = new JsonObject
                {
                    [BosToken] = new JsonObject { ["id"] = BosToken, ["ids"] = new JsonArray(256 + bosIndex), ["tokens"] = new JsonArray(BosToken) },
                },
            };
        }
        JsonObject ByteLevel() => new() { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = ByteLevel(),
            ["post_processor"] = post,
            ["decoder"] = ByteLevel(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocab, ["merges"] = new JsonArray(),
            },
        };
        string? dir = Path.GetDirectoryName(Path.GetFullPath(tokenizerJsonPath));
        if (dir is not null) Directory.CreateDirectory(dir);
        File.WriteAllText(tokenizerJsonPath, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>
    /// GGUF tokenizer metadata (llama.cpp's "gpt2" BPE) for a byte-level tokenizer.json: tokenizer.ggml.model, .pre
    /// (the llama.cpp name of the same pre-tokenizer: "gpt-2" for a plain ByteLevel one, as <see cref="WriteByteLevel"/> writes),
    /// .tokens (string[]), .token_type (int[]: 1 normal, 3 control, 4 user-defined), .merges (string[]),
    /// .bos_token_id / .eos_token_id / .padding_token_id (uint) and .add_bos_token (bool).
    /// </summary>
    public static Dictionary<string, object> ToGgufMetadata(string tokenizerJsonPath)
    {
        if (TokenizerFactory.FromHuggingFace(tokenizerJsonPath) is not ByteLevelBpeTokenizer tokenizer)
            throw new NotSupportedException($"{tokenizerJsonPath}: only byte-level BPE tokenizers can be exported as GGUF \"gpt2\" metadata");
        string pre = tokenizer.PreTokenizer.LlamaCppPreName()
            ?? throw new NotSupportedException($"{tokenizerJsonPath}: its pre-tokenizer has no llama.cpp equivalent (gpt-2, llama-bpe, qwen2, smollm, default)");
        if (tokenizer.AddPrefixSpace)
            throw new NotSupportedException($"{tokenizerJsonPath}: pre_tokenizer add_prefix_space has no GGUF \"gpt2\" equivalent (llama.cpp would encode without the leading space)");
        // The same checked reads as the loader: a malformed field has already been refused by name above.
        using JsonDocument doc = HuggingFaceTokenizerJson.ParseJson(tokenizerJsonPath);
        var (_, vocab, merges, added) = HuggingFaceTokenizerJson.ReadBpe(tokenizerJsonPath, doc.RootElement);

        var tokens = new string?[tokenizer.VocabSize];
        var types = new int[tokenizer.VocabSize];
        foreach (var (token, id) in vocab)
        {
            tokens[id] = token;
            types[id] = (int)PieceType.Normal;
        }
        for (int i = 0; i < added.Count; i++)
        {
            AddedToken a = added[i];
            // Hugging Face lets an added token share an id with a different vocabulary token (both encode to it); GGUF has one token per id.
            if (tokens[a.Id] is { } token && types[a.Id] == (int)PieceType.Normal && token != a.Content)
                throw new InvalidDataException($"{tokenizerJsonPath}: added_tokens[{i}] \"{a.Content}\" has id {a.Id}, which model.vocab gives to \"{token}\"; GGUF has one token per id");
            tokens[a.Id] = a.Content;
            types[a.Id] = tokenizer.IsSpecial(a.Id) ? (int)PieceType.Control : (int)PieceType.UserDefined;
        }
        for (int i = 0; i < tokens.Length; i++)
        {
            if (tokens[i] is null) throw new InvalidDataException($"{tokenizerJsonPath}: no model.vocab or added_tokens entry has id {i}; GGUF needs a dense vocabulary");
        }

        var metadata = new Dictionary<string, object>
        {
            ["tokenizer.ggml.model"] = "gpt2",
            ["tokenizer.ggml.pre"] = pre,
            ["tokenizer.ggml.tokens"] = tokens.Select(t => t!).ToArray(),
            ["tokenizer.ggml.token_type"] = types,
            ["tokenizer.ggml.merges"] = merges.Select(m => m.Left + " " + m.Right).ToArray(),
            ["tokenizer.ggml.add_bos_token"] = tokenizer.AddBos,
        };
        if (tokenizer.BosId is int bos) metadata["tokenizer.ggml.bos_token_id"] = (uint)bos;
        if (tokenizer.EosIds.Count > 0) metadata["tokenizer.ggml.eos_token_id"] = (uint)tokenizer.EosIds[0];
        if (tokenizer.TokenToId("<|pad|>") is int pad) metadata["tokenizer.ggml.padding_token_id"] = (uint)pad;
        return metadata;
    }
}
