using System.Text.Json;

namespace Ponder.Models;

/// <summary>
/// Parses the JSON of a model's files (config, safetensors headers and indexes, tokenizer files) so that bad bytes are
/// one named error: invalid UTF-8 is refused before parsing (System.Text.Json would accept it and fail later, unnamed,
/// when a property name or string is read), and a JSON syntax error becomes an <see cref="InvalidDataException"/>.
/// </summary>
internal static class JsonFile
{
    /// <summary>Parses <paramref name="utf8"/>; <paramref name="what"/> names it in errors ("x/config.json", "x/model.safetensors: the header").</summary>
    /// <exception cref="InvalidDataException">Not UTF-8, or not JSON.</exception>
    public static JsonDocument Parse(ReadOnlyMemory<byte> utf8, string what, JsonDocumentOptions options = default)
    {
        if (!System.Text.Unicode.Utf8.IsValid(utf8.Span))
            throw new InvalidDataException($"{what} is not valid UTF-8");
        try { return JsonDocument.Parse(utf8, options); }
        catch (JsonException e) { throw new InvalidDataException($"{what} is not valid JSON ({e.Message})", e); }
    }
}
