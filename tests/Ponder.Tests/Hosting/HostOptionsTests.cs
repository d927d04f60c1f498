using System.Diagnostics.Metrics;
using Microsoft.Extensions.AI;
using Ponder.Hosting;
using Ponder.Models;
using Ponder.Search;
using Ponder.TestSupport;

namespace Ponder.Tests.Hosting;

/// <summary>Chat options that do not apply are refused by name or applied as written; metrics name one model once.</summary>
public sealed class HostOptionsTests
{
    static readonly ChatMessage[] Messages = [new(ChatRole.User, "Q: 7+8")];

    static Task<ArgumentException> Refused(ChatOptions options)
    {
        var model = HostingTestModels.Policy();
        var chat = model.AsChatClient(HostingTestModels.ChatMlFallback);
        return Assert.ThrowsAnyAsync<ArgumentException>(async () =>
        {
            try { await chat.GetResponseAsync(Messages, options); }
            finally { chat.Dispose(); model.Dispose(); }
        });
    }

    [Fact]
    public async Task MisspelledAdditionalPropertyIsRefusedByName()
    {
        var e = await Refused(new ChatOptions { AdditionalProperties = new() { ["strategy"] = "majority", ["nn"] = 4 } });
        Assert.Equal("nn", e.ParamName);
        Assert.Contains("'nn'", e.Message);
    }

    [Fact]
    public async Task MaxOutputTokensUnderASearchIsRefusedByName()
    {
        var e = await Refused(new ChatOptions { MaxOutputTokens = 16, AdditionalProperties = new() { ["strategy"] = "majority", ["n"] = 2 } });
        Assert.Equal(nameof(ChatOptions.MaxOutputTokens), e.ParamName);
    }

    [Fact]
    public async Task TypedOptionsUnderThePonderKeyApplyAndWrongTypesAreRefused()
    {
        using var model = HostingTestModels.Policy();
        using var chat = model.AsChatClient(HostingTestModels.ChatMlFallback);
        var typed = new TestTimeComputeOptions { Strategy = new StrategySpec(StrategyKind.BestOfN, 3, Selection: AnswerSelection.Majority), MaxStepTokens = 4, MaxRounds = 2 };
        var response = await chat.GetResponseAsync(Messages, new ChatOptions { Seed = 1, AdditionalProperties = new() { [PonderChatClient.OptionsKey] = typed } });
        Assert.StartsWith("best-of-n(N=3)", Assert.IsType<CompletionReport>(response.AdditionalProperties!["ponder"]).Strategy);
        var wrong = await Assert.ThrowsAnyAsync<ArgumentException>(() => chat.GetResponseAsync(Messages, new ChatOptions { AdditionalProperties = new() { ["ponder"] = "best_of_n" } }));
        Assert.Equal("ponder", wrong.ParamName);
        var mixed = await Assert.ThrowsAnyAsync<ArgumentException>(() => chat.GetResponseAsync(Messages, new ChatOptions { AdditionalProperties = new() { ["ponder"] = typed, ["n"] = 2 } }));
        Assert.Equal("ponder", mixed.ParamName);
    }

    [Fact]
    public async Task TemperatureZeroUnderASearchIsGreedy()
    {
        using var model = HostingTestModels.Policy();
        using var chat = model.AsChatClient(HostingTestModels.ChatMlFallback);
        // Greedy best-of-4: every sample is the same text, so all four candidates share one answer; different seeds
        // change nothing. At temperature 1 (what 0 used to be replaced by) the seeds would differ.
        var texts = new HashSet<string>();
        foreach (long seed in new long[] { 1, 2, 3 })
        {
            var options = new ChatOptions { Temperature = 0, Seed = seed, AdditionalProperties = new() { ["strategy"] = "majority", ["n"] = 4, ["max_step_tokens"] = 6, ["max_rounds"] = 2 } };
            texts.Add((await chat.GetResponseAsync(Messages, options)).Text);
        }
        Assert.Single(texts);
    }

    [Fact]
    public async Task DefaultSamplingSeedsRandomlyAndAGivenSeedReproduces()
    {
        using var model = HostingTestModels.Policy();
        using var chat = model.AsChatClient(HostingTestModels.ChatMlFallback);
        var free = new HashSet<string>();
        var seeded = new HashSet<string>();
        for (int i = 0; i < 8; i++)
        {
            free.Add((await chat.GetResponseAsync(Messages, new ChatOptions { MaxOutputTokens = 8 })).Text);
            seeded.Add((await chat.GetResponseAsync(Messages, new ChatOptions { MaxOutputTokens = 8, Seed = 42 })).Text);
        }
        // 8 texts of 8 tokens from a near-uniform 259-id distribution: equal by chance with probability far below 1e-9.
        Assert.True(free.Count > 1, $"8 unseeded calls gave {free.Count} distinct text(s)");
        Assert.Single(seeded);
    }

    [Fact]
    public async Task FlopsAndKvGaugesShareOneModelTagAndTwoClientsShareOneGaugeSeries()
    {
        const string id = "telemetry-one-model";
        using var model = HostingTestModels.Policy(location: id);
        var flopTags = new List<string?>();
        var gaugeSeries = 0;
        double duration = -1;
        IReadOnlyList<double>? buckets = null;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name != PonderTelemetry.Name) return;
            if (instrument is Histogram<double> { Name: "ponder.request.duration" } h) buckets = h.Advice?.HistogramBucketBoundaries;
            l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var model = Tag(tags, "ponder.model");
            if (instrument.Name == "ponder.flops" && Tag(tags, "ponder.model.role") == "policy") lock (flopTags) flopTags.Add(model);
            else if (instrument.Name == "ponder.kv.blocks_in_use" && model == id) Interlocked.Increment(ref gaugeSeries);
        });
        listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) =>
        {
            if (instrument.Name == "ponder.request.duration") Interlocked.Exchange(ref duration, value);
        });
        listener.Start();

        var a = model.AsChatClient(HostingTestModels.ChatMlFallback with { ModelId = id });
        var b = model.AsChatClient(HostingTestModels.ChatMlFallback with { ModelId = id });
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await a.GetResponseAsync(Messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 4 });
        double wall = clock.Elapsed.TotalSeconds;
        lock (flopTags) Assert.Contains(id, flopTags);
        Assert.InRange(duration, 0, wall); // seconds, not milliseconds
        Assert.NotNull(buckets);
        Assert.Equal(PonderTelemetry.DurationBuckets, buckets);
        Assert.True(buckets![0] <= 0.01 && buckets[^1] >= 600, "buckets span a decode step to a long search, in seconds");

        listener.RecordObservableInstruments();
        Assert.Equal(1, Interlocked.Exchange(ref gaugeSeries, 0));
        a.Dispose();
        listener.RecordObservableInstruments();
        Assert.Equal(1, Interlocked.Exchange(ref gaugeSeries, 0));
        b.Dispose();
        listener.RecordObservableInstruments();
        Assert.Equal(0, gaugeSeries);
    }

    [Fact]
    public void LoadProgressNeverPassesOneAndEndsThere()
    {
        var seen = new List<float>();
        var config = TestConfigs.Tiny;
        using var model = PonderModel.Load(new HostTensorSource(config, RandomModel.Create(config, 3)), null, new ModelOptions { Threads = 1, KvCacheTokens = 64 },
            new SyncProgress(seen.Add));
        Assert.NotEmpty(seen);
        Assert.All(seen, p => Assert.InRange(p, 0f, 1f));
        Assert.Equal(1f, seen[^1]);
    }

    static string? Tag(ReadOnlySpan<KeyValuePair<string, object?>> tags, string key)
    {
        foreach (var t in tags) if (t.Key == key) return t.Value as string;
        return null;
    }

    sealed class SyncProgress(Action<float> report) : IProgress<float>
    {
        public void Report(float value) => report(value);
    }
}
