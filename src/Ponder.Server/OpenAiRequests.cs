using System.Text.Json;
using Ponder.Hosting;
using Ponder.Sampling;

namespace Ponder.Server;

/// <summary>A client mistake: becomes a 400 with an OpenAI-style error body.</summary>
public sealed class BadRequestException(string message, string? param = null, string type = "invalid_request_error", string? code = null) : Exception(message)
{
    /// <summary>The OpenAI error code (e.g. "context_length_exceeded"), or null.</summary>
    public string? Code { get; } = code;
    /// <summary>The offending request field (dotted path), or null.</summary>
    public string? Param { get; } = param;
    /// <summary>The OpenAI error type.</summary>
    public string Type { get; } = type;
}

/// <summary>A parsed completion or chat request: the prompt text, sampling, test-time compute, and whether to stream.</summary>
sealed record ParsedRequest(ChatPrompt Prompt, SamplingOptions Sampling, TestTimeComputeOptions? Compute, bool Stream);

/// <summary>
/// Reads OpenAI request bodies by hand (a <see cref="JsonDocument"/>), so every client mistake is a
/// <see cref="BadRequestException"/> naming the field, never a 500. Unknown fields are ignored, as OpenAI's own server does.
/// </summary>
static class OpenAiRequests
{
    /// <summary>Reads a request body as JSON and parses it with <paramref name="parse"/>: invalid JSON is a <see cref="BadRequestException"/> too.</summary>
    public static async Task<ParsedRequest> ParseBodyAsync(Stream body, Func<JsonElement, ParsedRequest> parse, CancellationToken ct)
    {
        JsonDocument doc;
        try { doc = await JsonDocument.ParseAsync(body, cancellationToken: ct).ConfigureAwait(false); }
        catch (JsonException e) { throw new BadRequestException($"the request body is not valid JSON: {e.Message}", FieldOf(e.Path)); }
        using (doc) return parse(doc.RootElement);
    }

    public static ParsedRequest Completion(JsonElement body, int maxPositions, ServerLimits limits)
    {
        RequireObject(body);
        if (!body.TryGetProperty("prompt", out var p)) throw new BadRequestException("'prompt' is required", "prompt");
        string prompt = p.ValueKind switch
        {
            JsonValueKind.String => String(p, "prompt"),
            JsonValueKind.Array when p.GetArrayLength() == 1 && p[0].ValueKind == JsonValueKind.String => String(p[0], "prompt[0]"),
            JsonValueKind.Array => throw new BadRequestException("'prompt' must be one string (batches of prompts are not supported)", "prompt"),
            _ => throw new BadRequestException("'prompt' must be a string", "prompt"),
        };
        if (prompt.Length == 0) throw new BadRequestException("'prompt' is empty", "prompt");
        // Before tokenization: a huge prompt costs memory and time in the tokenizer even though it will be refused.
        if (prompt.Length > limits.MaxPromptChars)
            throw new BadRequestException($"'prompt' has {prompt.Length} characters; this server takes at most {limits.MaxPromptChars}", "prompt", code: "context_length_exceeded");
        return Common(body, ChatPrompt.Plain(prompt), maxPositions, limits, defaultMaxTokens: 16);
    }

    public static ParsedRequest Chat(JsonElement body, ChatTemplate template, int maxPositions, ServerLimits limits)
    {
        RequireObject(body);
        if (!body.TryGetProperty("messages", out var m)) throw new BadRequestException("'messages' is required", "messages");
        if (m.ValueKind != JsonValueKind.Array || m.GetArrayLength() == 0) throw new BadRequestException("'messages' must be a non-empty array", "messages");
        var turns = new List<ChatTurn>();
        int i = 0;
        long chars = 0;
        foreach (var message in m.EnumerateArray())
        {
            string at = $"messages[{i++}]";
            if (message.ValueKind != JsonValueKind.Object) throw new BadRequestException($"'{at}' must be an object", at);
            if (!message.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
                throw new BadRequestException($"'{at}.role' is required and must be a string", at + ".role");
            string r = String(role, at + ".role");
            if (r is not ("system" or "developer" or "user" or "assistant" or "tool"))
                throw new BadRequestException($"'{at}.role' '{r}' is not one of system, developer, user, assistant, tool", at + ".role");
            turns.Add(new ChatTurn(r == "developer" ? "system" : r, Content(message, at)));
            chars += turns[^1].Content.Length;
            if (chars > limits.MaxPromptChars)
                throw new BadRequestException($"the messages have over {limits.MaxPromptChars} characters, this server's limit", "messages", code: "context_length_exceeded");
        }
        ChatPrompt prompt;
        try { prompt = template.RenderPrompt(turns, addGenerationPrompt: true); }
        catch (ArgumentException e) { throw new BadRequestException(e.Message, "messages"); }
        catch (ChatTemplateException e) { throw new BadRequestException($"the chat template could not render these messages: {e.Problem}", "messages"); }
        var parsed = Common(body, prompt, maxPositions, limits, defaultMaxTokens: 256);
        return parsed with { Sampling = parsed.Sampling with { StopStrings = [.. parsed.Sampling.StopStrings, .. template.StopStrings] } };
    }

    static string Content(JsonElement message, string at)
    {
        if (!message.TryGetProperty("content", out var c) || c.ValueKind == JsonValueKind.Null) return "";
        if (c.ValueKind == JsonValueKind.String) return String(c, at + ".content");
        if (c.ValueKind != JsonValueKind.Array) throw new BadRequestException($"'{at}.content' must be a string or an array of parts", at + ".content");
        var sb = new System.Text.StringBuilder();
        int j = 0;
        foreach (var part in c.EnumerateArray())
        {
            string pat = $"{at}.content[{j++}]";
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                throw new BadRequestException($"'{pat}' must be an object with a 'type'", pat);
            if (String(type, pat + ".type") != "text") throw new BadRequestException($"'{pat}.type' is not supported (only \"text\")", pat + ".type");
            if (!part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                throw new BadRequestException($"'{pat}.text' must be a string", pat + ".text");
            sb.Append(String(text, pat + ".text"));
        }
        return sb.ToString();
    }

    static ParsedRequest Common(JsonElement body, ChatPrompt prompt, int maxPositions, ServerLimits limits, int defaultMaxTokens)
    {
        var s = new SamplingOptions();
        double? temperature = OptionalNumber(body, "temperature");
        if (temperature is { } t && !(t >= 0 && t <= 2)) throw new BadRequestException($"'temperature' must be in [0, 2], got {t}", "temperature");
        double? topP = OptionalNumber(body, "top_p");
        if (topP is { } tp && !(tp > 0 && tp <= 1)) throw new BadRequestException($"'top_p' must be in (0, 1], got {tp}", "top_p");
        double? maxTokens = OptionalNumber(body, "max_completion_tokens") ?? OptionalNumber(body, "max_tokens");
        string maxName = body.TryGetProperty("max_completion_tokens", out var mct) && mct.ValueKind != JsonValueKind.Null ? "max_completion_tokens" : "max_tokens";
        if (maxTokens is { } mt && (mt != Math.Floor(mt) || mt < 1 || mt > maxPositions))
            throw new BadRequestException($"'{maxName}' must be an integer in [1, {maxPositions}] (the model's context), got {mt}", maxName);
        double? seed = OptionalNumber(body, "seed");
        if (seed is { } sd && (sd != Math.Floor(sd) || sd < long.MinValue || sd > long.MaxValue)) throw new BadRequestException("'seed' must be an integer", "seed");
        var stops = new List<string>();
        if (body.TryGetProperty("stop", out var stop))
        {
            if (stop.ValueKind == JsonValueKind.String) stops.Add(String(stop, "stop"));
            else if (stop.ValueKind == JsonValueKind.Array)
                foreach (var x in stop.EnumerateArray())
                    stops.Add(x.ValueKind == JsonValueKind.String ? String(x, "stop") : throw new BadRequestException("'stop' must be a string or an array of strings", "stop"));
            else if (stop.ValueKind != JsonValueKind.Null) throw new BadRequestException("'stop' must be a string or an array of strings", "stop");
        }
        if (stops.Any(x => x.Length == 0)) throw new BadRequestException("'stop' strings must not be empty", "stop");
        bool stream = false;
        if (body.TryGetProperty("stream", out var st))
        {
            if (st.ValueKind is JsonValueKind.True or JsonValueKind.False) stream = st.GetBoolean();
            else if (st.ValueKind != JsonValueKind.Null) throw new BadRequestException("'stream' must be a boolean", "stream");
        }
        s = s with
        {
            Temperature = (float)(temperature ?? 1),
            TopP = (float)(topP ?? 1),
            MaxNewTokens = (int)(maxTokens ?? defaultMaxTokens),
            Seed = seed is { } v ? unchecked((ulong)(long)v) : s.Seed,
            StopStrings = stops,
        };
        TestTimeComputeOptions? compute = null;
        if (body.TryGetProperty("ponder", out var ponder) && ponder.ValueKind != JsonValueKind.Null)
        {
            if (ponder.ValueKind != JsonValueKind.Object) throw new BadRequestException("'ponder' must be an object", "ponder");
            var fields = new List<KeyValuePair<string, object?>>();
            foreach (var f in ponder.EnumerateObject())
            {
                // A key that is not valid UTF-16 cannot be one of ours; the value's strings are checked as they are read.
                string name;
                try { name = f.Name; }
                catch (InvalidOperationException) { throw new BadRequestException("a key of 'ponder' is not valid UTF-16/UTF-8 text", "ponder"); }
                if (f.Value.ValueKind == JsonValueKind.String) String(f.Value, "ponder." + name);
                fields.Add(new(name, f.Value));
            }
            try { compute = TestTimeComputeOptions.FromProperties(fields, "ponder."); }
            catch (ArgumentException e) { throw new BadRequestException(StripParam(e), e.ParamName); }
            if (compute is not null) CheckCaps(compute, limits);
        }
        return new ParsedRequest(prompt, s, compute, stream);
    }

    /// <summary>The server's caps on a search's size and budget (each a 400 naming the field).</summary>
    static void CheckCaps(TestTimeComputeOptions c, ServerLimits limits)
    {
        int n = c.Strategy?.Branches ?? 0, width = c.Strategy?.Width ?? 0;
        if (n > limits.MaxN) throw new BadRequestException($"'ponder.n' is {n}; this server allows at most {limits.MaxN}", "ponder.n");
        if (width > limits.MaxBeamWidth) throw new BadRequestException($"'ponder.beam_width' is {width}; this server allows at most {limits.MaxBeamWidth}", "ponder.beam_width");
        if (c.BudgetGenerations > limits.MaxBudgetGenerations)
            throw new BadRequestException($"'ponder.budget_generations' is {c.BudgetGenerations}; this server allows at most {limits.MaxBudgetGenerations}", "ponder.budget_generations");
        if (c.BudgetFlops > limits.MaxBudgetFlops)
            throw new BadRequestException($"'ponder.budget_flops' is {c.BudgetFlops}; this server allows at most {limits.MaxBudgetFlops}", "ponder.budget_flops");
        if (c.PrmName is { } prm && prm.Length > 256) throw new BadRequestException("'ponder.prm' is not a registered PRM name", "ponder.prm");
    }

    /// <summary>A string field's text; a lone surrogate escape or invalid UTF-8 in it is a 400 naming the field.</summary>
    public static string String(JsonElement e, string param)
    {
        try { return e.GetString()!; }
        catch (InvalidOperationException) { throw new BadRequestException($"'{param}' is not valid text (a lone UTF-16 surrogate or invalid UTF-8)", param); }
    }

    /// <summary>The request field of a <see cref="JsonException"/>'s JSON path ("$.messages[0].content" -> "messages[0].content").</summary>
    public static string? FieldOf(string? path) =>
        path is null || path == "$" ? null : path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : path.TrimStart('$');

    // Engine and option errors name their option; the client wrote it as a top-level field or inside "ponder".
    static readonly HashSet<string> TopLevel = ["max_tokens", "temperature", "top_p", "seed", "stop", "stream"];
    static readonly HashSet<string> PonderFields = ["strategy", "n", "beam_width", "lookahead", "budget_flops", "budget_generations", "max_step_tokens", "max_rounds", "prm"];

    /// <summary>The request field an engine <see cref="ArgumentException"/>'s parameter name stands for (null when none does).</summary>
    public static string? ParamOf(string? name, bool chat) => name switch
    {
        null => null,
        "prompt" => chat ? "messages" : "prompt",
        _ when name.StartsWith("messages[", StringComparison.Ordinal) => chat ? name : "prompt",
        _ when name.StartsWith("ponder.", StringComparison.Ordinal) => name,
        _ when TopLevel.Contains(name) => name,
        _ when PonderFields.Contains(name) => "ponder." + name,
        _ => null,
    };

    /// <summary>An <see cref="ArgumentException"/>'s message without the " (Parameter 'x')" suffix .NET appends.</summary>
    public static string StripParam(ArgumentException e)
    {
        string m = e.Message;
        int at = e.ParamName is null ? -1 : m.LastIndexOf($" (Parameter '{e.ParamName}')", StringComparison.Ordinal);
        return at < 0 ? m : m[..at];
    }

    static void RequireObject(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object) throw new BadRequestException("the request body must be a JSON object");
    }

    static double? OptionalNumber(JsonElement body, string name)
    {
        if (!body.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number) throw new BadRequestException($"'{name}' must be a number", name);
        return v.GetDouble();
    }
}
