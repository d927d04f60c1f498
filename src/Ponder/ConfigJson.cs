using System.Text.Json;
using System.Text.Json.Serialization;

namespace Ponder;

/// <summary>
/// The one way Ponder reads its JSON config files (study, training, fine-tuning, PRM comparison): System.Text.Json with
/// camelCase names, comments and trailing commas allowed, and every member the type does not map refused, so a
/// misspelled field is an error naming it rather than a silent default. Errors are <see cref="InvalidDataException"/>s
/// naming the source and the field.
/// </summary>
public static class ConfigJson
{
    /// <summary>The options every config file is read and written with.</summary>
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        WriteIndented = true,
    };

    /// <summary>Reads a config file; <paramref name="what"/> names the kind of config in errors.</summary>
    public static T Load<T>(string path, string what) where T : class =>
        File.Exists(path) ? Parse<T>(File.ReadAllText(path), path, what) : throw new FileNotFoundException($"{what} '{path}' does not exist", path);

    /// <summary>Parses config JSON; <paramref name="source"/> names it in errors.</summary>
    public static T Parse<T>(string json, string source, string what) where T : class
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json, Options) ?? throw new InvalidDataException($"{source}: a {what} must be a JSON object, not null");
        }
        catch (JsonException e)
        {
            // Path is "$.field[1].sub" where the reader stopped; the message says what was wrong there.
            string field = e.Path is { Length: > 2 } p && p.StartsWith("$.", StringComparison.Ordinal) ? p[2..] : "";
            string message = e.Message;
            int at = message.IndexOf(" Path: ", StringComparison.Ordinal);
            if (at > 0) message = message[..at];
            throw new InvalidDataException(field.Length > 0 ? $"{source}: field '{field}': {message}" : $"{source}: not a valid {what}: {message}", e);
        }
    }
}
