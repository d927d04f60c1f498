using System.Text.Json;
using Ponder.Hosting;
using Ponder.Sampling;

namespace Ponder.Server;

/// <summary>A client mistake: becomes a 400 with an OpenAI-style error body.</summary>
public sealed class BadRequestException(string message, string? param = null, string type = "invalid_request_error") : Exception(message)
{
    /// <summary>The offending request field (dotted path), or null.</summary>
    public string? Param { get; } = param;
    /// <summary>The OpenAI error type.</summary>
    public string Type { get; } = type;
}

/// <summary>A parsed completion or chat request: the prompt text, sampling, test-time compute, and whether to stream.</summary>
sealed record ParsedRequest(string Prompt, SamplingOptions Sampling, TestTimeComputeOptions? Compute, bool Stream);

/// <summary>
/// Reads OpenAI request bodies by hand (a <see cref="JsonDocument"/>), so every client mistake is a
/// <see cref="BadRequestException"/> naming the field, never a 500. Unknown fields are ignored, as OpenAI's own server does.
/// </summary>
static class OpenAiRequests
{
    public static ParsedRequest Completion(JsonElement body, int maxPositions)
    {
        RequireObject(body);
        if (!body.TryGetProperty("prompt", out var p)) throw new BadRequestException("'prompt' is required", "prompt");
        string prompt = p.ValueKind switch
        {
            JsonValueKind.String => p.GetString()!,
            JsonValueKind.Array when p.GetArrayLength() == 1 && p[0].ValueKind == JsonValueKind.String => p[0].GetString()!,
            JsonValueKind.Array => throw new BadRequestException("'prompt' must be one string (batches of prompts are not supported)", "prompt"),
            _ => throw new BadRequestException("'prompt' must be a string", "prompt"),
        };
        if (prompt.Length == 0) throw new BadRequestException("'prompt' is empty", "prompt");
        return Common(body, prompt, maxPositions, defaultMaxTokens: 16);
    }

    public static ParsedRequest Chat(JsonElement body, ChatTemplate template, int maxPositions)
    {
        RequireObject(body);
        if (!body.TryGetProperty("messages", out var m)) throw new BadRequestException("'messages' is required", "messages");
        if (m.ValueKind != JsonValueKind.Array || m.GetArrayLength() == 0) throw new BadRequestException("'messages' must be a non-empty array", "messages");
        var turns = new List<ChatTurn>();
        int i = 0;
        foreach (var message in m.EnumerateArray())
        {
            string at = $"messages[{i++}]";
            if (message.ValueKind != JsonValueKind.Object) throw new BadRequestException($"'{at}' must be an object", at);
            if (!message.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
                throw new BadRequestException($"'{at}.role' is required and must be a string", at + ".role");
            string r = role.GetString()!;
            if (r is not ("system" or "developer" or "user" or "assistant" or "tool"))
                throw new BadRequestException($"'{at}.role' '{r}' is not one of system, developer, user, assistant, tool", at + ".role");
            turns.Add(new ChatTurn(r == "developer" ? "system" : r, Content(message, at)));
        }
        string prompt;
        try { prompt = template.Render(turns, addGenerationPrompt: true); }
        catch (ArgumentException e) { throw new BadRequestException(e.Message, "messages"); }
        var parsed = Common(body, prompt, maxPositions, defaultMaxTokens: 256);
        return parsed with { Sampling = parsed.Sampling with { StopStrings = [.. parsed.Sampling.StopStrings, .. template.StopStrings] } };
    }

    static string Content(JsonElement message, string at)
    {
        if (!message.TryGetProperty("content", out var c) || c.ValueKind == JsonValueKind.Null) return "";
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind != JsonValueKind.Array) throw new BadRequestException($"'{at}.content' must be a string or an array of parts", at + ".content");
        var sb = new System.Text.StringBuilder();
        int j = 0;
        foreach (var part in c.EnumerateArray())
        {
            string pat = $"{at}.content[{j++}]";
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                throw new BadRequestException($"'{pat}' must be an object with a 'type'", pat);
            if (type.GetString() != "text") throw new BadRequestException($"'{pat}.type' '{type.GetString()}' is not supported (only text)", pat + ".type");
            if (!part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                throw new BadRequestException($"'{pat}.text' must be a string", pat + ".text");
            sb.Append(text.GetString());
        }
        return sb.ToString();
    }

    static ParsedRequest Common(JsonElement body, string prompt, int maxPositions, int defaultMaxTokens)
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
            if (stop.ValueKind == JsonValueKind.String) stops.Add(stop.GetString()!);
            else if (stop.ValueKind == JsonValueKind.Array)
                foreach (var x in stop.EnumerateArray())
                    stops.Add(x.ValueKind == JsonValueKind.String ? x.GetString()! : throw new BadRequestException("'stop' must be a string or an array of strings", "stop"));
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
            try { compute = TestTimeComputeOptions.FromProperties(ponder.EnumerateObject().Select(p => new KeyValuePair<string, object?>(p.Name, p.Value)), "ponder."); }
            catch (ArgumentException e) { throw new BadRequestException(StripParam(e), e.ParamName); }
        }
        return new ParsedRequest(prompt, s, compute, stream);
    }

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
