using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Ponder.Hosting;

namespace Ponder.Server;

/// <summary>How the server listens.</summary>
public sealed record PonderServerOptions
{
    /// <summary>Addresses to listen on (port 0 = any free port; read the bound ones from <c>app.Urls</c> after start).</summary>
    public IReadOnlyList<string> Urls { get; init; } = ["http://127.0.0.1:8000"];
    /// <summary>The chat template; null = the model's own (tokenizer_config.json).</summary>
    public ChatTemplate? Template { get; init; }
    /// <summary>Opt-in: serve a model without a usable chat template with ChatML (logged as a warning) instead of failing.</summary>
    public bool AllowChatMlFallback { get; init; }
    /// <summary>Minimum log level of ASP.NET Core's own logging.</summary>
    public LogLevel LogLevel { get; init; } = LogLevel.Warning;
    /// <summary>When set, every request must carry <c>Authorization: Bearer {ApiKey}</c> (else 401).</summary>
    public string? ApiKey { get; init; }
    /// <summary>
    /// Host header names accepted (port ignored, case-insensitive); null = those of <see cref="Urls"/>, where a loopback
    /// address stands for localhost, 127.0.0.1 and [::1], and a wildcard address (0.0.0.0, [::], *, +) for loopback
    /// names only (list the public names here to serve them). Any other Host is refused (400), against DNS rebinding.
    /// </summary>
    public IReadOnlyList<string>? AllowedHosts { get; init; }
    /// <summary>Size, concurrency and time limits.</summary>
    public ServerLimits Limits { get; init; } = new();
    /// <summary>On shutdown, how long in-flight requests may run on before their work is cancelled.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>
/// An OpenAI-compatible HTTP API over a <see cref="CompletionEngine"/>:
/// <code>
///   GET  /v1/models              the model
///   POST /v1/completions         {prompt, max_tokens, temperature, top_p, seed, stop, stream, ponder}
///   POST /v1/chat/completions    {messages, max_tokens | max_completion_tokens, ..., stream, ponder}
/// </code>
/// <c>stream: true</c> answers with server-sent events (<c>data: {chunk}</c> ... <c>data: [DONE]</c>), the last chunk
/// carrying <c>usage</c> and <c>ponder</c>. The Ponder extension <c>ponder: {strategy, n, beam_width, lookahead,
/// budget_flops, budget_generations, max_step_tokens, max_rounds, prm}</c> selects test-time compute (<c>prm</c> names a
/// PRM the operator registered); every response has <c>ponder: {strategy, flops: {total, projection, attention, lm_head,
/// prm_head, elementwise}, generations, ...}</c>. A search ignores <c>max_tokens</c>: each branch is bounded by
/// <c>max_step_tokens</c> × <c>max_rounds</c>, the whole search by its budget.
/// <para>
/// Every non-2xx answer has an OpenAI-style body <c>{"error": {"message", "type", "param", "code"}}</c>: 400 client
/// mistakes (naming the field), 401 without the API key, 404/405 unknown routes, 413 bodies over the limit, 415 non-JSON
/// POSTs, 503 + <c>Retry-After</c> when the server is at its concurrency limit or the KV cache is full, 504 when a
/// request runs past its timeout, 500 (no details) for a server fault. A stream that fails after its first event ends
/// with an <c>{"error": ...}</c> event and <c>[DONE]</c>. A client that disconnects cancels its request (its KV blocks
/// return to the pool); so does shutdown, after <see cref="PonderServerOptions.ShutdownTimeout"/>. No CORS headers are
/// sent and POSTs must be <c>application/json</c>, so a web page on another origin cannot drive the server.
/// </para>
/// </summary>
public static class PonderServer
{
    // Relaxed escaping: bodies are JSON for API clients, never embedded in HTML.
    static readonly JsonSerializerOptions Json = new() { DefaultIgnoreCondition = JsonIgnoreCondition.Never, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Builds (does not start) a web application serving <paramref name="engine"/>.</summary>
    public static WebApplication Create(CompletionEngine engine, PonderServerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(engine);
        options ??= new PonderServerOptions();
        var limits = options.Limits.Validate();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(options.LogLevel);
        builder.WebHost.UseUrls([.. options.Urls]);
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = limits.MaxBodyBytes);
        // The host waits a little longer than the drain so cancelled requests can still write their error.
        builder.Services.Configure<Microsoft.Extensions.Hosting.HostOptions>(h => h.ShutdownTimeout = options.ShutdownTimeout + TimeSpan.FromSeconds(5));
        var app = builder.Build();
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Ponder.Server");
        var template = options.Template ?? ChatTemplate.ForModel(engine.Model, options.AllowChatMlFallback, logger);
        if (limits.MaxRequestKvShare is { } share) engine.MaxRequestKvTokens = (long)(share * engine.Model.KvCacheCapacityTokens);
        var lifetime = app.Services.GetRequiredService<Microsoft.Extensions.Hosting.IHostApplicationLifetime>();
        var drain = new CancellationTokenSource();
        lifetime.ApplicationStopping.Register(() => drain.CancelAfter(options.ShutdownTimeout));
        lifetime.ApplicationStopped.Register(drain.Dispose);
        app.UsePonderAccessChecks(options, logger);
        app.MapPonderApi(engine, template, limits, drain.Token, logger);
        return app;
    }

    /// <summary>Maps the /v1 endpoints onto an existing application (its host adds the access checks <see cref="Create"/> adds).</summary>
    public static IEndpointRouteBuilder MapPonderApi(this IEndpointRouteBuilder app, CompletionEngine engine, ChatTemplate template, ServerLimits? limits = null,
        CancellationToken shutdown = default, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(template);
        limits = (limits ?? new ServerLimits()).Validate();
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        int maxPositions = engine.Model.Config.MaxPositions;
        var slots = new SemaphoreSlim(limits.MaxConcurrentRequests, limits.MaxConcurrentRequests);
        var serving = new Serving(engine, limits, slots, shutdown, logger);

        app.MapGet("/v1/models", () => Results.Json(new
        {
            @object = "list",
            data = new[] { new { id = engine.ModelId, @object = "model", created, owned_by = "ponder" } },
        }, Json));

        app.MapPost("/v1/completions", (HttpContext ctx) =>
            HandleAsync(ctx, serving, body => OpenAiRequests.Completion(body, maxPositions, limits), chat: false));
        app.MapPost("/v1/chat/completions", (HttpContext ctx) =>
            HandleAsync(ctx, serving, body => OpenAiRequests.Chat(body, template, maxPositions, limits), chat: true));
        return app;
    }

    /// <summary>
    /// The access checks <see cref="Create"/> adds before any route (Host header, API key, JSON POST bodies, a JSON body
    /// for bare error statuses), for a host serving the same API another way (a cluster front end).
    /// </summary>
    public static IApplicationBuilder UsePonderAccessChecks(this IApplicationBuilder app, PonderServerOptions options, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(options);
        var allowedHosts = AllowedHosts(options);
        byte[]? apiKey = string.IsNullOrEmpty(options.ApiKey) ? null : System.Text.Encoding.UTF8.GetBytes(options.ApiKey);
        return app.Use((ctx, next) => GuardAsync(ctx, next, allowedHosts, apiKey, logger));
    }

    sealed record Serving(CompletionEngine Engine, ServerLimits Limits, SemaphoreSlim Slots, CancellationToken Shutdown, ILogger? Logger);

    /// <summary>Host, API key and content type, before any route runs; then a JSON body for any bare error status.</summary>
    static async Task GuardAsync(HttpContext ctx, Func<Task> next, HashSet<string> allowedHosts, byte[]? apiKey, ILogger logger)
    {
        var request = ctx.Request;
        if (!allowedHosts.Contains(request.Host.Host))
        {
            await ErrorAsync(ctx, 400, "the Host header is not one this server answers to (see --allowed-hosts)", "invalid_request_error", null, "invalid_host");
            return;
        }
        if (apiKey is not null && !Authorized(request, apiKey))
        {
            ctx.Response.Headers.WWWAuthenticate = "Bearer";
            await ErrorAsync(ctx, 401, "a valid API key is required (Authorization: Bearer <key>)", "invalid_request_error", null, "invalid_api_key");
            return;
        }
        if (HttpMethods.IsPost(request.Method) && !IsJson(request.ContentType))
        {
            await ErrorAsync(ctx, 415, "POST bodies must be application/json", "invalid_request_error", null, "unsupported_media_type");
            return;
        }
        try { await next(); }
        catch (Exception e) when (!ctx.Response.HasStarted && !ctx.RequestAborted.IsCancellationRequested)
        {
            logger.LogError(e, "unhandled error on {Path}", request.Path);
            ctx.Response.Clear();
            await ErrorAsync(ctx, 500, "the server failed on this request", "server_error", null, null);
            return;
        }
        // Unknown routes, wrong methods: the framework's bare status gets an error body.
        if (!ctx.Response.HasStarted && ctx.Response.StatusCode >= 400 && ctx.Response.ContentLength is null or 0 && ctx.Response.ContentType is null)
        {
            int status = ctx.Response.StatusCode;
            string message = status switch { 404 => $"no route {request.Method} {request.Path}", 405 => $"{request.Method} is not allowed on {request.Path}", _ => $"HTTP {status}" };
            await ErrorAsync(ctx, status, message, status >= 500 ? "server_error" : "invalid_request_error", null, null);
        }
    }

    static bool Authorized(HttpRequest request, byte[] apiKey)
    {
        string header = request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return false;
        byte[] given = System.Text.Encoding.UTF8.GetBytes(header["Bearer ".Length..].Trim());
        // Constant time in the key's bytes: the comparison does not tell how much of a guess was right.
        return System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(given, apiKey);
    }

    static bool IsJson(string? contentType) =>
        contentType is not null && Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(contentType, out var media)
        && (media.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase)
            || media.MediaType.Value is { } t && t.StartsWith("application/", StringComparison.OrdinalIgnoreCase) && t.EndsWith("+json", StringComparison.OrdinalIgnoreCase));

    static readonly string[] LoopbackNames = ["localhost", "127.0.0.1", "[::1]", "::1"];

    static HashSet<string> AllowedHosts(PonderServerOptions options)
    {
        var hosts = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        if (options.AllowedHosts is { } given) { hosts.UnionWith(given.Select(h => h.Trim())); return hosts; }
        foreach (string url in options.Urls)
        {
            string host = Uri.TryCreate(url.Replace("://*", "://0.0.0.0").Replace("://+", "://0.0.0.0"), UriKind.Absolute, out var uri) ? uri.Host : "";
            bool loopbackOrAny = host is "" or "0.0.0.0" or "[::]" or "::" || host.Equals("localhost", StringComparison.OrdinalIgnoreCase)
                                 || System.Net.IPAddress.TryParse(host.Trim('[', ']'), out var ip) && (System.Net.IPAddress.IsLoopback(ip) || ip.Equals(System.Net.IPAddress.Any) || ip.Equals(System.Net.IPAddress.IPv6Any));
            if (loopbackOrAny) hosts.UnionWith(LoopbackNames);
            else hosts.Add(host);
        }
        return hosts;
    }

    static async Task HandleAsync(HttpContext ctx, Serving serving, Func<JsonElement, ParsedRequest> parse, bool chat)
    {
        var limits = serving.Limits;
        if (ctx.Request.ContentLength > limits.MaxBodyBytes)
        {
            await ErrorAsync(ctx, 413, $"the request body is {ctx.Request.ContentLength} bytes; this server takes at most {limits.MaxBodyBytes}", "invalid_request_error", null, "request_too_large");
            return;
        }
        if (!await serving.Slots.WaitAsync(limits.QueueTimeout, ctx.RequestAborted).ConfigureAwait(false))
        {
            ctx.Response.Headers.RetryAfter = limits.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await ErrorAsync(ctx, 503, $"the server is busy ({limits.MaxConcurrentRequests} requests running); retry later", "server_error", null, "server_busy");
            return;
        }
        using var timeout = new CancellationTokenSource(limits.RequestTimeout);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, timeout.Token, serving.Shutdown);
        var ct = linked.Token;
        var engine = serving.Engine;
        IAsyncEnumerator<CompletionChunk>? chunks = null;
        bool stream = false;
        try
        {
            ParsedRequest request = await OpenAiRequests.ParseBodyAsync(ctx.Request.Body, parse, ct);
            stream = request.Stream;
            chunks = engine.StreamAsync(request.Prompt, request.Sampling, request.Compute, ct).GetAsyncEnumerator(ct);
            // The first step validates the options (budget, strategy, prompt length) before any byte of the answer is sent.
            bool any = await chunks.MoveNextAsync();
            string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
            long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            if (request.Stream) await StreamAsync(ctx, chunks, any, id, created, engine.ModelId, chat, ct);
            else await WholeAsync(ctx, chunks, any, id, created, engine.ModelId, chat, ct);
        }
        catch (Exception e) when (!ctx.RequestAborted.IsCancellationRequested)
        {
            await FailAsync(ctx, e, chat, stream, timeout.IsCancellationRequested, serving);
        }
        catch (Exception)
        {
            // The client went away: the engine cancelled its work and freed its blocks; nobody is left to answer.
        }
        finally
        {
            try { if (chunks is not null) await chunks.DisposeAsync(); }
            finally { serving.Slots.Release(); }
        }
    }

    /// <summary>Turns a failure into the answer the client gets: a JSON error before the response started, else a final SSE error event and [DONE].</summary>
    static async Task FailAsync(HttpContext ctx, Exception e, bool chat, bool stream, bool timedOut, Serving serving)
    {
        var limits = serving.Limits;
        string retryAfter = limits.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        (int Status, string Message, string Type, string? Param, string? Code) error = e switch
        {
            BadRequestException b => (400, b.Message, b.Type, b.Param, b.Code),
            Microsoft.AspNetCore.Http.BadHttpRequestException h => (h.StatusCode, h.StatusCode == 413
                ? $"the request body is over this server's limit of {limits.MaxBodyBytes} bytes" : "the request could not be read", "invalid_request_error", null, h.StatusCode == 413 ? "request_too_large" : null),
            Ponder.Cache.KvCacheFullException => (503, "the KV cache is full; retry later", "server_error", null, "kv_cache_full"),
            OperationCanceledException when timedOut => (504, $"the request ran past this server's limit of {limits.RequestTimeout.TotalSeconds:0.###} s and was cancelled", "server_error", null, "timeout"),
            OperationCanceledException when serving.Shutdown.IsCancellationRequested => (503, "the server is shutting down", "server_error", null, "shutting_down"),
            ArgumentException a => (400, OpenAiRequests.StripParam(a), "invalid_request_error", OpenAiRequests.ParamOf(a.ParamName, chat), null),
            _ => (500, "the server failed on this request", "server_error", null, null),
        };
        if (error.Status == 500) serving.Logger?.LogError(e, "request failed");
        if (!ctx.Response.HasStarted)
        {
            if (error.Status == 503) ctx.Response.Headers.RetryAfter = retryAfter;
            await ErrorAsync(ctx, error.Status, error.Message, error.Type, error.Param, error.Code);
            return;
        }
        if (!stream) return; // a whole answer's body starts only once it is complete: nothing can fail after that
        try
        {
            await ctx.Response.WriteAsync("data: " + JsonSerializer.Serialize(ErrorBody(error.Message, error.Type, error.Param, error.Code), Json) + "\n\ndata: [DONE]\n\n", CancellationToken.None);
            await ctx.Response.Body.FlushAsync(CancellationToken.None);
        }
        catch (Exception write) when (write is IOException or OperationCanceledException or ObjectDisposedException) { }
    }
    static async Task WholeAsync(HttpContext ctx, IAsyncEnumerator<CompletionChunk> chunks, bool any, string id, long created, string model, bool chat, CancellationToken ct)
    {
        var text = new System.Text.StringBuilder();
        CompletionReport? report = null;
        while (any)
        {
            text.Append(chunks.Current.Text);
            report ??= chunks.Current.Report;
            any = await chunks.MoveNextAsync();
        }
        object choice = chat
            ? new { index = 0, message = new { role = "assistant", content = text.ToString() }, finish_reason = report!.FinishReason, logprobs = (object?)null }
            : new { index = 0, text = text.ToString(), finish_reason = report!.FinishReason, logprobs = (object?)null };
        await Results.Json(new
        {
            id, @object = chat ? "chat.completion" : "text_completion", created, model,
            choices = new[] { choice },
            usage = Usage(report),
            ponder = report.ToProperties(),
        }, Json).ExecuteAsync(ctx);
    }

    static async Task StreamAsync(HttpContext ctx, IAsyncEnumerator<CompletionChunk> chunks, bool any, string id, long created, string model, bool chat, CancellationToken ct)
    {
        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        string kind = chat ? "chat.completion.chunk" : "text_completion";
        bool first = true;
        while (any)
        {
            var chunk = chunks.Current;
            if (chunk.Report is { } report)
            {
                object last = chat
                    ? new { index = 0, delta = new { }, finish_reason = report.FinishReason, logprobs = (object?)null }
                    : new { index = 0, text = "", finish_reason = report.FinishReason, logprobs = (object?)null };
                await EventAsync(ctx, new { id, @object = kind, created, model, choices = new[] { last }, usage = Usage(report), ponder = report.ToProperties() }, ct);
            }
            else if (chunk.Text.Length > 0 || first)
            {
                object delta = chat
                    ? new { index = 0, delta = first ? new { role = (string?)"assistant", content = chunk.Text } : new { role = (string?)null, content = chunk.Text }, finish_reason = (string?)null, logprobs = (object?)null }
                    : new { index = 0, text = chunk.Text, finish_reason = (string?)null, logprobs = (object?)null };
                await EventAsync(ctx, new { id, @object = kind, created, model, choices = new[] { delta } }, ct);
                first = false;
            }
            any = await chunks.MoveNextAsync();
        }
        await ctx.Response.WriteAsync("data: [DONE]\n\n", ct);
        await ctx.Response.Body.FlushAsync(ct);
    }

    static async Task EventAsync(HttpContext ctx, object payload, CancellationToken ct)
    {
        await ctx.Response.WriteAsync("data: " + JsonSerializer.Serialize(payload, Json) + "\n\n", ct);
        await ctx.Response.Body.FlushAsync(ct);
    }

    static object Usage(CompletionReport report) => new
    {
        prompt_tokens = report.InputTokens,
        completion_tokens = report.OutputTokens,
        total_tokens = report.InputTokens + report.OutputTokens,
    };

    static object ErrorBody(string message, string type, string? param, string? code) => new { error = new { message, type, param, code } };

    static Task ErrorAsync(HttpContext ctx, int status, string message, string type, string? param, string? code) =>
        Results.Json(ErrorBody(message, type, param, code), Json, statusCode: status).ExecuteAsync(ctx);
}
