using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans;
using Orleans.Runtime;
using Ponder.Hosting;
using Ponder.Server;

namespace Ponder.Cluster;

/// <summary>A silo's OpenAI-compatible endpoint.</summary>
/// <param name="Silo">The silo.</param>
/// <param name="Name">Its display name (the router's key).</param>
/// <param name="Url">Base URL of its server (e.g. http://10.0.0.7:9101).</param>
/// <param name="ModelId">The model it serves.</param>
[GenerateSerializer, Immutable]
public sealed record ServingEndpoint(SiloAddress Silo, string Name, string Url, string ModelId);

/// <summary>The silos that serve requests (key 0): they announce themselves; front ends list the live ones.</summary>
public interface IServingRegistry : IGrainWithIntegerKey
{
    /// <summary>A silo serves at <paramref name="endpoint"/> (repeated as its heartbeat).</summary>
    Task AnnounceAsync(ServingEndpoint endpoint);
    /// <summary>The endpoints of live silos: announced within the timeout and not dead in membership.</summary>
    Task<IReadOnlyList<ServingEndpoint>> ListAsync();
}

/// <summary>The <see cref="IServingRegistry"/> grain (in memory: silos announce again after it moves).</summary>
public sealed class ServingRegistryGrain(IClusterMembershipService membership, IOptions<ServingOptions> options) : Grain, IServingRegistry
{
    readonly Dictionary<SiloAddress, (ServingEndpoint Endpoint, DateTime Seen)> _endpoints = [];

    /// <inheritdoc />
    public Task AnnounceAsync(ServingEndpoint endpoint)
    {
        _endpoints[endpoint.Silo] = (endpoint, DateTime.UtcNow);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<ServingEndpoint>> ListAsync()
    {
        var now = DateTime.UtcNow;
        var snapshot = membership.CurrentSnapshot;
        foreach (var (silo, (_, seen)) in _endpoints.ToList())
            if (snapshot.GetSiloStatus(silo) == SiloStatus.Dead || now - seen > options.Value.AnnounceTimeout) _endpoints.Remove(silo);
        return Task.FromResult<IReadOnlyList<ServingEndpoint>>([.. _endpoints.Values.Select(e => e.Endpoint).OrderBy(e => e.Name, StringComparer.Ordinal)]);
    }
}

/// <summary>How a silo serves.</summary>
public sealed class ServingOptions
{
    /// <summary>The silo's server options (URLs, API key, limits); null = the silo does not serve.</summary>
    public PonderServerOptions? Server { get; set; }
    /// <summary>The URL front ends reach this silo at (default: its first listening address).</summary>
    public string? AdvertisedUrl { get; set; }
    /// <summary>How often the silo announces itself.</summary>
    public TimeSpan AnnounceInterval { get; set; } = TimeSpan.FromSeconds(2);
    /// <summary>A silo not heard from this long is dropped from the list.</summary>
    public TimeSpan AnnounceTimeout { get; set; } = TimeSpan.FromSeconds(10);
}

/// <summary>
/// Serves the silo's policy (and PRM) with <see cref="PonderServer"/>, on the same models and scheduler its sweep jobs
/// use, and announces the endpoint to the <see cref="IServingRegistry"/>.
/// </summary>
public sealed class SiloServing(SiloEngine engine, IGrainFactory grains, ILocalSiloDetails silo, IOptions<ServingOptions> options, ILogger<SiloServing> logger)
    : BackgroundService
{
    /// <summary>The endpoint once listening.</summary>
    public ServingEndpoint? Endpoint { get; private set; }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value;
        if (o.Server is null) return;
        var models = engine.Models;
        using var completions = new CompletionEngine(models.Policy.Model, models.Prm is { } prm && !models.SharedPrm ? prm.Model : null);
        await using var app = PonderServer.Create(completions, o.Server);
        await app.StartAsync(stoppingToken);
        Endpoint = new ServingEndpoint(silo.SiloAddress, engine.Name, o.AdvertisedUrl ?? app.Urls.First(), completions.ModelId);
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                try { await grains.GetGrain<IServingRegistry>(0).AnnounceAsync(Endpoint); }
                catch (Exception e) when (e is not OperationCanceledException) { logger.LogDebug(e, "announce from {Silo} failed", engine.Name); }
                await Task.Delay(o.AnnounceInterval, stoppingToken);
            }
        }
        catch (OperationCanceledException) { }
        finally { await app.StopAsync(CancellationToken.None); }
    }
}

/// <summary>
/// The cluster's serving front end: the same OpenAI-compatible API and access checks as <see cref="PonderServer"/>,
/// each request forwarded whole to one silo's server (so its FLOP report and errors are the silo's, unchanged), the silo
/// chosen by an <see cref="IRequestRouter"/> (prefix affinity by default) among the live ones the registry lists. A silo
/// that refuses the connection is forgotten and the request goes to another; once a silo has started answering, its
/// answer is the request's.
/// </summary>
public static class ClusterFrontEnd
{
    /// <summary>The routing decisions made, per silo name (tests and the bench read them).</summary>
    public sealed class RoutingLog
    {
        readonly List<(string Text, string Silo)> _decisions = [];
        /// <summary>Decisions in order.</summary>
        public IReadOnlyList<(string Text, string Silo)> Decisions { get { lock (_decisions) return [.. _decisions]; } }
        internal void Add(string text, string silo) { lock (_decisions) _decisions.Add((text, silo)); }
    }

    /// <summary>Builds (does not start) the front end.</summary>
    public static WebApplication Create(IGrainFactory grains, PonderServerOptions options, IRequestRouter? router = null, RoutingLog? log = null)
    {
        ArgumentNullException.ThrowIfNull(grains);
        ArgumentNullException.ThrowIfNull(options);
        router ??= new PrefixAffinityRouter();
        var limits = options.Limits.Validate();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(options.LogLevel);
        builder.WebHost.UseUrls([.. options.Urls]);
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = limits.MaxBodyBytes);
        var app = builder.Build();
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Ponder.Cluster.FrontEnd");
        app.UsePonderAccessChecks(options, logger);
        var http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) }) { Timeout = limits.RequestTimeout + TimeSpan.FromSeconds(30) };
        app.Lifetime.ApplicationStopped.Register(http.Dispose);
        var registry = grains.GetGrain<IServingRegistry>(0);
        app.MapGet("/v1/models", (HttpContext ctx) => ForwardAsync(ctx, http, registry, router, log, "", null));
        app.MapPost("/v1/completions", async (HttpContext ctx) => await ForwardBodyAsync(ctx, http, registry, router, log, chat: false));
        app.MapPost("/v1/chat/completions", async (HttpContext ctx) => await ForwardBodyAsync(ctx, http, registry, router, log, chat: true));
        return app;
    }

    static async Task ForwardBodyAsync(HttpContext ctx, HttpClient http, IServingRegistry registry, IRequestRouter router, RoutingLog? log, bool chat)
    {
        using var buffer = new MemoryStream();
        await ctx.Request.Body.CopyToAsync(buffer, ctx.RequestAborted);
        byte[] body = buffer.ToArray();
        await ForwardAsync(ctx, http, registry, router, log, RouteText(body, chat), body);
    }

    /// <summary>
    /// The text whose prefix decides the route: the completion's prompt, or the chat messages' roles and contents in
    /// order (what the chat template renders first). A body the silo will refuse routes by nothing ("").
    /// </summary>
    public static string RouteText(byte[] body, bool chat)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            var root = doc.RootElement;
            if (!chat) return root.TryGetProperty("prompt", out var p) && p.ValueKind == JsonValueKind.String ? p.GetString()! : "";
            if (!root.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array) return "";
            var text = new StringBuilder();
            foreach (var m in messages.EnumerateArray())
            {
                if (m.ValueKind != JsonValueKind.Object) break;
                if (m.TryGetProperty("role", out var role) && role.ValueKind == JsonValueKind.String) text.Append(role.GetString()).Append('\n');
                if (m.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String) text.Append(content.GetString()).Append('\n');
            }
            return text.ToString();
        }
        catch (JsonException) { return ""; }
    }

    static async Task ForwardAsync(HttpContext ctx, HttpClient http, IServingRegistry registry, IRequestRouter router, RoutingLog? log, string text, byte[]? body)
    {
        var live = (await registry.ListAsync()).ToList();
        while (live.Count > 0)
        {
            string name = router.Choose(text, [.. live.Select(e => e.Name)]);
            var endpoint = live.First(e => e.Name == name);
            HttpResponseMessage response;
            try
            {
                using var request = new HttpRequestMessage(body is null ? HttpMethod.Get : HttpMethod.Post, endpoint.Url.TrimEnd('/') + ctx.Request.Path);
                if (body is not null)
                {
                    request.Content = new ByteArrayContent(body);
                    request.Content.Headers.TryAddWithoutValidation("Content-Type", ctx.Request.ContentType);
                }
                if (ctx.Request.Headers.Authorization.Count > 0) request.Headers.TryAddWithoutValidation("Authorization", ctx.Request.Headers.Authorization.ToString());
                response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ctx.RequestAborted);
            }
            catch (HttpRequestException)
            {
                // Gone (connection refused or reset before an answer): forget it and route again among the rest.
                router.Done(name);
                router.Forget(name);
                live.Remove(endpoint);
                continue;
            }
            log?.Add(text, name);
            try
            {
                using (response)
                {
                    ctx.Response.StatusCode = (int)response.StatusCode;
                    foreach (var h in response.Headers.Concat(response.Content.Headers))
                        if (!h.Key.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase) && !h.Key.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
                            ctx.Response.Headers[h.Key] = h.Value.ToArray();
                    await using var stream = await response.Content.ReadAsStreamAsync(ctx.RequestAborted);
                    // Streamed through as it comes: server-sent events reach the client chunk by chunk.
                    var chunk = new byte[16 * 1024];
                    int n;
                    while ((n = await stream.ReadAsync(chunk, ctx.RequestAborted)) > 0)
                    {
                        await ctx.Response.Body.WriteAsync(chunk.AsMemory(0, n), ctx.RequestAborted);
                        await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
                    }
                }
            }
            finally { router.Done(name); }
            return;
        }
        ctx.Response.StatusCode = (int)HttpStatusCode.ServiceUnavailable;
        ctx.Response.Headers.RetryAfter = "5";
        await ctx.Response.WriteAsJsonAsync(new { error = new { message = "no silo is serving (none announced, or all are gone)", type = "server_error", param = (string?)null, code = "no_silo" } });
    }
}
