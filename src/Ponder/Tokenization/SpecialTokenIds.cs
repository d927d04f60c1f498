using System.Text.Json;
using Ponder.Models;

namespace Ponder.Tokenization;

/// <summary>BOS/EOS ids and whether BOS is prepended, as resolved from a model's files.</summary>
/// <param name="Bos">Beginning-of-sequence id, if any.</param>
/// <param name="Eos">Ids that end generation (may be empty).</param>
/// <param name="AddBos">Whether encoding with special tokens prepends <paramref name="Bos"/>.</param>
internal sealed record SpecialTokenIds(int? Bos, IReadOnlyList<int> Eos, bool AddBos)
{
    /// <summary>Names of BOS tokens we recognise when no config file says which token is BOS.</summary>
    public static readonly string[] KnownBosNames = ["<|begin_of_text|>", "<|bos|>", "<s>", "<|startoftext|>", "<bos>"];
    /// <summary>Names of end tokens we recognise when no config file names them.</summary>
    public static readonly string[] KnownEosNames =
        ["<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "<|im_end|>", "<|eos|>", "</s>", "<|end|>", "<eos>", "<end_of_turn>"];

    /// <summary>Copies encoder output into an array, with <paramref name="bos"/> first when given.</summary>
    public static int[] WithBos(IReadOnlyList<int> ids, int? bos)
    {
        int offset = bos is null ? 0 : 1;
        var result = new int[ids.Count + offset];
        if (bos is int b) result[0] = b;
        for (int i = 0; i < ids.Count; i++) result[i + offset] = ids[i];
        return result;
    }

    public IEnumerable<int> All() => Bos is int b ? Eos.Prepend(b) : Eos;

    /// <summary>
    /// Resolves BOS/EOS for a Hugging Face folder: tokenizer_config.json (bos_token, eos_token, add_bos_token), then
    /// generation_config.json / config.json (bos_token_id, eos_token_id), then the post-processor's template, then
    /// recognised names among the added tokens.
    /// </summary>
    /// <param name="vocabSize">The tokenizer's number of ids, when known: an id from a config file at or past it is refused, naming the file and field.</param>
    public static SpecialTokenIds Resolve(string folder, Func<string, int?> idOf, string? templateBos, bool addBosDefault, int? vocabSize = null)
    {
        int? bos = null;
        var eos = new List<int>();
        bool? addBos = null;

        using (JsonDocument? tokConfig = TryRead(Path.Combine(folder, "tokenizer_config.json")))
        {
            if (tokConfig is not null)
            {
                JsonElement root = tokConfig.RootElement;
                if (TokenName(root, "bos_token") is string bosName) bos = idOf(bosName);
                if (TokenName(root, "eos_token") is string eosName && idOf(eosName) is int e) eos.Add(e);
                if (root.TryGetProperty("add_bos_token", out JsonElement add) && add.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    addBos = add.GetBoolean();
            }
        }
        foreach (string name in new[] { "generation_config.json", "config.json" })
        {
            string path = Path.Combine(folder, name);
            using JsonDocument? doc = TryRead(path);
            if (doc is null || doc.RootElement.ValueKind != JsonValueKind.Object) continue;
            if (bos is null && doc.RootElement.TryGetProperty("bos_token_id", out JsonElement b) && b.ValueKind != JsonValueKind.Null)
                bos = Id(path, "bos_token_id", b, vocabSize);
            if (doc.RootElement.TryGetProperty("eos_token_id", out JsonElement e) && e.ValueKind != JsonValueKind.Null)
            {
                if (e.ValueKind == JsonValueKind.Array) eos.AddRange(e.EnumerateArray().Select((x, i) => Id(path, $"eos_token_id[{i}]", x, vocabSize)));
                else eos.Add(Id(path, "eos_token_id", e, vocabSize));
            }
        }
        if (bos is null && templateBos is not null)
        {
            bos = idOf(templateBos);
            addBos ??= bos is not null;
        }
        bos ??= FirstKnown(KnownBosNames, idOf);
        if (eos.Count == 0) eos.AddRange(KnownEosNames.Select(idOf).OfType<int>());
        return new SpecialTokenIds(bos, eos.Distinct().ToArray(), addBos ?? (addBosDefault || templateBos is not null));
    }

    /// <summary>A token id from a config file: an integer within the tokenizer's vocabulary, else an error naming the file and field.</summary>
    static int Id(string path, string field, JsonElement value, int? vocabSize)
    {
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int id))
            throw new InvalidDataException($"{path}: {field} = {value.GetRawText()} is not a token id");
        if (id < 0 || id >= vocabSize)
            throw new InvalidDataException($"{path}: {field} {id} is outside the tokenizer's vocabulary [0, {vocabSize})");
        return id;
    }

    public static int? FirstKnown(IEnumerable<string> names, Func<string, int?> idOf) =>
        names.Select(idOf).FirstOrDefault(id => id is not null);

    private static string? TokenName(JsonElement root, string property)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty(property, out JsonElement value)) return null;
        return value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Object when value.TryGetProperty("content", out JsonElement c) && c.ValueKind == JsonValueKind.String => c.GetString(),
            _ => null,
        };
    }

    private static JsonDocument? TryRead(string path)
    {
        if (!File.Exists(path)) return null;
        return JsonFile.Parse(File.ReadAllBytes(path), path, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
    }
}
