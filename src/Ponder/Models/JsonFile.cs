using System.Text.Json;

namespace Ponder.Models;

/// <summary>
/// Parses the JSON of a model's files (config, safetensors headers and indexes, tokenizer files) so that bad bytes are
/// one named error: invalid UTF-8 is refused before parsing (System.Text.Json would accept it and fail later, unnamed,
/// when a property name or string is read), a JSON syntax error becomes an <see cref="InvalidDataException"/>, and so
/// does an escaped lone UTF-16 surrogate (<c>"\ud800"</c>: parsed, then an unnamed InvalidOperationException when read).
/// </summary>
internal static class JsonFile
{
    /// <summary>Parses <paramref name="utf8"/>; <paramref name="what"/> names it in errors ("x/config.json", "x/model.safetensors: the header").</summary>
    /// <exception cref="InvalidDataException">Not UTF-8, not JSON, or a string escaping a lone surrogate.</exception>
    public static JsonDocument Parse(ReadOnlyMemory<byte> utf8, string what, JsonDocumentOptions options = default)
    {
        if (!System.Text.Unicode.Utf8.IsValid(utf8.Span))
            throw new InvalidDataException($"{what} is not valid UTF-8");
        try
        {
            // Before parsing: a parse that checks duplicate property names reads them, and would throw unnamed.
            CheckEscapedStrings(utf8.Span, what, options);
            return JsonDocument.Parse(utf8, options);
        }
        catch (JsonException e) { throw new InvalidDataException($"{what} is not valid JSON ({e.Message})", e); }
    }

    /// <summary>
    /// Refuses a string or property name that escapes a lone UTF-16 surrogate. Hugging Face's serde_json refuses "\ud800"
    /// at parse; System.Text.Json accepts it and throws only when the string is read. One reader pass unescapes just the
    /// escaped strings (most are not), so every later read is safe. For JSON parsed some other way (JsonNode).
    /// </summary>
    /// <exception cref="InvalidDataException">Such a string, named by its line.</exception>
    /// <exception cref="JsonException">Not JSON.</exception>
    internal static void CheckEscapedStrings(ReadOnlySpan<byte> utf8, string what, JsonDocumentOptions options)
    {
        var reader = new Utf8JsonReader(utf8, new JsonReaderOptions
        {
            AllowTrailingCommas = options.AllowTrailingCommas, CommentHandling = options.CommentHandling, MaxDepth = options.MaxDepth,
        });
        while (reader.Read())
        {
            if (reader.TokenType is not (JsonTokenType.String or JsonTokenType.PropertyName) || !reader.ValueIsEscaped) continue;
            try { _ = reader.GetString(); }
            catch (InvalidOperationException e)
            {
                int line = 1 + utf8[..(int)reader.TokenStartIndex].Count((byte)'\n');
                string kind = reader.TokenType == JsonTokenType.PropertyName ? "property name" : "string";
                throw new InvalidDataException($"{what}: line {line}: a {kind} escapes a lone UTF-16 surrogate (an unpaired \\uD800-\\uDFFF)", e);
            }
        }
    }
}
