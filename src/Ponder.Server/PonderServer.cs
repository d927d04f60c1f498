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
/// budget_flops, budget_generations, max_step_tokens, max_rounds}</c> selects test-time compute; every response has
/// <c>ponder: {strategy, flops: {total, projection, attention, lm_head, prm_head, elementwise}, generations, ...}</c>.
/// A search ignores <c>max_tokens</c>: each branch is bounded by <c>max_step_tokens</c> × <c>max_rounds</c>, the whole
/// search by its budget. Client mistakes are 400 with <c>{"error": {"message", "type", "param", "code"}}</c>; a client that disconnects
/// cancels its request (its KV blocks return to the pool).
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
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(options.LogLevel);
        builder.WebHost.UseUrls([.. options.Urls]);
        var app = builder.Build();
        var template = options.Template ?? ChatTemplate.ForModel(engine.Model, options.AllowChatMlFallback,
            app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Ponder.Server"));
        app.MapPonderApi(engine, template);
        return app;
    }

    /// <summary>Maps the /v1 endpoints onto an existing application.</summary>
    public static IEndpointRouteBuilder MapPonderApi(this IEndpointRouteBuilder app, CompletionEngine engine, ChatTemplate template)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(template);
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        int maxPositions = engine.Model.Config.MaxPositions;

        app.MapGet("/v1/models", () => Results.Json(new
        {
            @object = "list",
            data = new[] { new { id = engine.ModelId, @object = "model", created, owned_by = "ponder" } },
        }, Json));

        app.MapPost("/v1/completions", (HttpContext ctx) =>
            HandleAsync(ctx, engine, body => OpenAiRequests.Completion(body, maxPositions), chat: false));
        app.MapPost("/v1/chat/completions", (HttpContext ctx) =>
            HandleAsync(ctx, engine, body => OpenAiRequests.Chat(body, template, maxPositions), chat: true));
        return app;
    }

    static async Task HandleAsync(HttpContext ctx, CompletionEngine engine, Func<JsonElement, ParsedRequest> parse, bool chat)
    {
        var ct = ctx.RequestAborted;
        IAsyncEnumerator<CompletionChunk>? chunks = null;
        ParsedRequest request;
        try
        {
            JsonDocument doc;
            try { doc = await JsonDocument.ParseAsync(ctx.Request.Body, cancellationToken: ct); }
            catch (JsonException e) { throw new BadRequestException($"the request body is not valid JSON: {e.Message}"); }
            using (doc) request = parse(doc.RootElement);
            chunks = engine.StreamAsync(request.Prompt, request.Sampling, request.Compute, ct).GetAsyncEnumerator(ct);
            // The first step validates the options (budget, strategy, prompt length) before any byte of the answer is sent.
            bool any = await chunks.MoveNextAsync();
            string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
            long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            if (request.Stream) await StreamAsync(ctx, chunks, any, id, created, engine.ModelId, chat, ct);
            else await WholeAsync(ctx, chunks, any, id, created, engine.ModelId, chat, ct);
        }
        catch (BadRequestException e) when (!ctx.Response.HasStarted)
        {
            await ErrorAsync(ctx, 400, e.Message, e.Type, e.Param);
        }
        catch (ArgumentException e) when (!ctx.Response.HasStarted)
        {
            string? param = e.ParamName switch { null => null, "prompt" => chat ? "messages" : "prompt", _ => "ponder." + e.ParamName };
            await ErrorAsync(ctx, 400, OpenAiRequests.StripParam(e), "invalid_request_error", param);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client went away: the engine cancelled its work and freed its blocks; nobody is left to answer.
        }
        finally
        {
            if (chunks is not null) await chunks.DisposeAsync();
        }
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

    static Task ErrorAsync(HttpContext ctx, int status, string message, string type, string? param) =>
        Results.Json(new { error = new { message, type, param, code = (string?)null } }, Json, statusCode: status).ExecuteAsync(ctx);
}
