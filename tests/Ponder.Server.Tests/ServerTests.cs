using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using OpenAI;
using Ponder.Sampling;
using Ponder.Tests.Hosting;

namespace Ponder.Server.Tests;

/// <summary>The OpenAI-compatible server on loopback: happy paths (raw HTTP and the OpenAI .NET client), SSE, 400s, budgets, disconnects.</summary>
public sealed class ServerTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);
    const string ChatBody = """{"messages":[{"role":"user","content":"Q: 2+3"}],"temperature":0,"max_tokens":10}""";

    async Task<(HttpStatusCode Status, JsonElement Body)> PostAsync(string path, string json)
    {
        using var response = await server.Http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json")).WaitAsync(Bound);
        string text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    /// <summary>Reads an SSE response: the JSON of every "data:" event before "[DONE]" (which must come last).</summary>
    async Task<List<JsonElement>> PostStreamAsync(string path, string json)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(Bound);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var events = new List<JsonElement>();
        bool done = false;
        for (int lines = 0; lines < 10_000 && await reader.ReadLineAsync().WaitAsync(Bound) is { } line; lines++)
        {
            if (line.Length == 0) continue;
            Assert.StartsWith("data: ", line);
            Assert.False(done, "nothing may follow [DONE]");
            string data = line["data: ".Length..];
            if (data == "[DONE]") { done = true; continue; }
            events.Add(JsonDocument.Parse(data).RootElement.Clone());
        }
        Assert.True(done, "the stream ends with data: [DONE]");
        return events;
    }

    [Fact]
    public async Task ModelsListsTheServedModel()
    {
        var body = await server.Http.GetFromJsonAsync<JsonElement>("/v1/models").WaitAsync(Bound);
        Assert.Equal("list", body.GetProperty("object").GetString());
        Assert.Equal("random-policy", body.GetProperty("data")[0].GetProperty("id").GetString());
    }

    [Fact]
    public async Task ChatCompletionEqualsTheEnginesGreedyAnswerWithUsageAndFlopReport()
    {
        var (status, body) = await PostAsync("/v1/chat/completions", ChatBody);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("chat.completion", body.GetProperty("object").GetString());
        var message = body.GetProperty("choices")[0].GetProperty("message");
        Assert.Equal("assistant", message.GetProperty("role").GetString());

        string prompt = "<|im_start|>user\nQ: 2+3<|im_end|>\n<|im_start|>assistant\n";
        var (text, report) = await server.Engine.CompleteAsync(prompt, new SamplingOptions { Temperature = 0, MaxNewTokens = 10, StopStrings = ["<|im_end|>"] });
        Assert.Equal(text, message.GetProperty("content").GetString());

        var usage = body.GetProperty("usage");
        Assert.Equal(prompt.Length, usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(report.OutputTokens, usage.GetProperty("completion_tokens").GetInt32());
        var flops = body.GetProperty("ponder").GetProperty("flops");
        long total = flops.GetProperty("total").GetInt64();
        Assert.True(total > 0);
        Assert.Equal(total, new[] { "projection", "attention", "lm_head", "prm_head", "elementwise" }.Sum(c => flops.GetProperty(c).GetInt64()));
        Assert.Equal(1, body.GetProperty("ponder").GetProperty("generations").GetDouble());
    }

    [Fact]
    public async Task StreamedCompletionConcatenatesToTheNonStreamedTextAndEndsWithUsage()
    {
        const string request = """{"prompt":"Q: 7*8\n","temperature":0,"max_tokens":12,"seed":3}""";
        var (status, whole) = await PostAsync("/v1/completions", request);
        Assert.Equal(HttpStatusCode.OK, status);
        var events = await PostStreamAsync("/v1/completions", request.Replace("\"seed\":3", "\"seed\":3,\"stream\":true"));
        Assert.All(events, e => Assert.Equal("text_completion", e.GetProperty("object").GetString()));
        string streamed = string.Concat(events.Select(e => e.GetProperty("choices")[0].GetProperty("text").GetString()));
        Assert.Equal(whole.GetProperty("choices")[0].GetProperty("text").GetString(), streamed);
        var last = events[^1];
        Assert.Equal(whole.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), last.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.NotEqual(JsonValueKind.Null, last.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind);
        Assert.True(last.GetProperty("ponder").GetProperty("flops").GetProperty("total").GetInt64() > 0);
    }

    [Fact]
    public async Task StreamedChatStartsWithTheAssistantRole()
    {
        var events = await PostStreamAsync("/v1/chat/completions", ChatBody.Replace("\"max_tokens\":10", "\"max_tokens\":10,\"stream\":true"));
        Assert.Equal("assistant", events[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        Assert.All(events, e => Assert.Equal("chat.completion.chunk", e.GetProperty("object").GetString()));
        Assert.True(events[^1].TryGetProperty("usage", out _));
    }

    [Theory]
    [InlineData("/v1/chat/completions", "{not json", null)]
    [InlineData("/v1/chat/completions", "[1,2]", null)]
    [InlineData("/v1/chat/completions", "{}", "messages")]
    [InlineData("/v1/chat/completions", """{"messages":[]}""", "messages")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"wizard","content":"x"}]}""", "messages[0].role")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"temperature":5}""", "temperature")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}""", "temperature")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"max_tokens":1000000000}""", "max_tokens")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"ponder":{"strategy":"annealing"}}""", "ponder.strategy")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"ponder":{"strategy":"beam","n":2,"beam_width":3}}""", "ponder.beam_width")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"ponder":{"budget_flops":10}}""", "ponder.budget_flops")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"ponder":{"prm":"/no/such/prm"}}""", "ponder.prm")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"ponder":{"prm":"large"}}""", "ponder.prm")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"\ud800"}]}""", "messages[0].content")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":[{"type":"text","text":"a\udc00"}]}]}""", "messages[0].content[0].text")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"\ud800","content":"x"}]}""", "messages[0].role")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"stop":["\ud800"]}""", "stop")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"ponder":{"strategy":"\udfff"}}""", "ponder.strategy")]
    [InlineData("/v1/completions", """{"prompt":"\ud83d"}""", "prompt")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"ponder":{"strategy":"best_of_n","n":4096}}""", "ponder.n")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"ponder":{"strategy":"beam","n":64,"beam_width":32}}""", "ponder.beam_width")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"ponder":{"budget_generations":1000}}""", "ponder.budget_generations")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"ponder":{"strategy":"best_of_n","n":16}}""", "ponder.n")]
    [InlineData("/v1/completions", """{"prompt":5}""", "prompt")]
    [InlineData("/v1/completions", """{"prompt":"x","stream":"yes"}""", "stream")]
    public async Task ClientMistakesAre400WithAnOpenAiErrorNamingTheField(string path, string json, string? param)
    {
        var (status, body) = await PostAsync(path, json);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        var error = body.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task BestOfNWithAFlopBudgetReturnsAReportWithinIt()
    {
        const long budget = 4_000_000;
        var (status, body) = await PostAsync("/v1/chat/completions",
            """{"messages":[{"role":"user","content":"Q: 2+3"}],"unknown_field":[1],"ponder":{"strategy":"best_of_n","n":4,"budget_flops":4000000,"max_step_tokens":6,"max_rounds":3}}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var ponder = body.GetProperty("ponder");
        long total = ponder.GetProperty("flops").GetProperty("total").GetInt64();
        Assert.InRange(total, 1, budget);
        Assert.InRange(ponder.GetProperty("generations").GetDouble(), 1, 4);
        Assert.StartsWith("best-of-n(N=4)", ponder.GetProperty("strategy").GetString());
        Assert.True(ponder.GetProperty("flops_by_model").TryGetProperty("policy", out _));
    }

    [Fact]
    public async Task TheOpenAiClientTalksToTheServerStreamingAndNot()
    {
        var openAi = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") });
        using IChatClient client = openAi.GetChatClient("random-policy").AsIChatClient();
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 8 };
        var response = await client.GetResponseAsync("Q: 4+4", options).WaitAsync(Bound);
        Assert.True(response.Usage!.InputTokenCount > 0);
        var streamed = new StringBuilder();
        using var cts = new CancellationTokenSource(Bound);
        await foreach (var update in client.GetStreamingResponseAsync("Q: 4+4", options, cts.Token)) streamed.Append(update.Text);
        Assert.Equal(response.Text, streamed.ToString());
    }

    [Fact]
    public async Task ClientDisconnectMidStreamCancelsTheRequestAndFreesItsBlocks()
    {
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
               { Content = new StringContent("""{"prompt":"Q: 1+1\n","temperature":1,"max_tokens":500,"stream":true}""", Encoding.UTF8, "application/json") })
        using (var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(Bound))
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: ", await reader.ReadLineAsync().WaitAsync(Bound));
        }
        // The server notices the reset connection asynchronously: wait (bounded) for its sequence to go.
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            if (server.Policy.CacheStats().LiveSequences == 0) break;
            Assert.True(watch.Elapsed < Bound, "the request's sequence was still alive after the client left");
            await Task.Delay(20);
        }
        HostingTestModels.AssertNoLeaks(server.Policy);
    }
}
