using Ponder.Search;

namespace Ponder.Tests.Search;

/// <summary>A checker scores steps from their text over any engine; strategies run on it unchanged.</summary>
public sealed class CheckerSearchEngineTests
{
    /// <summary>Scores 1 while every step is "ok..." or the right answer.</summary>
    sealed class OkChecker : IStepChecker
    {
        public int Calls;
        public string Name => "ok-checker";
        public double Score(string prompt, IReadOnlyList<string> steps)
        {
            Calls++;
            return steps.All(s => s.StartsWith("ok", StringComparison.Ordinal) || s == "A: right") ? 1 : 0;
        }
    }

    [Fact]
    public async Task Beam_search_with_an_exact_checker_follows_only_correct_steps()
    {
        // A policy whose branches 0 and 1 of each call go wrong and the others right, for three steps, then answer.
        var inner = new ScriptedEngine(
            r => r.Steps.Count == 3 ? (r.Steps.All(s => s.StartsWith("ok")) ? "A: right" : "A: wrong") : (r.Index < 2 ? $"bad{r.Index}" : $"ok{r.Index}"),
            (_, _) => throw new InvalidOperationException("the inner engine's verifier must not be used"));
        var checker = new OkChecker();
        var engine = new CheckerSearchEngine(inner, checker);
        var result = await new BeamSearch(4, 2).RunAsync(engine, "q");
        Assert.Equal("right", result.Answer);
        // Survivors are all correct after the first round, and every candidate that finished right scores 1.
        Assert.All(result.Candidates.Where(c => c.Answer == "right"), c => Assert.Equal(1, c.Score));
        Assert.Equal(0, inner.Live);
    }

    [Fact]
    public async Task Forks_carry_their_scores_and_each_step_is_scored_once()
    {
        var inner = new ScriptedEngine(r => "ok", (_, _) => 0);
        var checker = new OkChecker();
        var engine = new CheckerSearchEngine(inner, checker);
        using var a = engine.Start("Q: 1\n");
        await engine.ExtendAsync([a], new StepSampling());
        await engine.ScoreAsync([a]);
        using var b = a.Fork();
        Assert.Equal([1.0], b.StepScores);
        await engine.ExtendAsync([b], new StepSampling());
        await engine.ScoreAsync([a, b]);
        Assert.Equal(2, checker.Calls); // a's step once, b's second step once (its first came with the fork)
        Assert.Equal([1.0, 1.0], b.StepScores);
        Assert.Throws<ArgumentException>(() => { engine.ScoreAsync([inner.Start("x")]); });
    }
}
