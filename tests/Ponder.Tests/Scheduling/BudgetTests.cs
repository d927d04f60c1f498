using CsCheck;
using Ponder.Backends;
using Ponder.Cache;
using Ponder.Scheduling;

namespace Ponder.Tests.Scheduling;

/// <summary>Budgets are never exceeded (hierarchies, reservations, random mixes of requests through the scheduler).</summary>
public sealed class BudgetTests
{
    static Charge Flops(long f, long tokens = 0) => new(FlopCounts.Of(FlopCategory.Projection, f), tokens);

    [Fact]
    public void ChildDrawsFromParentAndNeitherIsExceeded()
    {
        var parent = new Budget(new BudgetLimits(Flops: 100));
        var a = parent.Split(new BudgetLimits(Flops: 60));
        var b = parent.Split(new BudgetLimits(Flops: 60));
        Assert.True(a.TrySpend(Flops(50)));
        Assert.False(a.TrySpend(Flops(11)));                     // child cap: 50 + 11 > 60
        Assert.Contains("sub-budget FLOP cap 60", a.Explain(Flops(11)));
        Assert.True(b.TrySpend(Flops(45)));
        Assert.False(b.TrySpend(Flops(6)));                      // parent cap: 95 + 6 > 100, child would allow it
        Assert.Contains("budget FLOP cap 100", b.Explain(Flops(6)));
        Assert.True(b.TrySpend(Flops(5)));
        Assert.Equal(100, parent.Spent.Flops.Total);
        Assert.Equal((50L, 50L), (a.Spent.Flops.Total, b.Spent.Flops.Total));
    }

    [Fact]
    public void ReservationsHoldRoomAndReleaseTheRest()
    {
        var budget = new Budget(new BudgetLimits(Flops: 100, Tokens: 10));
        var r = budget.TryReserve(Flops(70, 5))!;
        Assert.NotNull(r);
        Assert.Null(budget.TryReserve(Flops(31)));
        Assert.True(r.TrySpend(Flops(20, 2)));
        Assert.False(r.TrySpend(Flops(51)));                     // more than is left in the reservation
        Assert.False(r.Covers(Flops(10, 4)));                    // tokens: 3 left
        r.Dispose();
        r.Dispose();
        Assert.Equal(Charge.Zero, budget.Reserved);
        Assert.Equal(20, budget.Spent.Flops.Total);
        Assert.True(budget.TrySpend(Flops(80, 8)));
        Assert.False(budget.CanAfford(Flops(1)));
    }

    [Fact]
    public void PerCategoryCapsApply()
    {
        var budget = new Budget(new BudgetLimits(FlopsByCategory: new Dictionary<FlopCategory, long> { [FlopCategory.PrmHead] = 10 }));
        Assert.True(budget.TrySpend(new Charge(new FlopCounts(1000, 1000, 1000, 10, 1000))));
        Assert.False(budget.TrySpend(new Charge(FlopCounts.Of(FlopCategory.PrmHead, 1))));
        Assert.True(budget.TrySpend(new Charge(FlopCounts.Of(FlopCategory.Attention, 1_000_000))));
    }

    [Fact]
    public void NegativeCapsAreRefusedWithTheirName()
    {
        var e = Assert.Throws<ArgumentException>(() => new Budget(new BudgetLimits(Flops: -1)));
        Assert.Contains("FLOP cap -1", e.Message);
    }

    /// <summary>
    /// Random requests (prompt length, decode length) with random budgets (FLOP or token caps, some of them children of
    /// one shared parent) decode concurrently through one scheduler. No budget ever ends above its cap; a request that
    /// was refused really could not pay its next chunk (the budget was used to the last affordable token); what the
    /// requests were charged sums to the backend's ledger.
    /// </summary>
    [Fact]
    public void RandomMixesOfRequestsNeverExceedTheirBudgets() =>
        Gen.Select(Gen.Int[1, 20], Gen.Int[1, 30], Gen.Int[0, 3], Gen.Long[0, 400_000]).Array[2, 5].Select(Gen.Long[0, 900_000], (r, p) => (r, p))
        .Sample(((int Prompt, int Decode, int Kind, long Cap)[] specs, long parentCap) =>
        {
            using var rig = new SchedulingRig(prefixIndex: false);
            var counter = rig.Policy.Counter;
            var parent = new Budget(new BudgetLimits(Flops: parentCap));
            var before = rig.Backend.Flops.Snapshot();
            var runs = specs.Select((s, i) =>
            {
                var limits = s.Kind switch { 0 => new BudgetLimits(Flops: s.Cap), 1 => new BudgetLimits(Tokens: s.Cap % 40), _ => new BudgetLimits(Flops: s.Cap) };
                var budget = s.Kind == 3 ? parent.Split(limits) : new Budget(limits);
                return (Spec: s, Budget: budget, Request: rig.Scheduler.CreateRequest(budget, $"r{i}"));
            }).ToList();
            var tasks = runs.Select(async run =>
            {
                Sequence seq;
                seq = rig.Scheduler.CreateSequence(run.Request, rig.Policy, []);
                try
                {
                    int[] next = [.. Enumerable.Range(0, run.Spec.Prompt).Select(i => (i * 7) % 64)];
                    var logits = new float[SchedulingRig.Vocab];
                    for (int step = 0; step <= run.Spec.Decode; step++)
                    {
                        var result = await rig.Scheduler.SubmitAsync(run.Request, rig.Policy, seq, next, logits).ConfigureAwait(false);
                        if (!result.Completed)
                        {
                            Assert.NotNull(result.Reason);
                            // The refused chunk (all pending tokens, or the first chunk of them) did not fit.
                            var refused = new Charge(counter.Chunk(seq.PendingLength, seq.ComputedLength, 1), seq.PendingLength);
                            Assert.False(run.Budget.CanAfford(refused), $"refused {refused} though it fits: {result.Reason}");
                            return false;
                        }
                        next = [Ponder.Sampling.Sampler.ArgMax(logits)];
                    }
                    return true;
                }
                finally { rig.Scheduler.Release(seq); }
            }).ToArray();
            Task.WaitAll(tasks);
            long charged = 0;
            foreach (var run in runs)
            {
                var report = run.Request.Report();
                var spent = run.Budget.Spent;
                if (run.Budget.Limits.Flops is { } cap) Assert.True(spent.Flops.Total <= cap, $"spent {spent.Flops.Total} > cap {cap}");
                if (run.Budget.Limits.Tokens is { } tokens) Assert.True(spent.Tokens <= tokens, $"spent {spent.Tokens} tokens > cap {tokens}");
                Assert.Equal(report.Flops.Total, spent.Flops.Total);
                Assert.Equal(report.TokensComputed, spent.Tokens);
                Assert.Equal(Charge.Zero, run.Budget.Reserved);
                charged += report.Flops.Total;
                run.Request.Dispose();
            }
            Assert.True(parent.Spent.Flops.Total <= parentCap);
            Assert.Equal(charged, rig.Backend.Flops.Since(before).Total);
            rig.AssertNoLeaks();
        }, iter: 20);
}
