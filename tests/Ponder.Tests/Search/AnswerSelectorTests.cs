using Ponder.Search;

namespace Ponder.Tests.Search;

public sealed class AnswerSelectorTests
{
    static SearchCandidate C(string? answer, double score, bool finished = true, int chain = 0) =>
        new(answer is null ? "x\n" : $"A: {answer}\n", [], [score], score, answer, finished, chain, 0);

    [Fact]
    public void Weighted_sums_scores_per_answer_where_naive_takes_the_single_best()
    {
        // "1" has the best single score (0.9) but "2" has the larger sum (0.5 + 0.5 = 1.0).
        SearchCandidate[] cs = [C("1", 0.9), C("2", 0.5), C("2", 0.5)];
        Assert.Equal("2", new AnswerSelector(AnswerSelection.Weighted).Select(cs));
        Assert.Equal("1", new AnswerSelector(AnswerSelection.Naive).Select(cs));
        Assert.Equal("2", new AnswerSelector(AnswerSelection.Majority).Select(cs));
    }

    [Fact]
    public void Majority_counts_answers_where_weighted_follows_the_verifier()
    {
        // "2" is the most frequent (3 of 5) but the verifier trusts "1" (0.9 + 0.8 = 1.7 > 0.3 + 0.2 + 0.1 = 0.6).
        SearchCandidate[] cs = [C("1", 0.9), C("1", 0.8), C("2", 0.3), C("2", 0.2), C("2", 0.1)];
        Assert.Equal("2", new AnswerSelector(AnswerSelection.Majority).Select(cs));
        Assert.Equal("1", new AnswerSelector(AnswerSelection.Weighted).Select(cs));
    }

    [Fact]
    public void Ties_are_deterministic_and_finished_candidates_are_preferred()
    {
        var weighted = new AnswerSelector();
        // Equal sums: the answer with more candidates wins, then the first seen.
        Assert.Equal("b", weighted.Select([C("a", 0.6), C("b", 0.3), C("b", 0.3)]));
        Assert.Equal("a", weighted.Select([C("a", 0.5), C("b", 0.5)]));
        Assert.Equal("a", new AnswerSelector(AnswerSelection.Majority).Select([C("a", 0), C("b", 1)]));
        // A finished "5" beats an unfinished "7" of higher score; with no finished one, the unfinished is the best guess.
        Assert.Equal("5", weighted.Select([C("7", 0.9, finished: false), C("5", 0.1)]));
        Assert.Equal("7", weighted.Select([C("7", 0.9, finished: false), C(null, 1.0)]));
        Assert.Null(weighted.Select([C(null, 1.0)]));
        Assert.Null(weighted.Select([]));
    }

    [Fact]
    public void Step_aggregations_match_hand_computed_values()
    {
        double[] s = [0.9, 0.5, 0.8];
        Assert.Equal(0.8, StepScoreAggregation.Aggregate(s, StepAggregation.Last));
        Assert.Equal(0.5, StepScoreAggregation.Aggregate(s, StepAggregation.Min));
        Assert.Equal(0.36, StepScoreAggregation.Aggregate(s, StepAggregation.Prod), 12);
        Assert.Equal(2.2 / 3, StepScoreAggregation.Aggregate(s, StepAggregation.Mean), 12);
        Assert.Equal(0, StepScoreAggregation.Aggregate([], StepAggregation.Min));
        Assert.Equal(StepAggregation.Prod, StepScoreAggregation.Parse(" PROD "));
        Assert.Throws<ArgumentException>(() => StepScoreAggregation.Parse("max"));
    }

    [Fact]
    public void Hierarchical_selection_picks_within_chains_first_and_differs_from_flat()
    {
        // Chain 0: b wins inside (0.6 > 0.5); chain 1: c wins inside; chain 2: d. Across winners: d (0.7) > b, c (0.3).
        // Flat weighted over everything would pick a (0.5 + 0.5 = 1.0), which lost in every chain.
        IReadOnlyList<SearchCandidate>[] chains =
        [
            [C("a", 0.5), C("b", 0.3), C("b", 0.3)],
            [C("a", 0.5), C("c", 0.3), C("c", 0.3)],
            [C("d", 0.7)],
        ];
        var weighted = new AnswerSelector();
        Assert.Equal("d", weighted.SelectHierarchical(chains));
        Assert.Equal("a", weighted.Select(chains.SelectMany(c => c).ToList()));
        // Majority is flat: a, b and c appear twice; a first.
        Assert.Equal("a", new AnswerSelector(AnswerSelection.Majority).SelectHierarchical(chains));
    }

    [Fact]
    public void The_answer_extractor_is_pluggable()
    {
        Assert.Equal("47", AnswerSelector.ExtractFinalLine("4*9=36\nA: 12\nA:  47 \n"));
        Assert.Null(AnswerSelector.ExtractFinalLine("4*9=36\n"));
        var boxed = new AnswerSelector(extractor: t =>
        {
            int i = t.LastIndexOf("\\boxed{", StringComparison.Ordinal);
            return i < 0 ? null : t[(i + 7)..t.IndexOf('}', i)];
        });
        var branchless = new SearchCandidate("so \\boxed{3}", [], [0.4], 0.4, boxed.Extractor("so \\boxed{3}"), true, 0, 0);
        Assert.Equal("3", boxed.Select([branchless]));
    }

    [Fact]
    public void Revision_prompt_keeps_the_last_four_attempts_oldest_first()
    {
        Assert.Equal("Q: 1+2\nRevision:\n", RevisionPrompt.Format("Q: 1+2\n", []));
        Assert.Equal("Q: 1+2\nAttempt:\nA: 4\nAttempt:\n1+2=3\nA: 3\nRevision:\n",
            RevisionPrompt.Format("Q: 1+2\n", ["A: 4\n", "1+2=3\nA: 3"]));
        var six = Enumerable.Range(1, 6).Select(i => $"A: {i}\n").ToList();
        Assert.Equal("Q: x\nAttempt:\nA: 3\nAttempt:\nA: 4\nAttempt:\nA: 5\nAttempt:\nA: 6\nRevision:\n", RevisionPrompt.Format("Q: x\n", six));
    }

    [Fact]
    public void Strategy_specs_round_trip_and_size_the_strategy_from_the_budget()
    {
        StrategySpec[] specs =
        [
            new(StrategyKind.BestOfN, 16), new(StrategyKind.BeamSearch, 16), new(StrategyKind.BeamSearch, 16, Width: 4),
            new(StrategyKind.Lookahead, 16, 4, LookaheadSteps: 3), new(StrategyKind.Dvts, 64, 4), new(StrategyKind.Revisions, 64, Parallel: 4),
        ];
        foreach (var s in specs) Assert.Equal(s, StrategySpec.Parse(s.Name, s.Params, s.Budget));
        Assert.Equal("beam(M=sqrt)@16", specs[1].ToString());
        Assert.Equal("beam(N=16,M=4)", specs[1].Create().Name);
        Assert.Equal("lookahead(N=4,M=4,k=3)", specs[3].Create().Name); // 16 / (k+1) = 4 beams
        Assert.Equal("dvts(N=64,M=4)", specs[4].Create().Name);
        Assert.Equal("revisions(P=4,L=16,sel=weighted)", specs[5].Create().Name);
        Assert.Equal(3, new BeamSearch(8).Width); // round(sqrt 8)
        var e = Assert.Throws<ArgumentException>(() => new StrategySpec(StrategyKind.Revisions, 10, Parallel: 4).Create());
        Assert.Contains("multiple of P = 4", e.Message);
        Assert.Throws<ArgumentException>(() => StrategySpec.Parse("beam", "Q=2", 4));
        Assert.Throws<ArgumentException>(() => new BeamSearch(4, width: 5));
    }
}
