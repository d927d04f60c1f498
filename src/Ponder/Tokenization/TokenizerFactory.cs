using System.Collections;

namespace Ponder.Tokenization;

/// <summary>Builds an <see cref="ITokenizer"/> from a model's files or from GGUF metadata.</summary>
public static class TokenizerFactory
{
    /// <summary>
    /// The tokenizer of a model folder: tokenizer.json when present (preferred: it carries added tokens), else tokenizer.model.
    /// </summary>
    /// <exception cref="FileNotFoundException">The folder has neither file.</exception>
    public static ITokenizer FromModelFolder(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (File.Exists(Path.Combine(folder, "tokenizer.json"))) return FromHuggingFace(folder);
        if (File.Exists(Path.Combine(folder, "tokenizer.model"))) return FromSentencePiece(folder);
        throw new FileNotFoundException($"{folder}: no tokenizer.json or tokenizer.model in the model folder", Path.Combine(folder, "tokenizer.json"));
    }

    /// <summary>
    /// Loads a Hugging Face tokenizer.json (a folder holding one, or the file itself): byte-level BPE, or the
    /// Llama-2-style BPE with byte fallback and "▁" spaces. BOS/EOS come from tokenizer_config.json,
    /// generation_config.json and config.json beside it when present, else from recognised added-token names.
    /// </summary>
    /// <exception cref="FileNotFoundException">No tokenizer.json there.</exception>
    /// <exception cref="InvalidDataException">Malformed file (invalid JSON, merges naming unknown tokens...).</exception>
    /// <exception cref="NotSupportedException">A model type or component we do not implement (Unigram, WordPiece...).</exception>
    public static ITokenizer FromHuggingFace(string folderOrFile)
    {
        ArgumentException.ThrowIfNullOrEmpty(folderOrFile);
        string path = Directory.Exists(folderOrFile) ? Path.Combine(folderOrFile, "tokenizer.json") : folderOrFile;
        return HuggingFaceTokenizerJson.Load(path);
    }

    /// <summary>Loads a SentencePiece BPE tokenizer.model (a folder holding one, or the file itself), e.g. Llama 2's.</summary>
    public static ITokenizer FromSentencePiece(string folderOrFile)
    {
        ArgumentException.ThrowIfNullOrEmpty(folderOrFile);
        string path = Directory.Exists(folderOrFile) ? Path.Combine(folderOrFile, "tokenizer.model") : folderOrFile;
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        bool hasConfig = new[] { "tokenizer_config.json", "generation_config.json", "config.json" }.Any(f => File.Exists(Path.Combine(folder, f)));
        return SentencePieceBpeTokenizer.FromModelFile(path,
            hasConfig ? idOf => SpecialTokenIds.Resolve(folder, idOf, templateBos: null, addBosDefault: true) : null);
    }

    /// <summary>
    /// The tokenizer a GGUF file's metadata describes: tokenizer.ggml.model "gpt2" (byte-level BPE: tokens, merges,
    /// token_type, pre) or "llama" (SentencePiece: tokens, scores, token_type); null for "no_vocab" (the caller feeds ids).
    /// </summary>
    /// <param name="metadata">Key/value metadata as the GGUF reader returns it (ids of any integer type; arrays typed or object[]).</param>
    /// <param name="source">The GGUF file name, used in error messages.</param>
    public static ITokenizer? FromGgufMetadata(IReadOnlyDictionary<string, object> metadata, string source)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        string model = GgufString(metadata, "tokenizer.ggml.model", source)
            ?? throw new InvalidDataException($"{source}: GGUF metadata has no tokenizer.ggml.model");
        switch (model)
        {
            case "no_vocab":
                return null;
            case "gpt2":
                return FromGgufGpt2(metadata, source);
            case "llama":
                return FromGgufLlama(metadata, source);
            default:
                throw new NotSupportedException($"{source}: tokenizer.ggml.model \"{model}\" is not supported (gpt2, llama and no_vocab are)");
        }
    }

    private static ByteLevelBpeTokenizer FromGgufGpt2(IReadOnlyDictionary<string, object> metadata, string source)
    {
        string[] tokens = GgufArray<string>(metadata, "tokenizer.ggml.tokens", source, required: true)!;
        string[] mergeLines = GgufArray<string>(metadata, "tokenizer.ggml.merges", source, required: false) ?? [];
        int[] types = GgufArray<int>(metadata, "tokenizer.ggml.token_type", source, required: false) ?? Enumerable.Repeat(1, tokens.Length).ToArray();
        if (types.Length != tokens.Length)
            throw new InvalidDataException($"{source}: tokenizer.ggml.token_type has {types.Length} entries, tokenizer.ggml.tokens has {tokens.Length}");

        var vocab = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        var added = new List<AddedToken>();
        for (int i = 0; i < tokens.Length; i++)
        {
            if (types[i] is (int)PieceType.Control or (int)PieceType.UserDefined)
                added.Add(new AddedToken(tokens[i], i, types[i] == (int)PieceType.Control));
            else
                vocab.TryAdd(tokens[i], i);
        }
        var merges = new List<(string, string)>(mergeLines.Length);
        for (int i = 0; i < mergeLines.Length; i++)
        {
            string[] parts = mergeLines[i].Split(' ');
            if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                throw new InvalidDataException($"{source}: tokenizer.ggml.merges[{i}] \"{mergeLines[i]}\" is not two tokens separated by one space");
            merges.Add((parts[0], parts[1]));
        }

        string pre = GgufString(metadata, "tokenizer.ggml.pre", source) ?? "default";
        string[] patterns = pre switch
        {
            "default" => SplitPreTokenizer.LlamaCppDefaultPatterns,
            "gpt2" or "gpt-2" => [SplitPreTokenizer.Gpt2Pattern],
            "llama3" or "llama-bpe" or "llama-v3" or "smaug-bpe" => [SplitPreTokenizer.Llama3Pattern],
            "qwen2" => [SplitPreTokenizer.Qwen2Pattern],
            "smollm" => [@"\p{N}", SplitPreTokenizer.Gpt2Pattern],
            _ => throw new NotSupportedException($"{source}: tokenizer.ggml.pre \"{pre}\" is not supported (default, gpt-2, llama-bpe, qwen2, smollm are)"),
        };
        var stages = patterns.Select(p => HuggingFaceTokenizerJson.MakeRegex(source, p));

        int? bos = GgufId(metadata, "tokenizer.ggml.bos_token_id", source);
        var eos = new[] { "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id" }
            .Select(k => GgufId(metadata, k, source)).OfType<int>().Distinct().ToArray();
        bool addBos = GgufBool(metadata, "tokenizer.ggml.add_bos_token") ?? false;
        var ids = new SpecialTokenIds(bos, eos, addBos);
        return new ByteLevelBpeTokenizer(source, vocab, merges, added, new SplitPreTokenizer(added.Select(a => a.Content), stages), ids);
    }

    private static SentencePieceBpeTokenizer FromGgufLlama(IReadOnlyDictionary<string, object> metadata, string source)
    {
        string[] tokens = GgufArray<string>(metadata, "tokenizer.ggml.tokens", source, required: true)!;
        float[] scores = GgufArray<float>(metadata, "tokenizer.ggml.scores", source, required: false) ?? new float[tokens.Length];
        int[] types = GgufArray<int>(metadata, "tokenizer.ggml.token_type", source, required: false) ?? Enumerable.Repeat(1, tokens.Length).ToArray();
        if (scores.Length != tokens.Length || types.Length != tokens.Length)
            throw new InvalidDataException($"{source}: tokenizer.ggml.tokens ({tokens.Length}), scores ({scores.Length}) and token_type ({types.Length}) differ in length");
        int unk = GgufId(metadata, "tokenizer.ggml.unknown_token_id", source) ?? 0;
        int bos = GgufId(metadata, "tokenizer.ggml.bos_token_id", source) ?? 1;
        int eos = GgufId(metadata, "tokenizer.ggml.eos_token_id", source) ?? 2;
        var eosIds = new[] { eos }.Concat(new[] { "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id" }
            .Select(k => GgufId(metadata, k, source)).OfType<int>()).Distinct().ToArray();
        foreach (int id in eosIds.Append(bos).Append(unk))
        {
            if (id < 0 || id >= tokens.Length) throw new InvalidDataException($"{source}: special token id {id} is outside the vocabulary [0, {tokens.Length})");
        }
        bool addBos = GgufBool(metadata, "tokenizer.ggml.add_bos_token") ?? true;
        bool addPrefix = GgufBool(metadata, "tokenizer.ggml.add_space_prefix") ?? true;
        return SentencePieceBpeTokenizer.FromPieces(source, tokens, scores, types, unk, bos, eos, eosIds, addBos, addPrefix);
    }

    private static string? GgufString(IReadOnlyDictionary<string, object> metadata, string key, string source)
    {
        if (!metadata.TryGetValue(key, out object? value)) return null;
        return value as string ?? throw new InvalidDataException($"{source}: GGUF key {key} is a {value.GetType().Name}, expected a string");
    }

    private static bool? GgufBool(IReadOnlyDictionary<string, object> metadata, string key) =>
        metadata.TryGetValue(key, out object? value) && value is bool b ? b : null;

    private static int? GgufId(IReadOnlyDictionary<string, object> metadata, string key, string source)
    {
        if (!metadata.TryGetValue(key, out object? value)) return null;
        try
        {
            return Convert.ToInt32(value, System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is InvalidCastException or FormatException or OverflowException)
        {
            throw new InvalidDataException($"{source}: GGUF key {key} = {value} is not a token id", ex);
        }
    }

    /// <summary>Reads a typed array (string[], int[], uint[], float[]...) or an object[]/IList defensively.</summary>
    private static T[]? GgufArray<T>(IReadOnlyDictionary<string, object> metadata, string key, string source, bool required)
    {
        if (!metadata.TryGetValue(key, out object? value))
            return required ? throw new InvalidDataException($"{source}: GGUF metadata has no {key}") : null;
        if (value is T[] typed) return typed;
        if (value is not IList list || value is string)
            throw new InvalidDataException($"{source}: GGUF key {key} is a {value.GetType().Name}, expected an array");
        var result = new T[list.Count];
        for (int i = 0; i < list.Count; i++)
        {
            object? item = list[i];
            try
            {
                result[i] = item switch
                {
                    T t => t,
                    null => throw new InvalidCastException("null element"),
                    _ when typeof(T) == typeof(string) => throw new InvalidCastException($"{item.GetType().Name} is not a string"),
                    _ => (T)Convert.ChangeType(item, typeof(T), System.Globalization.CultureInfo.InvariantCulture),
                };
            }
            catch (Exception ex) when (ex is InvalidCastException or FormatException or OverflowException)
            {
                throw new InvalidDataException($"{source}: GGUF key {key}[{i}] = {item} cannot be read as {typeof(T).Name}", ex);
            }
        }
        return result;
    }
}
