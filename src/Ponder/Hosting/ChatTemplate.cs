using System.Text;
using System.Text.Json;

namespace Ponder.Hosting;

/// <summary>One chat message as a template sees it.</summary>
/// <param name="Role">"system", "user", "assistant" (or any role the template knows).</param>
/// <param name="Content">The message text.</param>
public sealed record ChatTurn(string Role, string Content);

/// <summary>
/// Turns chat messages into the prompt text a model was trained on. Built from the <c>chat_template</c> of a model's
/// <c>tokenizer_config.json</c> (a Jinja2 subset: enough for Llama 3, Qwen2 and ChatML templates; variables
/// <c>messages</c>, <c>add_generation_prompt</c>, <c>bos_token</c>, <c>eos_token</c>), or the documented fallback
/// <see cref="ChatMl"/> when a model has no template or its template uses Jinja outside the subset:
/// <code>
///   &lt;|im_start|&gt;{role}\n{content}&lt;|im_end|&gt;\n   (per message)
///   &lt;|im_start|&gt;assistant\n                   (when a generation prompt is asked for)
/// </code>
/// Immutable and thread-safe.
/// </summary>
public sealed class ChatTemplate
{
    static readonly string[] KnownEndMarkers = ["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"];

    readonly Func<IReadOnlyDictionary<string, object?>, string>? _compiled;
    readonly string _bos, _eos;

    ChatTemplate(string source, Func<IReadOnlyDictionary<string, object?>, string>? compiled, string bos, string eos, string? fallbackReason)
    {
        Source = source; _compiled = compiled; _bos = bos; _eos = eos; FallbackReason = fallbackReason;
        StopStrings = [.. KnownEndMarkers.Where(m => source.Contains(m, StringComparison.Ordinal))];
    }

    /// <summary>The ChatML format (used by Qwen2 and many others): the fallback when a model brings no usable template.</summary>
    public static ChatTemplate ChatMl { get; } = new("<|im_start|>{role}\\n{content}<|im_end|>\\n ... <|im_start|>assistant\\n", null, "", "", null);

    /// <summary>The template text (for the fallback: a sketch of the ChatML format).</summary>
    public string Source { get; }

    /// <summary>Why the model's own template was not used (null when it was, or for <see cref="ChatMl"/> chosen directly).</summary>
    public string? FallbackReason { get; }

    /// <summary>Whether this is the ChatML fallback rather than a model's own template.</summary>
    public bool IsChatMl => _compiled is null;

    /// <summary>End-of-turn markers the template writes (e.g. "&lt;|im_end|&gt;"): generation stops at them even when the tokenizer has no such special token.</summary>
    public IReadOnlyList<string> StopStrings { get; }

    /// <summary>Compiles a Jinja chat template. Throws <see cref="NotSupportedException"/> naming the construct outside the subset.</summary>
    public static ChatTemplate Parse(string template, string? bosToken = null, string? eosToken = null)
    {
        ArgumentNullException.ThrowIfNull(template);
        return new ChatTemplate(template, Jinja.Compile(template), bosToken ?? "", eosToken ?? "", null);
    }

    /// <summary>
    /// The template of a model folder (its <c>tokenizer_config.json</c>), or <see cref="ChatMl"/> with
    /// <see cref="FallbackReason"/> set when there is no such file, no <c>chat_template</c>, or one outside the subset.
    /// A malformed JSON file throws <see cref="InvalidDataException"/> naming it.
    /// </summary>
    public static ChatTemplate ForModelFolder(string folder)
    {
        string path = Path.Combine(folder, "tokenizer_config.json");
        if (!File.Exists(path)) return Fallback($"{path} does not exist");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("chat_template", out var t)) return Fallback($"{path} has no chat_template");
            string? source = t.ValueKind switch
            {
                JsonValueKind.String => t.GetString(),
                // Some models ship several named templates; "default" is the one apply_chat_template uses.
                JsonValueKind.Array => t.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.Object && e.TryGetProperty("name", out var n) && n.ValueEquals("default"))
                    .Select(e => e.TryGetProperty("template", out var s) ? s.GetString() : null).FirstOrDefault(),
                _ => null,
            };
            if (string.IsNullOrEmpty(source)) return Fallback($"{path}: chat_template is neither a string nor a list with a 'default' entry");
            try { return Parse(source, TokenText(root, "bos_token"), TokenText(root, "eos_token")); }
            catch (NotSupportedException e) { return Fallback($"{path}: {e.Message}"); }
        }
    }

    /// <summary>The template of a loaded model: its folder's <c>tokenizer_config.json</c>, else <see cref="ChatMl"/>.</summary>
    public static ChatTemplate ForModel(PonderModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        string location = model.Location;
        string? folder = Directory.Exists(location) ? location : File.Exists(location) ? Path.GetDirectoryName(Path.GetFullPath(location)) : null;
        return folder is null ? Fallback($"model '{location}' has no folder to read tokenizer_config.json from") : ForModelFolder(folder);
    }

    static ChatTemplate Fallback(string reason) => new(ChatMl.Source, null, "", "", reason);

    static string? TokenText(JsonElement root, string name) =>
        !root.TryGetProperty(name, out var v) ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString()
        : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()
        : null;

    /// <summary>
    /// The prompt for <paramref name="messages"/>, ending with the assistant's turn header when
    /// <paramref name="addGenerationPrompt"/>. Throws <see cref="ArgumentException"/> when the template rejects the
    /// messages (its <c>raise_exception</c>, e.g. roles not alternating).
    /// </summary>
    public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt = true)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (_compiled is null)
        {
            var sb = new StringBuilder();
            foreach (var m in messages) sb.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content).Append("<|im_end|>\n");
            if (addGenerationPrompt) sb.Append("<|im_start|>assistant\n");
            return sb.ToString();
        }
        var vars = new Dictionary<string, object?>
        {
            ["messages"] = messages.Select(m => (object?)new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content }).ToList(),
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = _bos,
            ["eos_token"] = _eos,
        };
        try { return _compiled(vars); }
        catch (InvalidOperationException e) { throw new ArgumentException($"the chat template failed on these messages: {e.Message}", nameof(messages), e); }
    }
}
