using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.AI;
using Ponder.Hosting;
using Ponder.Sampling;

namespace Ponder.Tests.Hosting;

/// <summary>The IChatClient adapter against the model's own generation, test-time compute options, reports and telemetry.</summary>
public sealed class ChatClientTests
{
    static readonly ChatMessage[] Messages = [new(ChatRole.System, "Be brief."), new(ChatRole.User, "Q: 12+3*4")];

    static ChatOptions Greedy(int maxTokens = 12) => new() { Temperature = 0, MaxOutputTokens = maxTokens };

    [Fact]
    public async Task NonStreamingGreedyAnswerEqualsTheModelsOwnGenerationOnTheChatMlPrompt()
    {
        using var model = HostingTestModels.Policy();
        using var chat = model.AsChatClient(HostingTestModels.ChatMlFallback);
        Assert.True(chat.Template.IsChatMl, "a random model has no tokenizer_config.json: the ChatML fallback it opted into");
        Assert.Contains("tokenizer_config.json", chat.Template.FallbackReason);

        var response = await chat.GetResponseAsync(Messages, Greedy());

        string prompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ: 12+3*4<|im_end|>\n<|im_start|>assistant\n";
        var expected = new System.Text.StringBuilder();
        await foreach (var t in model.GenerateAsync(prompt, new SamplingOptions { Temperature = 0, MaxNewTokens = 12, StopStrings = ["<|im_end|>"] }))
            expected.Append(t.Text);
        Assert.Equal(expected.ToString(), response.Text);
        Assert.Equal(prompt.Length, response.Usage!.InputTokenCount);
        Assert.InRange(response.Usage.OutputTokenCount!.Value, 1, 12);
        var report = Assert.IsType<CompletionReport>(response.AdditionalProperties!["ponder"]);
        Assert.Equal(report.Flops.Flops.Total, response.Usage.AdditionalCounts!["flops"]);
        long byCategory = new[] { "projection", "attention", "lm_head", "prm_head", "elementwise" }.Sum(c => response.Usage.AdditionalCounts["flops." + c]);
        Assert.Equal(report.Flops.Flops.Total, byCategory);
        // Prefill of the prompt plus one row per fed-back token: the counter's own formula, summed independently.
        var counter = model.Scheduled.Counter;
        long expectedFlops = counter.Chunk(prompt.Length, 0, 1).Total;
        for (int i = 1; i < response.Usage.OutputTokenCount.Value; i++) expectedFlops += counter.Chunk(1, prompt.Length + i - 1, 1).Total;
        Assert.Equal(expectedFlops, report.Flops.Flops.Total);
        HostingTestModels.AssertNoLeaks(model);
    }

    [Fact]
    public async Task StreamingConcatenatesToTheNonStreamingTextAndEndsWithUsage()
    {
        using var model = HostingTestModels.Policy();
        using var chat = model.AsChatClient(HostingTestModels.ChatMlFallback);
        var whole = await chat.GetResponseAsync(Messages, Greedy());
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in chat.GetStreamingResponseAsync(Messages, Greedy())) updates.Add(u);
        Assert.True(updates.Count >= 2);
        Assert.Equal(whole.Text, string.Concat(updates.Select(u => u.Text)));
        var usage = Assert.Single(updates[^1].Contents.OfType<UsageContent>());
        Assert.Equal(whole.Usage!.OutputTokenCount, usage.Details.OutputTokenCount);
        Assert.NotNull(updates[^1].FinishReason);
        HostingTestModels.AssertNoLeaks(model);
    }

    [Fact]
    public async Task BestOfNWithAFlopBudgetStaysWithinItAndReportsGenerations()
    {
        using var model = HostingTestModels.Policy();
        using var chat = model.AsChatClient(HostingTestModels.ChatMlFallback);
        long budget = 6_000_000;
        var options = new ChatOptions
        {
            Temperature = 1, Seed = 5,
            AdditionalProperties = new() { ["strategy"] = "majority", ["n"] = 4, ["budget_flops"] = budget, ["max_step_tokens"] = 8, ["max_rounds"] = 3 },
        };
        var response = await chat.GetResponseAsync(Messages, options);
        var report = Assert.IsType<CompletionReport>(response.AdditionalProperties!["ponder"]);
        Assert.StartsWith("best-of-n(N=4)", report.Strategy);
        Assert.InRange(report.Flops.Flops.Total, 1, budget);
        Assert.InRange(report.Generations, 1, 4);
        HostingTestModels.AssertNoLeaks(model);
    }

    [Fact]
    public async Task BeamSearchWithAPrmChargesBothModels()
    {
        using var model = HostingTestModels.Policy();
        using var prm = HostingTestModels.Prm();
        using var chat = model.AsChatClient(HostingTestModels.ChatMlFallback with { Prm = prm });
        var options = new ChatOptions
        {
            AdditionalProperties = new() { ["strategy"] = "beam", ["n"] = 4, ["beam_width"] = 2, ["budget_generations"] = 8.0, ["max_step_tokens"] = 6, ["max_rounds"] = 3 },
        };
        var response = await chat.GetResponseAsync(Messages, options);
        var report = Assert.IsType<CompletionReport>(response.AdditionalProperties!["ponder"]);
        Assert.Contains(report.Flops.Models, m => m.Model == "prm" && m.Flops.PrmHead > 0);
        Assert.Contains(report.Flops.Models, m => m.Model == "policy" && m.Flops.LmHead > 0);
        Assert.True(report.Generations <= 8);
        HostingTestModels.AssertNoLeaks(model);
        HostingTestModels.AssertNoLeaks(prm);
    }

    [Fact]
    public async Task BeamSearchOnAPolicyWithASharedValueHeadNeedsNoPrm()
    {
        using var model = HostingTestModels.Policy(location: "random-policy-vh", config: HostingTestModels.PolicyConfig with { SharedValueHead = true });
        using var chat = model.AsChatClient(HostingTestModels.ChatMlFallback);
        var options = new ChatOptions
        {
            AdditionalProperties = new() { ["strategy"] = "beam", ["n"] = 4, ["beam_width"] = 2, ["budget_generations"] = 8.0, ["max_step_tokens"] = 6, ["max_rounds"] = 3 },
        };
        var response = await chat.GetResponseAsync(Messages, options);
        var report = Assert.IsType<CompletionReport>(response.AdditionalProperties!["ponder"]);
        var only = Assert.Single(report.Flops.Models);
        Assert.Equal(0, only.Flops.PrmHead);
        Assert.True(only.Flops.LmHead > 0);
        HostingTestModels.AssertNoLeaks(model);
    }

    [Theory]
    [InlineData("strategy", "simulated_annealing", "strategy")]
    [InlineData("strategy", "beam", "strategy")]          // no PRM
    [InlineData("n", 0, "n")]
    [InlineData("budget_flops", 10L, "budget_flops")]    // cannot pay for the prompt
    [InlineData("budget_generations", -1.0, "budget_generations")]
    public async Task BadTestTimeComputeOptionsThrowArgumentExceptionNamingTheOption(string key, object value, string param)
    {
        using var model = HostingTestModels.Policy();
        using var chat = model.AsChatClient(HostingTestModels.ChatMlFallback);
        var options = new ChatOptions { AdditionalProperties = new() { [key] = value } };
        var e = await Assert.ThrowsAnyAsync<ArgumentException>(() => chat.GetResponseAsync(Messages, options));
        Assert.Equal(param, e.ParamName);
        HostingTestModels.AssertNoLeaks(model);
    }

    [Fact]
    public async Task MetricsAndTracesReachListeners()
    {
        using var model = HostingTestModels.Policy(location: "metrics-model");
        long outputTokens = 0, flops = 0, blocks = -1;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) => { if (instrument.Meter.Name == PonderTelemetry.Name) l.EnableMeasurementEvents(instrument); };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            if (instrument.Name == "ponder.tokens.output") Interlocked.Add(ref outputTokens, value);
            else if (instrument.Name == "ponder.flops") Interlocked.Add(ref flops, value);
            else if (instrument.Name == "ponder.kv.blocks_in_use" && tags.ToArray().Any(t => (string?)t.Value == "metrics-model")) blocks = value;
        });
        listener.Start();
        var activities = new List<Activity>();
        using var activityListener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == PonderTelemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a => { lock (activities) activities.Add(a); },
        };
        ActivitySource.AddActivityListener(activityListener);

        using var chat = model.AsChatClient(HostingTestModels.ChatMlFallback);
        var response = await chat.GetResponseAsync(Messages, Greedy());
        listener.RecordObservableInstruments();

        Assert.True(outputTokens >= response.Usage!.OutputTokenCount, $"output tokens counted {outputTokens}");
        Assert.True(flops >= response.Usage.AdditionalCounts!["flops"], $"flops counted {flops}");
        Assert.True(blocks > 0, "the prompt's blocks stay cached in the prefix index");
        lock (activities)
        {
            var a = Assert.Single(activities, a => (string?)a.GetTagItem("gen_ai.request.model") == "metrics-model");
            Assert.Equal("ponder.completion", a.OperationName);
            Assert.Equal(response.Usage.AdditionalCounts["flops"], Convert.ToInt64(a.GetTagItem("ponder.flops")));
        }
    }
}
