using Microsoft.Extensions.AI;
using Ponder.Hosting;

namespace Ponder.Tests.Hosting;

/// <summary>
/// Many concurrent requests from many threads on one model, each with its own budget: every request stays within its
/// budget, the scheduler batches them, and the KV pool is whole again afterwards.
/// </summary>
public sealed class ConcurrencyTests
{
    [Fact]
    public async Task ConcurrentRequestsWithTheirOwnBudgetsNeitherLeakBlocksNorOverspend()
    {
        using var model = HostingTestModels.Policy(kvTokens: 8192);
        using var chat = model.AsChatClient(HostingTestModels.ChatMlFallback);
        const int requests = 16;
        long forwardsBefore = model.Scheduler.Forwards;
        var start = new ManualResetEventSlim();
        var tasks = Enumerable.Range(0, requests).Select(i => Task.Run(async () =>
        {
            start.Wait();
            long budget = 2_600_000 + 200_000L * i;
            var props = new AdditionalPropertiesDictionary { ["budget_flops"] = budget };
            if (i % 2 == 1) { props["strategy"] = "majority"; props["n"] = 2 + i % 3; props["max_step_tokens"] = 6; props["max_rounds"] = 3; }
            // A search is bounded by its step and round caps and budget; max tokens bounds only plain generation.
            var options = new ChatOptions { Temperature = 0.8f, Seed = i, MaxOutputTokens = i % 2 == 1 ? null : 24, AdditionalProperties = props };
            ChatMessage[] messages = [new(ChatRole.User, $"Q: {i}+{i * 7}")];
            if (i % 4 == 0)
            {
                var text = new System.Text.StringBuilder();
                CompletionReport? report = null;
                await foreach (var u in chat.GetStreamingResponseAsync(messages, options))
                {
                    text.Append(u.Text);
                    if (u.AdditionalProperties?["ponder"] is CompletionReport r) report = r;
                }
                return (budget, report!);
            }
            var response = await chat.GetResponseAsync(messages, options);
            return (budget, (CompletionReport)response.AdditionalProperties!["ponder"]!);
        })).ToArray();
        start.Set();
        var results = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));

        foreach (var (budget, report) in results)
        {
            Assert.NotNull(report);
            Assert.InRange(report.Flops.Flops.Total, 1, budget);
        }
        Assert.Contains(results, r => r.Item2.BudgetExhausted);
        long forwards = model.Scheduler.Forwards - forwardsBefore;
        long rows = results.Sum(r => r.Item2.Flops.Models.Sum(m => m.Forwards));
        Assert.True(forwards < rows, $"requests shared forwards: {forwards} forwards for {rows} request-forwards");
        HostingTestModels.AssertNoLeaks(model);
    }

    [Fact]
    public async Task CancellingAStreamMidwayFreesItsBlocks()
    {
        using var model = HostingTestModels.Policy();
        using var chat = model.AsChatClient(HostingTestModels.ChatMlFallback);
        using var cts = new CancellationTokenSource();
        int seen = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var u in chat.GetStreamingResponseAsync([new(ChatRole.User, "Q: 1+1")], new ChatOptions { Temperature = 1, MaxOutputTokens = 400 }, cts.Token))
                if (++seen == 3) cts.Cancel();
        });
        Assert.Equal(3, seen);
        HostingTestModels.AssertNoLeaks(model);
    }
}
