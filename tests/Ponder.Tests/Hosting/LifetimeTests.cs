using Ponder.Hosting;
using Ponder.Sampling;
using Ponder.Search;

namespace Ponder.Tests.Hosting;

/// <summary>
/// What a host meets at the edges of a model's life and capacity: disposing a model while it works cancels the work
/// cleanly (never a crash or a hang), and searches that together overflow the KV cache wait their turn (preemption)
/// instead of failing.
/// </summary>
public sealed class LifetimeTests
{
    static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task DisposingAModelMidGenerationEndsTheStreamWithADisposedOrCancelledError()
    {
        for (int run = 0; run < 6; run++)
        {
            var model = HostingTestModels.Policy();
            var started = new TaskCompletionSource();
            // 500 tokens: far more than are produced before the model is disposed, so the stream is cut, not finished.
            var consumer = Task.Run(async () =>
            {
                int n = 0;
                await foreach (var _ in model.GenerateAsync([1, 2, 3], new SamplingOptions { MaxNewTokens = 500, StopAtEos = false, Seed = (ulong)run }))
                    if (++n == 3) started.TrySetResult();
                return n;
            });
            await started.Task.WaitAsync(Bound);
            model.Dispose(); // while the consumer keeps generating on other threads
            var e = await Record.ExceptionAsync(() => consumer.WaitAsync(Bound));
            Assert.True(e is ObjectDisposedException or OperationCanceledException, $"run {run}: {e?.ToString() ?? "the stream ended normally"}");
            Assert.Equal(0, model.Pool.SequenceCount);
        }
    }

    [Fact]
    public async Task GenerationComputesTheNextTokenWhileTheConsumerHoldsThisOne()
    {
        using var model = HostingTestModels.Policy();
        int[] prompt = [1, 2, 3];
        var options = new SamplingOptions { MaxNewTokens = 6, StopAtEos = false, Seed = 7 };
        var full = new List<int>();
        await foreach (var t in model.GenerateAsync(prompt, options)) full.Add(t.Id);

        using var request = model.CreateRequest();
        var read = new List<int>();
        await foreach (var t in model.GenerateAsync(prompt, options, request))
        {
            read.Add(t.Id);
            if (read.Count != 2) continue;
            // Holding token 2: the prompt, token 1 and token 2 get computed anyway (the work for the token after this
            // one was submitted before it was handed over). Had generation waited for the consumer, this would time out.
            var waited = System.Diagnostics.Stopwatch.StartNew();
            while (request.Report().TokensComputed < prompt.Length + 2 && waited.Elapsed < Bound) await Task.Delay(1);
            Assert.Equal(prompt.Length + 2, request.Report().TokensComputed);
            break; // abandon the stream with work in flight
        }
        Assert.Equal(full.Take(2), read);
        // The abandoned token's work was released with its sequence: nothing leaks, nothing stays queued.
        var settle = System.Diagnostics.Stopwatch.StartNew();
        while (model.CacheStats().LiveSequences > 0 && settle.Elapsed < Bound) await Task.Delay(1);
        HostingTestModels.AssertNoLeaks(model);
        // The model still generates the same stream afterwards.
        var again = new List<int>();
        await foreach (var t in model.GenerateAsync(prompt, options)) again.Add(t.Id);
        Assert.Equal(full, again);
    }

    [Fact]
    public async Task DisposingThePolicyMidSearchFailsTheSearchCleanly()
    {
        for (int run = 0; run < 6; run++)
        {
            var policy = HostingTestModels.Policy();
            using var prm = HostingTestModels.Prm();
            using var engine = new CompletionEngine(policy, prm);
            var compute = new TestTimeComputeOptions { Strategy = new StrategySpec(StrategyKind.BestOfN, 16), MaxStepTokens = 8, MaxRounds = 30 };
            var search = engine.CompleteAsync("Q: 1+2\n", new SamplingOptions { Seed = (ulong)run }, compute);
            // Let it start: some forwards ran.
            while (policy.Scheduler.Forwards < 3 && !search.IsCompleted) await Task.Delay(1);
            policy.Dispose();
            var e = await Record.ExceptionAsync(() => search.WaitAsync(Bound));
            Assert.True(e is null or ObjectDisposedException or OperationCanceledException, $"run {run}: {e}");
            Assert.Equal(0, prm.Pool.SequenceCount);
        }
    }

    [Fact]
    public async Task ConcurrentSearchesThatOverflowTheCacheWaitTheirTurnAndAllComplete()
    {
        // 1024 tokens of cache (128 blocks of 8): one search (16 branches of up to 7 + 48 tokens, about 100 blocks unshared) fits alone, four together do not.
        using var policy = HostingTestModels.Policy(kvTokens: 1024);
        using var engine = new CompletionEngine(policy);
        var compute = new TestTimeComputeOptions { Strategy = new StrategySpec(StrategyKind.BestOfN, 16, Selection: AnswerSelection.Majority), MaxStepTokens = 8, MaxRounds = 6 };
        var searches = Enumerable.Range(0, 4).Select(i => engine.CompleteAsync($"Q: {i}+{i}\n", new SamplingOptions { Seed = (ulong)i }, compute)).ToArray();
        var results = await Task.WhenAll(searches).WaitAsync(Bound);
        Assert.All(results, r => Assert.Equal(16, r.Report.Generations));
        // How much the four overlap (and so how often work waits or is preempted) depends on thread timing; the
        // deferral and preemption rules themselves are asserted round by round in StepSchedulerTests. Here: whatever the
        // interleaving, every search completes, and with the text it has alone.
        // Each search, run alone on a roomy cache, computes the same text: preemption and recomputation change nothing.
        using var roomy = HostingTestModels.Policy(kvTokens: 16384);
        using var alone = new CompletionEngine(roomy);
        for (int i = 0; i < 4; i++)
        {
            var (text, _) = await alone.CompleteAsync($"Q: {i}+{i}\n", new SamplingOptions { Seed = (ulong)i }, compute);
            Assert.Equal(text, results[i].Text);
        }
        HostingTestModels.AssertNoLeaks(policy);
    }
}
