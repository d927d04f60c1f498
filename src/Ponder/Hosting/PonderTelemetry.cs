using System.Diagnostics;
using System.Diagnostics.Metrics;
using Ponder.Backends;
using Ponder.Scheduling;

namespace Ponder.Hosting;

/// <summary>
/// Ponder's metrics (a <see cref="System.Diagnostics.Metrics.Meter"/> named "Ponder") and traces (an
/// <see cref="System.Diagnostics.ActivitySource"/> named "Ponder"). Any listener collects them (OpenTelemetry's
/// <c>AddMeter("Ponder")</c> / <c>AddSource("Ponder")</c>, <c>dotnet-counters</c>, a <see cref="MeterListener"/>)
/// without Ponder depending on one.
/// <list type="table">
///   <item><term>ponder.requests</term><description>counter: completion requests started (tag <c>ponder.strategy</c>)</description></item>
///   <item><term>ponder.requests.active</term><description>up-down counter: requests in flight (the scheduler's queue of clients)</description></item>
///   <item><term>ponder.tokens.input / ponder.tokens.output</term><description>counters: prompt and generated tokens</description></item>
///   <item><term>ponder.tokens_per_second</term><description>histogram: a request's generated tokens over its wall time</description></item>
///   <item><term>ponder.flops</term><description>counter: exact FLOPs, tags <c>ponder.model</c> (the served model's id, as the
///   KV gauges name it), <c>ponder.model.role</c> (policy or prm) and <c>ponder.flop_category</c></description></item>
///   <item><term>ponder.budget.exhausted</term><description>counter: requests whose budget refused work</description></item>
///   <item><term>ponder.request.duration</term><description>histogram: seconds per request (buckets from 10 ms to 10 min)</description></item>
///   <item><term>ponder.kv.blocks_in_use / ponder.kv.prefix_hit_rate</term><description>gauges, one series per tracked model
///   however many clients serve it (tag <c>ponder.model</c>)</description></item>
/// </list>
/// </summary>
public static class PonderTelemetry
{
    /// <summary>The name of the meter and of the activity source.</summary>
    public const string Name = "Ponder";

    /// <summary>Ponder's meter.</summary>
    public static Meter Meter { get; } = new(Name, typeof(PonderTelemetry).Assembly.GetName().Version?.ToString());

    /// <summary>Ponder's traces: one "ponder.completion" activity per request.</summary>
    public static ActivitySource ActivitySource { get; } = new(Name, typeof(PonderTelemetry).Assembly.GetName().Version?.ToString());

    static readonly Counter<long> Requests = Meter.CreateCounter<long>("ponder.requests", "{request}", "Completion requests started");
    static readonly UpDownCounter<long> Active = Meter.CreateUpDownCounter<long>("ponder.requests.active", "{request}", "Requests in flight");
    static readonly Counter<long> InputTokens = Meter.CreateCounter<long>("ponder.tokens.input", "{token}", "Prompt tokens");
    static readonly Counter<long> OutputTokens = Meter.CreateCounter<long>("ponder.tokens.output", "{token}", "Generated tokens");
    static readonly Histogram<double> TokensPerSecond = Meter.CreateHistogram<double>("ponder.tokens_per_second", "{token}/s", "Generated tokens per second of a request");
    static readonly Counter<long> Flops = Meter.CreateCounter<long>("ponder.flops", "{flop}", "Exact FLOPs by model and category");
    static readonly Counter<long> BudgetExhausted = Meter.CreateCounter<long>("ponder.budget.exhausted", "{request}", "Requests whose budget refused work");
    /// <summary>Bucket boundaries of <c>ponder.request.duration</c>, in seconds: a decode step to a long search.</summary>
    public static IReadOnlyList<double> DurationBuckets { get; } = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 600];

    static readonly Histogram<double> Duration = Meter.CreateHistogram<double>("ponder.request.duration", "s", "Wall time of a request",
        tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });

    static readonly Lock Sync = new();
    // One entry per model however many engines track it: their gauges are one series, and the last Untrack ends it.
    static readonly List<(string Name, PonderModel Model, int Count)> Tracked = [];

    static PonderTelemetry()
    {
        Meter.CreateObservableGauge("ponder.kv.blocks_in_use", () => Observe(s => (long)s.HeldBlocks + s.CachedBlocks), "{block}", "KV blocks held by sequences or cached");
        Meter.CreateObservableGauge("ponder.kv.prefix_hit_rate", () => Observe(s => s.PrefixHitRate), "1", "Prompt tokens served from the prefix cache / looked up");
    }

    /// <summary>
    /// Reports <paramref name="model"/>'s KV cache gauges under <paramref name="name"/> until as many
    /// <see cref="Untrack"/> calls as <see cref="Track"/> calls were made. A model tracked again (a second client over
    /// it) keeps its first name and stays one series.
    /// </summary>
    public static void Track(string name, PonderModel model)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(model);
        lock (Sync)
        {
            int i = Tracked.FindIndex(t => ReferenceEquals(t.Model, model));
            if (i >= 0) Tracked[i] = Tracked[i] with { Count = Tracked[i].Count + 1 };
            else Tracked.Add((name, model, 1));
        }
    }

    /// <summary>Undoes one <see cref="Track"/> of <paramref name="model"/>; its gauges stop when none is left.</summary>
    public static void Untrack(PonderModel model)
    {
        lock (Sync)
        {
            int i = Tracked.FindIndex(t => ReferenceEquals(t.Model, model));
            if (i < 0) return;
            if (Tracked[i].Count > 1) Tracked[i] = Tracked[i] with { Count = Tracked[i].Count - 1 };
            else Tracked.RemoveAt(i);
        }
    }

    static IEnumerable<Measurement<T>> Observe<T>(Func<Cache.KvCacheStats, T> read) where T : struct
    {
        (string Name, PonderModel Model, int Count)[] models;
        lock (Sync) models = [.. Tracked];
        var result = new List<Measurement<T>>(models.Length);
        foreach (var (name, model, _) in models)
        {
            var stats = model.CacheStats();
            result.Add(new Measurement<T>(read(stats), new KeyValuePair<string, object?>("ponder.model", name)));
        }
        return result;
    }

    internal static Activity? Start(string model, string strategy, int inputTokens)
    {
        Requests.Add(1, new KeyValuePair<string, object?>("ponder.strategy", strategy));
        Active.Add(1);
        InputTokens.Add(inputTokens);
        var activity = ActivitySource.StartActivity("ponder.completion", ActivityKind.Internal);
        activity?.SetTag("gen_ai.request.model", model);
        activity?.SetTag("ponder.strategy", strategy);
        activity?.SetTag("gen_ai.usage.input_tokens", inputTokens);
        return activity;
    }

    /// <param name="activity">What <see cref="Start"/> returned.</param>
    /// <param name="report">The finished request's report (null when it failed).</param>
    /// <param name="error">Why it failed.</param>
    /// <param name="model">The served model's id: the <c>ponder.model</c> tag of its FLOPs, as its KV gauges are tagged.</param>
    internal static void Stop(Activity? activity, CompletionReport? report, Exception? error, string model)
    {
        Active.Add(-1);
        if (report is not null)
        {
            OutputTokens.Add(report.OutputTokens);
            double seconds = report.Flops.WallTime.TotalSeconds;
            Duration.Record(seconds);
            if (seconds > 0) TokensPerSecond.Record(report.OutputTokens / seconds);
            foreach (var m in report.Flops.Models)
                foreach (var c in Enum.GetValues<FlopCategory>())
                    if (m.Flops[c] != 0)
                        Flops.Add(m.Flops[c], new KeyValuePair<string, object?>("ponder.model", model), new KeyValuePair<string, object?>("ponder.model.role", m.Model),
                            new KeyValuePair<string, object?>("ponder.flop_category", CompletionReport.CategoryName(c)));
            if (report.BudgetExhausted) BudgetExhausted.Add(1);
            activity?.SetTag("gen_ai.usage.output_tokens", report.OutputTokens);
            activity?.SetTag("ponder.flops", report.Flops.Flops.Total);
            activity?.SetTag("ponder.generations", report.Generations);
            activity?.SetTag("ponder.budget_exhausted", report.BudgetExhausted);
        }
        if (error is not null) activity?.SetStatus(ActivityStatusCode.Error, error.Message);
        activity?.Dispose();
    }
}
