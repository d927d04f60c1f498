using Ponder.Hosting;
using Ponder.Sampling;
using Ponder.Search;
using Xunit.Abstractions;

namespace Ponder.Tests.Hosting;

/// <summary>
/// A FLOP budget below a search's full cost still answers: fewer complete generations rather than N cut short, the
/// budget spent to within the cost of the smallest piece of work it refused, and the report saying how much was used.
/// On the shipped policy and PRM, so the text has real answer lines.
/// </summary>
public sealed class BudgetedSearchTests(ITestOutputHelper output)
{
    const string Prompt = "Q: 4*9+3\n";

    static string Weights(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) return Path.Combine(dir.FullName, "weights", name);
        throw new InvalidOperationException($"no Engine.sln above {AppContext.BaseDirectory}");
    }

    [Theory]
    [InlineData("best-of-n", 0.3)]
    [InlineData("best-of-n", 0.5)]
    [InlineData("best-of-n", 0.9)]
    [InlineData("majority", 0.3)]
    [InlineData("beam", 0.5)]
    public async Task ABudgetBelowTheFullCostStillAnswersAndSpendsCloseToIt(string strategy, double fraction)
    {
        await using var policy = await PonderModel.LoadAsync(Weights("policy-small"), new ModelOptions { KvCacheTokens = 4096 });
        var prm = await PonderModel.LoadAsync(Weights("prm-small"), new ModelOptions { KvCacheTokens = 4096 });
        using var engine = new CompletionEngine(policy, prm, ownsPrm: true);
        var sampling = new SamplingOptions { Seed = 7 };
        var (kind, selection) = StrategySpec.ParseName(strategy);
        var compute = new TestTimeComputeOptions { Strategy = new StrategySpec(kind, 8, Selection: selection) };
        var (_, full) = await engine.CompleteAsync(Prompt, sampling, compute);
        Assert.False(full.BudgetExhausted);
        long fullCost = full.Flops.Flops.Total;

        long budget = (long)(fraction * fullCost);
        var (text, report) = await engine.CompleteAsync(Prompt, sampling, compute with { BudgetFlops = budget });
        long spent = report.Flops.Flops.Total;
        output.WriteLine($"{strategy} at {fraction}x: budget {budget:N0} of {fullCost:N0}, spent {spent:N0} ({(double)spent / budget:P1}), answer {report.Answer}, " +
                         $"generations {report.Generations} of {full.Generations}; text: {text.Replace("\n", "\\n")}");
        Assert.True(report.BudgetExhausted);
        Assert.NotNull(report.Answer);
        Assert.Contains("A: " + report.Answer, text);
        Assert.True(spent <= budget, $"spent {spent} over the budget {budget}");
        // What is left is less than the smallest refused piece: one policy token at the longest context, or one
        // step's scoring by the PRM (a step of at most MaxStepTokens tokens after the prompt and earlier steps).
        int context = policy.Config.MaxPositions;
        long slack = policy.Scheduled.Counter.Decode(context - 1, 1).Total
                     + prm.Scheduled.Counter.Chunk(compute.MaxStepTokens, context - compute.MaxStepTokens, 1).Total;
        Assert.True(budget - spent < slack, $"left {budget - spent} FLOPs unspent (slack {slack})");
    }
}
