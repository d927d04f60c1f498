using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Ponder.Hosting;

/// <summary>One chat message as a template sees it.</summary>
/// <param name="Role">"system", "user", "assistant" (or any role the template knows).</param>
/// <param name="Content">The message text.</param>
public sealed record ChatTurn(string Role, string Content);

/// <summary>
/// Turns chat messages into the prompt text a model was trained on, from the Jinja <c>chat_template</c> of its
/// <c>tokenizer_config.json</c>, rendered as Hugging Face's <c>apply_chat_template</c> renders it (the real templates
/// of Llama 3.x, Qwen2.5, Qwen3, Mistral, SmolLM2 and DeepSeek-R1-Distill are tested byte for byte against
/// @huggingface/jinja). Variables: <c>messages</c>, <c>add_generation_prompt</c>, <c>bos_token</c>, <c>eos_token</c>
/// and any extra ones passed to <see cref="Render"/> (e.g. <c>enable_thinking</c>, <c>date_string</c>).
/// A template Ponder cannot compile is a <see cref="ChatTemplateException"/> naming the construct and its line and
/// column; a model without a template is an error too. Only a host that opts in gets the documented ChatML format
/// instead (<see cref="ChatMl"/>), with the reason logged and kept in <see cref="FallbackReason"/>:
/// <code>
///   &lt;|im_start|&gt;{role}\n{content}&lt;|im_end|&gt;\n   (per message)
///   &lt;|im_start|&gt;assistant\n                   (when a generation prompt is asked for)
/// </code>
/// Immutable and thread-safe.
/// </summary>
public sealed class ChatTemplate
{
    static readonly string[] KnownEndMarkers = ["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<｜end▁of▁sentence｜>"];

    readonly Jinja.Template? _compiled;
    readonly string? _bos, _eos;

    ChatTemplate(string source, Jinja.Template? compiled, string? bos, string? eos, string? fallbackReason)
    {
        Source = source; _compiled = compiled; _bos = bos; _eos = eos; FallbackReason = fallbackReason;
        StopStrings = [.. KnownEndMarkers.Where(m => source.Contains(m, StringComparison.Ordinal))];
    }

    /// <summary>The ChatML format (used by Qwen2 and many others), for hosts that choose it or opt into it as a fallback.</summary>
    public static ChatTemplate ChatMl { get; } = new("<|im_start|>{role}\\n{content}<|im_end|>\\n ... <|im_start|>assistant\\n", null, null, null, null);

    /// <summary>The template text (for ChatML: a sketch of the format).</summary>
    public string Source { get; }

    /// <summary>Why the model's own template was not used, when the host opted into the ChatML fallback; null otherwise.</summary>
    public string? FallbackReason { get; }

    /// <summary>Whether this is the ChatML format rather than a model's own template.</summary>
    public bool IsChatMl => _compiled is null;

    /// <summary>End-of-turn markers the template writes (e.g. "&lt;|im_end|&gt;"): generation stops at them even when the tokenizer has no such special token.</summary>
    public IReadOnlyList<string> StopStrings { get; }

    /// <summary>Compiles a Jinja chat template. Throws <see cref="ChatTemplateException"/> on a syntax error or a construct Ponder does not implement.</summary>
    public static ChatTemplate Parse(string template, string? bosToken = null, string? eosToken = null)
    {
        ArgumentNullException.ThrowIfNull(template);
        return new ChatTemplate(template, Jinja.Compile(template), bosToken, eosToken, null);
    }

    /// <summary>
    /// The template of a <c>tokenizer_config.json</c>: its <c>chat_template</c> (a string, or the "default" entry of a
    /// list of named templates) with its <c>bos_token</c> and <c>eos_token</c>. Throws <see cref="FileNotFoundException"/>,
    /// <see cref="InvalidDataException"/> (not JSON, no chat_template) or <see cref="ChatTemplateException"/>, each naming the file.
    /// </summary>
    public static ChatTemplate FromTokenizerConfig(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path} does not exist: the model brings no chat template", path);
        using (var doc = Models.JsonFile.Parse(File.ReadAllBytes(path), path))
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("chat_template", out var t))
                throw new InvalidDataException($"{path} has no chat_template: the model brings no chat format");
            string? source = t.ValueKind switch
            {
                JsonValueKind.String => t.GetString(),
                // Some models ship several named templates; "default" is the one apply_chat_template uses.
                JsonValueKind.Array => t.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.Object && e.TryGetProperty("name", out var n) && n.ValueEquals("default"))
                    .Select(e => e.TryGetProperty("template", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString() : null).FirstOrDefault(),
                _ => null,
            };
            if (string.IsNullOrEmpty(source)) throw new InvalidDataException($"{path}: chat_template is neither a string nor a list with a 'default' entry");
            try { return Parse(source, TokenText(root, "bos_token"), TokenText(root, "eos_token")); }
            catch (ChatTemplateException e) { throw new ChatTemplateException($"{path}: {e.Problem}", e.Line, e.Column, e); }
        }
    }

    /// <summary>
    /// The template of a model folder (<see cref="FromTokenizerConfig"/> on its <c>tokenizer_config.json</c>). When the
    /// folder has no usable template this throws, unless <paramref name="allowChatMlFallback"/>: then the result is
    /// <see cref="ChatMl"/> with <see cref="FallbackReason"/> set, and the reason is logged as a warning.
    /// A malformed JSON file always throws <see cref="InvalidDataException"/> naming it.
    /// </summary>
    public static ChatTemplate ForModelFolder(string folder, bool allowChatMlFallback = false, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        string path = Path.Combine(folder, "tokenizer_config.json");
        try { return FromTokenizerConfig(path); }
        catch (Exception e) when (allowChatMlFallback && e is FileNotFoundException or ChatTemplateException
                                  || allowChatMlFallback && e is InvalidDataException && File.Exists(path) && !IsMalformedJson(e))
        {
            return Fallback(e.Message, logger);
        }
    }

    /// <summary>The template of a loaded model: its folder's <c>tokenizer_config.json</c> (see <see cref="ForModelFolder"/>).</summary>
    public static ChatTemplate ForModel(PonderModel model, bool allowChatMlFallback = false, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        string location = model.Location;
        string? folder = Directory.Exists(location) ? location : File.Exists(location) ? Path.GetDirectoryName(Path.GetFullPath(location)) : null;
        if (folder is not null) return ForModelFolder(folder, allowChatMlFallback, logger);
        string reason = $"model '{location}' has no folder to read tokenizer_config.json from";
        return allowChatMlFallback ? Fallback(reason, logger) : throw new InvalidOperationException($"{reason}: pass a chat template explicitly or opt into the ChatML fallback");
    }

    static bool IsMalformedJson(Exception e) => e.InnerException is JsonException;

    static ChatTemplate Fallback(string reason, ILogger? logger)
    {
        logger?.LogWarning("chat template: using ChatML because {Reason}", reason);
        return new ChatTemplate(ChatMl.Source, null, null, null, reason);
    }

    static string? TokenText(JsonElement root, string name) =>
        !root.TryGetProperty(name, out var v) ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString()
        : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()
        : null;

    /// <summary>
    /// <see cref="Render"/>, plus where each message's content lies in the prompt (see <see cref="ChatPrompt"/>): the
    /// template is rendered a second time with a private-use marker for each content, and the markers' places are the
    /// contents' places when putting the contents back gives the prompt exactly. When it does not (the template trims,
    /// splits or tests the contents), the spans are null.
    /// </summary>
    public ChatPrompt RenderPrompt(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt = true, IReadOnlyDictionary<string, object?>? variables = null)
    {
        string text = Render(messages, addGenerationPrompt, variables);
        string[] contents = [.. messages.Select(m => m.Content)];
        return new ChatPrompt(text, LocateContents(messages, text, addGenerationPrompt, variables), contents);
    }

    static readonly System.Text.RegularExpressions.Regex Marker = new("\uE000([0-9]+)\uE001", System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    List<(int Start, int Length)>? LocateContents(IReadOnlyList<ChatTurn> messages, string text, bool addGenerationPrompt, IReadOnlyDictionary<string, object?>? variables)
    {
        if (messages.All(m => m.Content.Length == 0)) return [];
        string skeleton;
        try { skeleton = Render([.. messages.Select((m, i) => m.Content.Length == 0 ? m : m with { Content = $"\uE000{i}\uE001" })], addGenerationPrompt, variables); }
        catch (Exception e) when (e is ArgumentException or ChatTemplateException) { return null; }
        var rebuilt = new StringBuilder(text.Length);
        var spans = new List<(int, int)>();
        var seen = new bool[messages.Count];
        int pos = 0;
        foreach (System.Text.RegularExpressions.Match m in Marker.Matches(skeleton))
        {
            if (!int.TryParse(m.Groups[1].ValueSpan, out int i) || i >= messages.Count || seen[i]) return null;
            seen[i] = true;
            rebuilt.Append(skeleton, pos, m.Index - pos);
            spans.Add((rebuilt.Length, messages[i].Content.Length));
            rebuilt.Append(messages[i].Content);
            pos = m.Index + m.Length;
        }
        rebuilt.Append(skeleton, pos, skeleton.Length - pos);
        return rebuilt.ToString() == text ? spans : null;
    }

    /// <summary>
    /// The prompt for <paramref name="messages"/>, ending with the assistant's turn header when
    /// <paramref name="addGenerationPrompt"/>. <paramref name="variables"/> adds template variables (strings, numbers,
    /// booleans, lists, dictionaries or <see cref="JsonElement"/>s). Throws <see cref="ArgumentException"/> when the
    /// template rejects the messages (its <c>raise_exception</c>, e.g. roles not alternating) and
    /// <see cref="ChatTemplateException"/> when it fails on them (e.g. an unsupported method, with line and column).
    /// </summary>
    public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt = true, IReadOnlyDictionary<string, object?>? variables = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (_compiled is null)
        {
            var sb = new StringBuilder();
            foreach (var m in messages) sb.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content).Append("<|im_end|>\n");
            if (addGenerationPrompt) sb.Append("<|im_start|>assistant\n");
            return sb.ToString();
        }
        var vars = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (_bos is not null) vars["bos_token"] = _bos;
        if (_eos is not null) vars["eos_token"] = _eos;
        if (variables is not null)
            foreach (var (k, v) in variables) vars[k] = Jinja.FromClr(v);
        vars["messages"] = messages.Select(m => (object?)new Dictionary<string, object?>(StringComparer.Ordinal) { ["role"] = m.Role, ["content"] = m.Content }).ToList();
        vars["add_generation_prompt"] = addGenerationPrompt;
        try { return _compiled.Render(vars); }
        catch (Jinja.RaisedException e) { throw new ArgumentException($"the chat template refused the messages: {e.Message}", nameof(messages), e); }
    }
}
