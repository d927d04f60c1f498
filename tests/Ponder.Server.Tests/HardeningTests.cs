using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Ponder.Hosting;
using Ponder.Tests.Hosting;

namespace Ponder.Server.Tests;

/// <summary>
/// The server's limits, admission, access checks and shutdown, each on its own small server. Where a request must be
/// caught in flight, the test holds the scheduler between rounds (RunExclusive), so the request cannot make
/// progress until the test lets it: outcomes depend on that order, never on how fast the machine is.
/// </summary>
public sealed class HardeningTests
{
    static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);
    const string Chat = """{"messages":[{"role":"user","content":"Q: 2+3"}],"temperature":0,"max_tokens":8}""";

    /// <summary>A policy (+ PRM) served on a free loopback port with the given options.</summary>
    sealed class TestServer : IAsyncDisposable
    {
        public PonderModel Policy { get; }
        public PonderModel Prm { get; } = HostingTestModels.Prm();
        public CompletionEngine Engine { get; }
        public WebApplication App { get; }
        public HttpClient Http { get; private set; } = null!;
        bool _stopped;

        TestServer(PonderServerOptions options, int kvTokens)
        {
            Policy = HostingTestModels.Policy(kvTokens: kvTokens, location: "random-policy");
            Engine = new CompletionEngine(Policy, Prm, namedPrms: new Dictionary<string, PonderModel> { ["small"] = Prm });
            App = PonderServer.Create(Engine, options with { Urls = ["http://127.0.0.1:0"], AllowChatMlFallback = true });
        }

        public static async Task<TestServer> StartAsync(PonderServerOptions? options = null, int kvTokens = 8192)
        {
            var server = new TestServer(options ?? new PonderServerOptions(), kvTokens);
            await server.App.StartAsync();
            server.Http = new HttpClient { BaseAddress = new Uri(server.App.Urls.Single()), Timeout = Bound };
            return server;
        }

        public async Task StopAsync() { _stopped = true; await App.StopAsync(); }

        public async ValueTask DisposeAsync()
        {
            Http.Dispose();
            if (!_stopped) await App.StopAsync();
            await App.DisposeAsync();
            HostingTestModels.AssertNoLeaks(Policy);
            Engine.Dispose();
            Prm.Dispose();
            Policy.Dispose();
        }
    }

    /// <summary>Holds the scheduler between rounds (RunExclusive) on a thread of its own until disposed: no round runs meanwhile.</summary>
    sealed class Stall : IDisposable
    {
        readonly ManualResetEventSlim _held = new(), _release = new();
        readonly Thread _thread;

        public Stall(PonderModel model)
        {
            _thread = new Thread(() => { model.Scheduler.RunExclusive(() => { _held.Set(); _release.Wait(); }); }) { IsBackground = true };
            _thread.Start();
            _held.Wait();
        }

        public void Dispose() { _release.Set(); _thread.Join(); }
    }

    static StringContent JsonBody(string json) => new(json, Encoding.UTF8, "application/json");

    static async Task<(HttpStatusCode Status, JsonElement Error, HttpResponseMessage Response)> SendAsync(HttpClient http, HttpRequestMessage request)
    {
        var response = await http.SendAsync(request).WaitAsync(Bound);
        string text = await response.Content.ReadAsStringAsync();
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var body = JsonDocument.Parse(text).RootElement.Clone();
        return (response.StatusCode, body.TryGetProperty("error", out var e) ? e : default, response);
    }

    static Task<(HttpStatusCode Status, JsonElement Error, HttpResponseMessage Response)> PostAsync(HttpClient http, string path, string json) =>
        SendAsync(http, new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonBody(json) });

    static void AssertRetryAfter(HttpResponseMessage response) => Assert.True(response.Headers.RetryAfter?.Delta is { } d && d >= TimeSpan.Zero, "a 503 carries Retry-After");

    [Fact]
    public async Task ARegisteredPrmIsChosenByNameAndPathsAreNeverRead()
    {
        await using var server = await TestServer.StartAsync();
        var (status, _, response) = await PostAsync(server.Http, "/v1/chat/completions",
            """{"messages":[{"role":"user","content":"Q: 2+3"}],"ponder":{"strategy":"beam","n":4,"beam_width":2,"prm":"small","max_step_tokens":4,"max_rounds":2}}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var ok = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.True(ok.GetProperty("ponder").GetProperty("flops_by_model").TryGetProperty("prm", out _));

        // A path that exists on the server and one that does not get the same answer: nothing is read, nothing leaks.
        string existing = AppContext.BaseDirectory.Replace("\\", "\\\\");
        var (s1, e1, _) = await PostAsync(server.Http, "/v1/chat/completions", $$$"""{"messages":[{"role":"user","content":"x"}],"ponder":{"prm":"{{{existing}}}"}}""");
        var (s2, e2, _) = await PostAsync(server.Http, "/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"ponder":{"prm":"/no/such/file"}}""");
        Assert.Equal(HttpStatusCode.BadRequest, s1);
        Assert.Equal(HttpStatusCode.BadRequest, s2);
        Assert.Equal(e1.GetProperty("message").GetString(), e2.GetProperty("message").GetString());
        Assert.Contains("registered: small", e1.GetProperty("message").GetString());
        Assert.DoesNotContain(AppContext.BaseDirectory.TrimEnd('/', '\\'), e1.GetProperty("message").GetString());
        Assert.Equal("ponder.prm", e1.GetProperty("param").GetString());
    }

    [Fact]
    public async Task OversizedBodiesAre413AndLongPromptsAre400BeforeTokenization()
    {
        await using var server = await TestServer.StartAsync(new PonderServerOptions { Limits = new ServerLimits { MaxBodyBytes = 2000, MaxPromptChars = 300 } });
        string big = new('a', 5000);
        var (status, error, _) = await PostAsync(server.Http, "/v1/completions", $$"""{"prompt":"{{big}}"}""");
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Equal("request_too_large", error.GetProperty("code").GetString());

        // Without a Content-Length (chunked), the limit is met while reading. The server answers and closes while the
        // client may still be sending the rest; the client then sees the connection reset before it reads the answer
        // (a transport race, not a server fault): such an attempt is repeated, at most three times.
        for (int attempt = 1; ; attempt++)
        {
            var chunked = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes($$"""{"prompt":"{{big}}"}""")));
            chunked.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = chunked };
            request.Headers.TransferEncodingChunked = true;
            try { (status, error, _) = await SendAsync(server.Http, request); }
            catch (HttpRequestException e) when (attempt < 3 && e.InnerException is IOException) { continue; }
            break;
        }
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);

        string long400 = new('b', 400);
        (status, error, _) = await PostAsync(server.Http, "/v1/completions", $$"""{"prompt":"{{long400}}"}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(("prompt", "context_length_exceeded"), (error.GetProperty("param").GetString(), error.GetProperty("code").GetString()));
        (status, error, _) = await PostAsync(server.Http, "/v1/chat/completions",
            "{\"messages\":[{\"role\":\"system\",\"content\":\"" + new string('c', 200) + "\"},{\"role\":\"user\",\"content\":\"" + new string('d', 200) + "\"}]}");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("messages", error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task OverTheConcurrencyLimitARequestGets503WithRetryAfter()
    {
        await using var server = await TestServer.StartAsync(new PonderServerOptions { Limits = new ServerLimits { MaxConcurrentRequests = 1, QueueTimeout = TimeSpan.Zero } });
        Task<(HttpStatusCode, JsonElement, HttpResponseMessage)> a, b;
        using (new Stall(server.Policy))
        {
            a = PostAsync(server.Http, "/v1/chat/completions", Chat);
            b = PostAsync(server.Http, "/v1/chat/completions", Chat);
            // Nothing can generate while stalled: the first to finish is the one refused for want of a slot.
            var refused = await await Task.WhenAny(a, b).WaitAsync(Bound);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.Item1);
            Assert.Equal("server_busy", refused.Item2.GetProperty("code").GetString());
            AssertRetryAfter(refused.Item3);
        }
        var results = await Task.WhenAll(a, b).WaitAsync(Bound);
        Assert.Single(results, r => r.Item1 == HttpStatusCode.OK);
    }

    [Fact]
    public async Task AFullKvCacheIs503WithAJsonBodyAndAStreamEndsWithAnErrorEventAndDone()
    {
        // 64 tokens of cache and no per-request bound: a 40-token prompt asking for 100 more runs out mid-answer.
        await using var server = await TestServer.StartAsync(new PonderServerOptions { Limits = new ServerLimits { MaxRequestKvShare = null } }, kvTokens: 64);
        string prompt = new('q', 40);
        var (status, error, response) = await PostAsync(server.Http, "/v1/completions", $$"""{"prompt":"{{prompt}}","max_tokens":100,"temperature":0}""");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Equal("kv_cache_full", error.GetProperty("code").GetString());
        AssertRetryAfter(response);

        using var streamed = await server.Http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            { Content = JsonBody($$"""{"prompt":"{{prompt}}","max_tokens":100,"temperature":0,"stream":true}""") }, HttpCompletionOption.ResponseHeadersRead).WaitAsync(Bound);
        Assert.Equal(HttpStatusCode.OK, streamed.StatusCode);
        var lines = (await streamed.Content.ReadAsStringAsync().WaitAsync(Bound)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", lines[^1]);
        var last = JsonDocument.Parse(lines[^2]["data: ".Length..]).RootElement;
        Assert.Equal("kv_cache_full", last.GetProperty("error").GetProperty("code").GetString());
        Assert.True(lines.Length > 2, "the stream sent text before the cache ran out");
    }

    [Fact]
    public async Task ARequestPastItsTimeoutIsCancelledWith504()
    {
        await using var server = await TestServer.StartAsync(new PonderServerOptions { Limits = new ServerLimits { RequestTimeout = TimeSpan.FromMilliseconds(100) } });
        Task<(HttpStatusCode, JsonElement, HttpResponseMessage)> pending;
        using (new Stall(server.Policy))
        {
            pending = PostAsync(server.Http, "/v1/chat/completions", Chat);
            // The stall outlasts the timeout many times over; the request cannot have finished any round.
            await Task.Delay(TimeSpan.FromSeconds(1.5));
        }
        var (status, error, _) = await pending.WaitAsync(Bound);
        Assert.Equal(HttpStatusCode.GatewayTimeout, status);
        Assert.Equal("timeout", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task ShutdownStopsAcceptingAndCancelsInFlightWorkAfterTheTimeout()
    {
        var server = await TestServer.StartAsync(new PonderServerOptions { ShutdownTimeout = TimeSpan.FromMilliseconds(100) });
        await using (server)
        {
            Task<(HttpStatusCode, JsonElement, HttpResponseMessage)> pending;
            Task stopping;
            // An open, warm connection first: the request below must be accepted before the server stops listening,
            // and a cold client's first connect (JIT, a new socket) can take longer than the wait on a loaded machine.
            (await server.Http.GetAsync("/v1/models").WaitAsync(Bound)).EnsureSuccessStatusCode();
            using (new Stall(server.Policy))
            {
                pending = PostAsync(server.Http, "/v1/chat/completions", Chat);
                await Task.Delay(TimeSpan.FromMilliseconds(500)); // let the request reach the engine
                stopping = server.StopAsync();
                await Task.Delay(TimeSpan.FromSeconds(1.5));      // well past the shutdown timeout
            }
            var (status, error, response) = await pending.WaitAsync(Bound);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
            Assert.Equal("shutting_down", error.GetProperty("code").GetString());
            await stopping.WaitAsync(Bound);
            await Assert.ThrowsAsync<HttpRequestException>(() => server.Http.GetAsync("/v1/models").WaitAsync(Bound));
        }
    }

    [Fact]
    public async Task TheApiKeyIsRequiredWhenSet()
    {
        await using var server = await TestServer.StartAsync(new PonderServerOptions { ApiKey = "s3cret" });
        var (status, error, response) = await SendAsync(server.Http, new HttpRequestMessage(HttpMethod.Get, "/v1/models"));
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal("invalid_api_key", error.GetProperty("code").GetString());
        var wrong = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        wrong.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "s3cret-not");
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(server.Http, wrong)).Status);
        var right = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonBody(Chat) };
        right.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "s3cret");
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(server.Http, right)).Status);
    }

    [Fact]
    public async Task CrossOriginFormsForeignHostsAndUnknownRoutesAreRefusedWithJsonErrors()
    {
        await using var server = await TestServer.StartAsync();
        // A web page can POST text/plain cross-origin without a preflight: refused.
        var (status, error, _) = await SendAsync(server.Http, new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(Chat, Encoding.UTF8, "text/plain") });
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, status);
        // DNS rebinding: a foreign name resolving to loopback.
        var rebound = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        rebound.Headers.Host = "evil.example";
        (status, error, _) = await SendAsync(server.Http, rebound);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("invalid_host", error.GetProperty("code").GetString());
        var local = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        local.Headers.Host = $"localhost:{server.Http.BaseAddress!.Port}";
        Assert.Equal(HttpStatusCode.OK, (await server.Http.SendAsync(local)).StatusCode);
        // No CORS: a preflight gets no Access-Control-Allow-* headers.
        var preflight = new HttpRequestMessage(HttpMethod.Options, "/v1/chat/completions");
        preflight.Headers.Add("Origin", "https://evil.example");
        preflight.Headers.Add("Access-Control-Request-Method", "POST");
        var (pStatus, _, pResponse) = await SendAsync(server.Http, preflight);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, pStatus);
        Assert.DoesNotContain(pResponse.Headers, h => h.Key.StartsWith("Access-Control-", StringComparison.OrdinalIgnoreCase));
        (status, error, _) = await SendAsync(server.Http, new HttpRequestMessage(HttpMethod.Get, "/v2/nothing"));
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
    }

    [Fact]
    public async Task InvalidUtf8InAStringFieldIsA400()
    {
        await using var server = await TestServer.StartAsync();
        byte[] body = [.. Encoding.UTF8.GetBytes("""{"messages":[{"role":"user","content":"a"""), 0xFF, 0xFE, .. Encoding.UTF8.GetBytes("""b"}]}""")];
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        var (status, error, _) = await SendAsync(server.Http, new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = content });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("messages[0].content", error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task AnAnswerCutByTheContextFinishesWithLength()
    {
        await using var server = await TestServer.StartAsync();
        // 500 raw-byte tokens in a 512-position context: 12 more positions, so at most 13 tokens (the last sampled one
        // is never fed back and needs no position), far fewer than max_tokens.
        var (status, _, response) = await PostAsync(server.Http, "/v1/completions", $$"""{"prompt":"{{new string('z', 500)}}","max_tokens":100,"temperature":0}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        int completion = body.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        string finish = body.GetProperty("choices")[0].GetProperty("finish_reason").GetString()!;
        // An EOS before the context's end would be "stop"; this seed's greedy answer runs on to the end.
        Assert.Equal((13, "length"), (completion, finish));
    }
}
