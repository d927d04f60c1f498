using System.Text.Json;

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
    public static SpecialTokenIds Resolve(string folder, Func<string, int?> idOf, string? templateBos, bool addBosDefault)
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
            using JsonDocument? doc = TryRead(Path.Combine(folder, name));
            if (doc is null || doc.RootElement.ValueKind != JsonValueKind.Object) continue;
            if (bos is null && doc.RootElement.TryGetProperty("bos_token_id", out JsonElement b) && b.ValueKind == JsonValueKind.Number)
                bos = b.GetInt32();
            if (doc.RootElement.TryGetProperty("eos_token_id", out JsonElement e))
            {
                if (e.ValueKind == JsonValueKind.Number) eos.Add(e.GetInt32());
                else if (e.ValueKind == JsonValueKind.Array)
                    eos.AddRange(e.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.Number).Select(x => x.GetInt32()));
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
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{path}: invalid JSON ({ex.Message})", ex);
        }
    }
}
