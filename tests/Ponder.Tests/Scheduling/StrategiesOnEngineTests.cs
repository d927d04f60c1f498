using Ponder.Scheduling;
using Ponder.Search;

namespace Ponder.Tests.Scheduling;

/// <summary>
/// The paper's strategies (written against <see cref="ISearchEngine"/> with scripted engines) run end to end on the
/// scheduled engine with random models: generations as the paper counts them, budgets never exceeded, nothing leaked.
/// </summary>
public sealed class StrategiesOnEngineTests
{
    static readonly SearchOptions Options = new() { MaxStepTokens = 6, MaxRounds = 5, Seed = 3 };

    public static TheoryData<string, double> Strategies => new()
    {
        { "best-of-4", 4 },
        { "beam-4-2", 4 },
        { "lookahead-4-2-1", 8 },
        { "dvts-4-2", 4 },
    };

    static ISearchStrategy Create(string name) => name switch
    {
        "best-of-4" => new BestOfN(4, Options),
        "beam-4-2" => new BeamSearch(4, 2, 0, Options),
        "lookahead-4-2-1" => new BeamSearch(4, 2, 1, Options),
        _ => new Dvts(4, 2, Options),
    };

    [Theory]
    [MemberData(nameof(Strategies))]
    public async Task StrategyRunsOnTheEngineWithTheExpectedGenerationsAndNoLeaks(string name, double generations)
    {
        using var rig = new SchedulingRig();
        using (var engine = rig.Engine())
        {
            var result = await Create(name).RunAsync(engine, "12+34*5");
            Assert.False(result.BudgetExhausted);
            Assert.Equal(generations, engine.Budget.GenerationsSpent);
            Assert.Equal(rig.Backend.Flops.Total, engine.Budget.FlopsSpent);
            var report = engine.Request.Report();
            Assert.True(report.TokensReused > 0, "forks of the prompt reuse its blocks");
        }
        rig.AssertNoLeaks();
    }

    [Theory]
    [MemberData(nameof(Strategies))]
    public async Task StrategyUnderATightFlopBudgetFinishesGracefullyWithinIt(string name, double generations)
    {
        _ = generations;
        using var rig = new SchedulingRig();
        long cap = 4 * rig.Policy.Counter.Decode(12, 6).Total + rig.Policy.Counter.Chunk(12, 0, 1).Total;
        using (var engine = rig.Engine(new Budget(new BudgetLimits(Flops: cap))))
        {
            var result = await Create(name).RunAsync(engine, "12+34*5");
            Assert.True(result.BudgetExhausted);
            Assert.True(engine.Budget.FlopsSpent <= cap, $"spent {engine.Budget.FlopsSpent} of {cap}");
            Assert.Equal(rig.Backend.Flops.Total, engine.Budget.FlopsSpent);
        }
        rig.AssertNoLeaks();
    }
}
