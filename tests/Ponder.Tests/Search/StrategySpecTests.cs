using Ponder.Hosting;
using Ponder.Search;

namespace Ponder.Tests.Search;

/// <summary>The one strategy descriptor: every spelling a sweep file, a study config or a request writes reads into it.</summary>
public sealed class StrategySpecTests
{
    [Theory]
    [InlineData("best-of-n", StrategyKind.BestOfN, AnswerSelection.Weighted)]
    [InlineData("best_of_n", StrategyKind.BestOfN, AnswerSelection.Weighted)]
    [InlineData("BoN", StrategyKind.BestOfN, AnswerSelection.Weighted)]
    [InlineData("majority", StrategyKind.BestOfN, AnswerSelection.Majority)]
    [InlineData("best-of-n-majority", StrategyKind.BestOfN, AnswerSelection.Majority)]
    [InlineData("beam_search", StrategyKind.BeamSearch, AnswerSelection.Weighted)]
    [InlineData("beam-naive", StrategyKind.BeamSearch, AnswerSelection.Naive)]
    [InlineData("lookahead", StrategyKind.Lookahead, AnswerSelection.Weighted)]
    [InlineData(" DVTS ", StrategyKind.Dvts, AnswerSelection.Weighted)]
    [InlineData("revisions", StrategyKind.Revisions, AnswerSelection.Weighted)]
    public void NamesOfEveryFrontEndParse(string name, StrategyKind kind, AnswerSelection selection) =>
        Assert.Equal((kind, selection), StrategySpec.ParseName(name));

    [Fact]
    public void RecordNameRoundTripsThroughParse()
    {
        foreach (var spec in new[]
                 {
                     new StrategySpec(StrategyKind.BestOfN, 8, Selection: AnswerSelection.Majority),
                     new StrategySpec(StrategyKind.Lookahead, 8, 2, 1),
                     new StrategySpec(StrategyKind.Revisions, 16, Parallel: 2, AttemptBeams: 4, Selection: AnswerSelection.Naive),
                 })
            Assert.Equal(spec, StrategySpec.Parse(spec.RecordName, spec.Params, spec.Budget));
    }

    [Fact]
    public void BadNameNamesTheField()
    {
        var e = Assert.Throws<ArgumentException>(() => StrategySpec.ParseName("annealing", "ponder.strategy"));
        Assert.Equal("ponder.strategy", e.ParamName);
        Assert.Contains("'annealing'", e.Message);
        var s = Assert.Throws<ArgumentException>(() => StrategySpec.ParseSelection("best", "strategies[1].selection"));
        Assert.Equal("strategies[1].selection", s.ParamName);
    }

    [Fact]
    public void RequestPropertiesBecomeASpec()
    {
        var beam = TestTimeComputeOptions.FromProperties([new("strategy", "beam"), new("n", 8), new("beam_width", 2)])!;
        Assert.Equal(new StrategySpec(StrategyKind.BeamSearch, 8, 2), beam.Strategy);
        // Lookahead's n counts beams; each costs k+1 generations, so the spec's budget is n x (k+1) and it still builds n beams.
        var look = TestTimeComputeOptions.FromProperties([new("strategy", "lookahead"), new("n", 4), new("lookahead", 2)])!;
        Assert.Equal(new StrategySpec(StrategyKind.Lookahead, 12, 0, 2), look.Strategy);
        Assert.Equal(4, look.Strategy!.Branches);
        Assert.Equal(4, ((Lookahead)look.Strategy.Create()).Search.Beams);
        var majority = TestTimeComputeOptions.FromProperties([new("strategy", "majority"), new("n", 3)])!;
        Assert.Equal(new StrategySpec(StrategyKind.BestOfN, 3, Selection: AnswerSelection.Majority), majority.Strategy);
        Assert.False(majority.Strategy!.NeedsVerifier);
        Assert.Null(TestTimeComputeOptions.FromProperties([new("strategy", "none"), new("budget_flops", 5L)])!.Strategy);
        var e = Assert.Throws<ArgumentException>(() => TestTimeComputeOptions.FromProperties([new("strategy", "revisions")], "ponder."));
        Assert.Equal("ponder.strategy", e.ParamName);
    }
}
