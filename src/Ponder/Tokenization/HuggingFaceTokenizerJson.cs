using System.Text.Json;
using Ponder.Models;
using System.Text.RegularExpressions;

namespace Ponder.Tokenization;

/// <summary>Reads a Hugging Face tokenizer.json (model type BPE) into a byte-level or SentencePiece-style tokenizer.</summary>
internal static class HuggingFaceTokenizerJson
{
    public static ITokenizer Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"tokenizer file not found: {path}", path);
        using JsonDocument doc = ParseJson(path);
        JsonElement root = doc.RootElement;
        var (model, vocab, merges, added) = ReadBpe(path, root);
        JsonElement normalizer = Get(root, "normalizer");
        JsonElement preTokenizer = Get(root, "pre_tokenizer");
        JsonElement decoder = Get(root, "decoder");
        string? templateBos = TemplateBos(Get(root, "post_processor"));

        var idOf = IdLookup(vocab, added);
        int vocabSize = Math.Max(vocab.Count == 0 ? -1 : vocab.Values.Max(), added.Count == 0 ? -1 : added.Max(a => a.Id)) + 1;
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;

        bool byteFallback = model.TryGetProperty("byte_fallback", out JsonElement bf) && bf.ValueKind == JsonValueKind.True;
        bool metaspace = Types(normalizer).Concat(Types(preTokenizer)).Concat(Types(decoder)).Any(x => x is "Metaspace" or "Prepend" or "Replace");
        if (byteFallback || metaspace)
        {
            SpecialTokenIds ids = SpecialTokenIds.Resolve(folder, idOf, templateBos, addBosDefault: true, vocabSize);
            return SentencePieceBpeTokenizer.FromHuggingFaceBpe(path, vocab, merges, added, model, normalizer, preTokenizer, ids);
        }
        if (!Types(preTokenizer).Concat(Types(decoder)).Contains("ByteLevel"))
            throw new NotSupportedException($"{path}: BPE without a ByteLevel pre-tokenizer/decoder or SentencePiece-style byte fallback is not supported");

        var stages = new List<Regex>();
        bool addPrefixSpace = false;
        CollectStages(path, preTokenizer, stages, ref addPrefixSpace);
        bool nfc = false;
        foreach (JsonElement n in Flatten(normalizer, "normalizers"))
        {
            string nType = TypeOf(n);
            if (nType == "NFC") nfc = true;
            else throw new NotSupportedException($"{path}: normalizer \"{nType}\" is not supported for byte-level BPE (only NFC)");
        }
        SpecialTokenIds special = SpecialTokenIds.Resolve(folder, idOf, templateBos, addBosDefault: false, vocabSize);
        return new ByteLevelBpeTokenizer(path, vocab, merges, added, new SplitPreTokenizer(added.Select(a => a.Content), stages), special, nfc, addPrefixSpace);
    }

    internal static JsonDocument ParseJson(string path)
    {
        return JsonFile.Parse(File.ReadAllBytes(path), path, new JsonDocumentOptions { AllowTrailingCommas = true, MaxDepth = 256 });
    }

    /// <summary>
    /// The BPE model of a parsed tokenizer.json, every field checked (an error names the file and the field): the
    /// "model" object, its vocab, its merges, and the root's added_tokens. The loader and the GGUF export share it.
    /// </summary>
    internal static (JsonElement Model, Dictionary<string, int> Vocab, List<(string Left, string Right)> Merges, List<AddedToken> Added) ReadBpe(string path, JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out JsonElement model) || model.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{path}: no \"model\" object; not a Hugging Face tokenizer.json");
        string type = "BPE";
        if (model.TryGetProperty("type", out JsonElement t))
        {
            type = t.ValueKind == JsonValueKind.String ? t.GetString()! : throw new InvalidDataException($"{path}: model.type is a {t.ValueKind}, not a string");
        }
        if (type != "BPE")
            throw new NotSupportedException($"{path}: model type \"{type}\" is not supported (only BPE: byte-level or SentencePiece-style)");
        return (model, ReadVocab(path, model), ReadMerges(path, model), ReadAddedTokens(path, root));
    }

    internal static Func<string, int?> IdLookup(IReadOnlyDictionary<string, int> vocab, IReadOnlyList<AddedToken> added)
    {
        var map = new Dictionary<string, int>(vocab, StringComparer.Ordinal);
        foreach (AddedToken a in added) map[a.Content] = a.Id;
        return name => map.TryGetValue(name, out int id) ? id : null;
    }

    private static Dictionary<string, int> ReadVocab(string path, JsonElement model)
    {
        if (!model.TryGetProperty("vocab", out JsonElement v) || v.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{path}: model.vocab is missing or not an object");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (JsonProperty p in v.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0)
                throw new InvalidDataException($"{path}: model.vocab[\"{p.Name}\"] is not a non-negative integer id");
            vocab[p.Name] = id;
        }
        return vocab;
    }

    private static List<(string, string)> ReadMerges(string path, JsonElement model)
    {
        var merges = new List<(string, string)>();
        if (!model.TryGetProperty("merges", out JsonElement m) || m.ValueKind == JsonValueKind.Null) return merges;
        if (m.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"{path}: model.merges is not an array");
        int i = 0;
        foreach (JsonElement e in m.EnumerateArray())
        {
            if (e.ValueKind == JsonValueKind.String)
            {
                string s = e.GetString()!;
                int space = s.IndexOf(' ', 1);
                if (space <= 0 || space == s.Length - 1 || s.IndexOf(' ', space + 1) >= 0)
                    throw new InvalidDataException($"{path}: model.merges[{i}] \"{s}\" is not two tokens separated by one space");
                merges.Add((s[..space], s[(space + 1)..]));
            }
            else if (e.ValueKind == JsonValueKind.Array && e.GetArrayLength() == 2 && e[0].ValueKind == JsonValueKind.String && e[1].ValueKind == JsonValueKind.String)
            {
                merges.Add((e[0].GetString()!, e[1].GetString()!));
            }
            else
            {
                throw new InvalidDataException($"{path}: model.merges[{i}] is neither \"a b\" nor [\"a\", \"b\"]");
            }
            i++;
        }
        return merges;
    }

    private static List<AddedToken> ReadAddedTokens(string path, JsonElement root)
    {
        var added = new List<AddedToken>();
        if (!root.TryGetProperty("added_tokens", out JsonElement a) || a.ValueKind == JsonValueKind.Null) return added;
        if (a.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"{path}: added_tokens is not an array");
        int i = 0;
        foreach (JsonElement e in a.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Object
                || !e.TryGetProperty("id", out JsonElement id) || id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out int idValue) || idValue < 0
                || !e.TryGetProperty("content", out JsonElement content) || content.ValueKind != JsonValueKind.String || content.GetString()!.Length == 0)
                throw new InvalidDataException($"{path}: added_tokens[{i}] needs a non-negative \"id\" and a non-empty \"content\"");
            bool special = e.TryGetProperty("special", out JsonElement s) && s.ValueKind == JsonValueKind.True;
            added.Add(new AddedToken(content.GetString()!, idValue, special));
            i++;
        }
        return added;
    }

    private static void CollectStages(string path, JsonElement pre, List<Regex> stages, ref bool addPrefixSpace)
    {
        foreach (JsonElement p in Flatten(pre, "pretokenizers"))
        {
            string type = TypeOf(p);
            switch (type)
            {
                case "ByteLevel":
                    if (p.TryGetProperty("add_prefix_space", out JsonElement aps) && aps.ValueKind == JsonValueKind.True) addPrefixSpace = true;
                    bool useRegex = !p.TryGetProperty("use_regex", out JsonElement ur) || ur.ValueKind != JsonValueKind.False;
                    if (useRegex) stages.Add(MakeRegex(path, SplitPreTokenizer.Gpt2Pattern));
                    break;
                case "Split":
                    string behavior = p.TryGetProperty("behavior", out JsonElement b) && b.ValueKind == JsonValueKind.String ? b.GetString()! : "";
                    bool invert = p.TryGetProperty("invert", out JsonElement inv) && inv.ValueKind == JsonValueKind.True;
                    if (behavior != "Isolated" || invert)
                        throw new NotSupportedException($"{path}: Split pre-tokenizer with behavior \"{behavior}\" invert={invert} is not supported (only Isolated, not inverted)");
                    if (!p.TryGetProperty("pattern", out JsonElement pattern) || pattern.ValueKind != JsonValueKind.Object)
                        throw new InvalidDataException($"{path}: Split pre-tokenizer has no pattern");
                    if (pattern.TryGetProperty("Regex", out JsonElement rx) && rx.ValueKind == JsonValueKind.String) stages.Add(MakeRegex(path, rx.GetString()!));
                    else if (pattern.TryGetProperty("String", out JsonElement str) && str.ValueKind == JsonValueKind.String) stages.Add(MakeRegex(path, Regex.Escape(str.GetString()!)));
                    else throw new InvalidDataException($"{path}: Split pattern is neither {{\"Regex\": ...}} nor {{\"String\": ...}}");
                    break;
                case "Digits":
                    bool individual = p.TryGetProperty("individual_digits", out JsonElement ind) && ind.ValueKind == JsonValueKind.True;
                    stages.Add(MakeRegex(path, individual ? @"\p{N}" : @"\p{N}+"));
                    break;
                default:
                    throw new NotSupportedException($"{path}: pre-tokenizer \"{type}\" is not supported for byte-level BPE (ByteLevel, Split, Digits, Sequence are)");
            }
        }
    }

    // Compiling a regex emits IL (about a millisecond); tokenizers of one family share their patterns, and a Regex is
    // immutable and thread-safe, so each pattern is compiled once per process.
    static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Regex> Compiled = new(StringComparer.Ordinal);

    internal static Regex MakeRegex(string source, string pattern)
    {
        if (Compiled.TryGetValue(pattern, out Regex? cached)) return cached;
        try
        {
            var regex = new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled);
            // Bounded: a process that loads many distinct patterns (a fuzzer) keeps compiling rather than growing.
            if (Compiled.Count < 256) Compiled.TryAdd(pattern, regex);
            return regex;
        }
        catch (ArgumentException ex)
        {
            throw new NotSupportedException($"{source}: pre-tokenizer regex cannot be compiled by .NET: {pattern} ({ex.Message})", ex);
        }
    }

    /// <summary>The BOS token a TemplateProcessing post-processor puts before a single sequence, if any.</summary>
    private static string? TemplateBos(JsonElement post)
    {
        foreach (JsonElement p in Flatten(post, "processors"))
        {
            if (TypeOf(p) != "TemplateProcessing" || !p.TryGetProperty("single", out JsonElement single) || single.ValueKind != JsonValueKind.Array) continue;
            if (single.GetArrayLength() > 0 && single[0].ValueKind == JsonValueKind.Object && single[0].TryGetProperty("SpecialToken", out JsonElement st)
                && st.ValueKind == JsonValueKind.Object && st.TryGetProperty("id", out JsonElement id) && id.ValueKind == JsonValueKind.String)
                return id.GetString();
        }
        return null;
    }

    internal static JsonElement Get(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out JsonElement e) ? e : default;

    internal static string TypeOf(JsonElement e) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "";

    /// <summary>A component and, for a "Sequence", its children in order (null components yield nothing).</summary>
    internal static IEnumerable<JsonElement> Flatten(JsonElement e, string childrenName)
    {
        if (e.ValueKind != JsonValueKind.Object) yield break;
        if (TypeOf(e) == "Sequence" && e.TryGetProperty(childrenName, out JsonElement children) && children.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement c in children.EnumerateArray())
                foreach (JsonElement x in Flatten(c, childrenName)) yield return x;
        }
        else
        {
            yield return e;
        }
    }

    private static IEnumerable<string> Types(JsonElement e)
    {
        foreach (string children in new[] { "normalizers", "pretokenizers", "decoders" })
            foreach (JsonElement x in Flatten(e, children))
                if (TypeOf(x) is { Length: > 0 } type && type != "Sequence") yield return type;
    }
}
