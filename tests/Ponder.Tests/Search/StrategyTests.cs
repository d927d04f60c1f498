using Ponder.Search;

namespace Ponder.Tests.Search;

public sealed class StrategyTests
{
    static double LastStepScore(IReadOnlyList<string> steps, Dictionary<string, double> table) =>
        table.TryGetValue(steps[^1], out var s) ? s : 0.5;

    static SearchResult Run(ISearchStrategy s, ScriptedEngine e, string q = "1+1") => s.RunAsync(e, q).AsTask().GetAwaiter().GetResult();

    [Fact]
    public void Best_of_n_samples_n_forks_of_one_prompt_and_selects_weighted()
    {
        string[] answers = ["1", "2", "2", "3"];
        var scores = new Dictionary<string, double> { ["A: 1"] = 0.9, ["A: 2"] = 0.5, ["A: 3"] = 0.2 };
        var e = new ScriptedEngine(r => r.Steps.Count == 0 ? $"w{r.Index}" : $"A: {answers[r.Index]}", (_, s) => LastStepScore(s, scores));
        var result = Run(new BestOfN(4), e);

        Assert.Equal("2", result.Answer); // 0.5 + 0.5 > 0.9
        Assert.Equal(["w0\nA: 1\n", "w1\nA: 2\n", "w2\nA: 2\n", "w3\nA: 3\n"], result.Candidates.Select(c => c.Text));
        Assert.Equal([0.9, 0.5, 0.5, 0.2], result.Candidates.Select(c => c.Score));
        Assert.Equal(["Q: 1+1\n"], e.StartedPrompts); // one prompt, forked
        Assert.Equal(2, result.Rounds);
        // 8 steps extended (10 each) + 8 step prefixes scored (1 each); 8 steps / 2 per generation = 4 generations.
        Assert.Equal(88, result.Budget.FlopsSpent);
        Assert.Equal(4, result.Budget.GenerationsSpent);
        Assert.Equal((5, 0), (e.Created, e.Live));
        Assert.NotEqual(e.Extends[0].Sampling.Seed, e.Extends[1].Sampling.Seed);
        Assert.All(e.Extends, x => Assert.Equal(1f, x.Sampling.Temperature));

        var majority = new ScriptedEngine(r => r.Steps.Count == 0 ? $"w{r.Index}" : $"A: {answers[r.Index]}", (_, s) => LastStepScore(s, scores));
        var m = Run(new BestOfN(4, new SearchOptions { Selector = new AnswerSelector(AnswerSelection.Majority) }), majority);
        Assert.Equal("2", m.Answer);
        Assert.Empty(majority.Scores); // majority needs no verifier
        Assert.Equal(80, m.Budget.FlopsSpent);
    }

    /// <summary>
    /// N = 4, M = 2. Round 1 samples s0..s3 scored 0.1, 0.9, 0.5, 0.7: s1 and s3 survive (N/M = 2), s0 and s2 are
    /// disposed; each survivor gets M = 2 children (itself + one fork) which finish in round 2.
    /// </summary>
    [Fact]
    public void Beam_search_keeps_n_over_m_and_expands_each_m_times()
    {
        var scores = new Dictionary<string, double>
        {
            ["s0"] = 0.1, ["s1"] = 0.9, ["s2"] = 0.5, ["s3"] = 0.7, ["A: 7"] = 0.3, ["A: 8"] = 0.95,
        };
        var e = new ScriptedEngine(r => r.Steps.Count == 0 ? $"s{r.Index}" : r.Index == 3 ? "A: 8" : "A: 7", (_, s) => LastStepScore(s, scores));
        var result = Run(new BeamSearch(4, 2), e);

        Assert.Equal(2, e.Extends.Count);
        Assert.Equal(["", "", "", ""], e.Extends[0].Texts);
        Assert.Equal(["s1\n", "s1\n", "s3\n", "s3\n"], e.Extends[1].Texts); // best first, M children each
        Assert.Equal(["s1\nA: 7\n", "s1\nA: 7\n", "s3\nA: 7\n", "s3\nA: 8\n"], result.Candidates.Select(c => c.Text));
        Assert.Equal([1, 1, 3, 3], result.Candidates.Select(c => c.Chain));
        Assert.Equal("8", result.Answer); // weighted: 8 -> 0.95 > 7 -> 0.3 * 3
        Assert.Equal(2, result.Rounds);
        Assert.False(result.BudgetExhausted);
        // Steps: 4 + 4 extended (80) and scored (4 + 4 new prefixes: forks inherit the scores of shared steps).
        Assert.Equal(88, result.Budget.FlopsSpent);
        // Root + 4 first beams + 2 expansion forks; all disposed.
        Assert.Equal((7, 6, 0), (e.Created, e.Forks, e.Live));
    }

    /// <summary>
    /// Why beam search falls below best-of-N with a verifier that cannot tell a slip from the right step: a verifier is a
    /// function of the text, so every copy of the slip shares one score. 16 first steps, 14 right ("6") and 2 copies of
    /// a slip ("4"), and a verifier that happens to prefer the slip: beam search (N = 16, M = 4) keeps both slips first
    /// and expands them, so half of its candidates carry the slip and the weighted vote follows the verifier; best-of-N
    /// with the same verifier votes 14 to 2 and answers right.
    /// </summary>
    [Fact]
    public void Beam_search_follows_a_verifier_that_prefers_a_duplicated_slip_where_best_of_n_outvotes_it()
    {
        static string Policy(StepRequest r) => r.Steps.Count == 0 ? (r.Index is 3 or 11 ? "8-2=4" : "8-2=6") : $"A: {r.Steps[0][^1]}";
        static double Verifier(string _, IReadOnlyList<string> steps) => steps[0] == "8-2=4" ? 0.6 : 0.5;
        var beam = Run(new BeamSearch(16, 4), new ScriptedEngine(Policy, Verifier), "8-2");
        Assert.Equal("4", beam.Answer);
        Assert.Equal(8, beam.Candidates.Count(c => c.Answer == "4"));
        var bestOfN = Run(new BestOfN(16), new ScriptedEngine(Policy, Verifier), "8-2");
        Assert.Equal("6", bestOfN.Answer);
        Assert.Equal(2, bestOfN.Candidates.Count(c => c.Answer == "4"));
    }

    [Fact]
    public void Beam_search_finished_beams_free_their_slots_and_rounds_stop_at_the_limit()
    {
        // Beam 0 finishes in round 1; the 3 remaining slots go to ceil(3/2) = 2 survivors (2 + 1 children).
        var e = new ScriptedEngine(r => r.Steps.Count == 0 && r.Index == 0 ? "A: 1" : $"x{r.Index}",
            (_, s) => s[^1] == "x3" ? 0.9 : s[^1] == "x2" ? 0.8 : 0.1) { };
        var result = Run(new BeamSearch(4, 2, 0, new SearchOptions { MaxRounds = 3 }), e);
        Assert.Equal(3, e.Extends.Count);
        Assert.Equal(3, e.Extends[1].Texts.Count);
        Assert.Equal(["x3\n", "x3\n", "x2\n"], e.Extends[1].Texts);
        Assert.Equal(3, result.Rounds);
        Assert.Equal(4, result.Candidates.Count);
        Assert.Single(result.Candidates, c => c.Finished);
        Assert.Equal("1", result.Answer);
        Assert.Equal(0, e.Live);

        // A policy that never finishes stops after 40 rounds (the paper's limit) with no answer.
        var endless = new ScriptedEngine(r => "x", (_, _) => 0.5);
        var r40 = Run(new BeamSearch(2, 1), endless);
        Assert.Equal(40, r40.Rounds);
        Assert.Null(r40.Answer);
        Assert.Equal(0, endless.Live);
    }

    /// <summary>
    /// Own scores would keep s0, s1 (0.9, 0.8); greedy rollouts of k = 2 steps end at 0.1, 0.2, 0.95, 0.9, so
    /// lookahead keeps s2, s3. Rollouts are temperature 0, scored once at their end, then disposed.
    /// </summary>
    [Fact]
    public void Lookahead_ranks_by_greedy_rollouts_scored_at_their_end()
    {
        double[] own = [0.9, 0.8, 0.1, 0.2];
        double[] rolloutEnd = [0.1, 0.2, 0.95, 0.9];
        string Policy(StepRequest r) =>
            r.Sampling.Temperature == 0 ? $"g{r.Steps.Count}"
            : r.Steps.Count == 0 ? $"s{r.Index}"
            : $"A: {r.Steps[0]}";
        double Prm(string _, IReadOnlyList<string> s)
        {
            int first = s[0][0] == 's' ? s[0][1] - '0' : -1;
            if (s[^1].StartsWith('g')) return s[^1] == "g2" ? rolloutEnd[first] : 0.5;
            return s.Count == 1 ? own[first] : 0.5;
        }
        var e = new ScriptedEngine(Policy, Prm);
        var result = Run(new Lookahead(4, 2, 2), e);

        var greedy = e.Extends.Where(x => x.Sampling.Temperature == 0).ToList();
        Assert.Equal(2, greedy.Count); // k = 2 rollout steps, all 4 rollouts together
        Assert.Equal(["s0\n", "s1\n", "s2\n", "s3\n"], greedy[0].Texts);
        Assert.Equal(["s0\ng1\n", "s1\ng1\n", "s2\ng1\n", "s3\ng1\n"], greedy[1].Texts);
        // Rollouts are scored in one call after their last step (their own step scores are at the end).
        Assert.Contains(e.Scores, call => call.SequenceEqual(["s0\ng1\ng2\n", "s1\ng1\ng2\n", "s2\ng1\ng2\n", "s3\ng1\ng2\n"]));
        Assert.Equal(["s2\n", "s2\n", "s3\n", "s3\n"], e.Extends.Where(x => x.Sampling.Temperature > 0).ElementAt(1).Texts);
        Assert.Equal("s2", result.Answer); // 2 candidates each, all 0.5: s2 first
        Assert.Equal(0, e.Live);

        // k = 0 is beam search: keeps s0, s1 on their own scores.
        var beam = new ScriptedEngine(Policy, Prm);
        var plain = Run(new Lookahead(4, 2, 0), beam);
        Assert.Equal(["s0\n", "s0\n", "s1\n", "s1\n"], beam.Extends[1].Texts);
        Assert.DoesNotContain(beam.Extends, x => x.Sampling.Temperature == 0);
        Assert.Equal("beam(N=4,M=2)", new Lookahead(4, 2, 0).Name);
        Assert.Equal("s0", plain.Answer);
    }

    /// <summary>N = 8, M = 2: 4 subtrees; each round every subtree has 2 children and keeps the better (odd index).</summary>
    [Fact]
    public void Dvts_runs_n_over_m_subtrees_each_keeping_its_best_child()
    {
        var e = new ScriptedEngine(r => r.Steps.Count == 0 ? $"t{r.Index}" : $"A: {r.Steps[0]}.{r.Index}",
            (_, s) => s.Count == 1 ? (s[0][1] - '0') % 2 == 1 ? 0.6 : 0.3 : s[^1].EndsWith('0') || s[^1].EndsWith('1') ? 0.99 : 0.4);
        var dvts = new Dvts(8, 2);
        Assert.Equal(4, dvts.Subtrees);
        var result = Run(dvts, e);

        Assert.Equal(2, e.Extends.Count);
        Assert.Equal(8, e.Extends[0].Texts.Count);
        Assert.Equal(["t1\n", "t1\n", "t3\n", "t3\n", "t5\n", "t5\n", "t7\n", "t7\n"], e.Extends[1].Texts);
        // Subtree 0's children got indices 0, 1 in round 2 (score 0.99, first kept); the others score 0.4, first kept.
        Assert.Equal(["t1\nA: t1.0\n", "t3\nA: t3.2\n", "t5\nA: t5.4\n", "t7\nA: t7.6\n"], result.Candidates.Select(c => c.Text));
        Assert.Equal([0, 1, 2, 3], result.Candidates.Select(c => c.Chain));
        Assert.Equal("t1.0", result.Answer);
        Assert.Equal(0, e.Live);
        Assert.Equal(1 + 4 + 4 + 4, e.Created); // root, 4 subtrees, 4 forks per round x 2 rounds
    }

    /// <summary>
    /// P = 2 chains x 6 attempts; the policy answers "{chain}{attempts in context}". The 6th attempt of a chain sees only
    /// attempts 2..5 (window of 4); selection is hierarchical.
    /// </summary>
    [Fact]
    public void Revisions_use_a_sliding_window_of_four_and_select_hierarchically()
    {
        static int Attempts(string prompt) => (prompt.Length - prompt.Replace(RevisionPrompt.AttemptHeader, "").Length) / RevisionPrompt.AttemptHeader.Length;
        // Chain 0's answers 00, 01, 02, 03, 04, 04 score 0.1..; chain 1 always answers 9x with low scores except one.
        var score = new Dictionary<string, double> { ["A: 03"] = 0.8, ["A: 04"] = 0.45, ["A: 13"] = 0.85 };
        var e = new ScriptedEngine(r => $"A: {r.Index}{Attempts(r.Prompt)}", (_, s) => LastStepScore(s, score) - 0.4);
        var result = Run(new Revisions(2, 6), e);

        Assert.Equal(12, e.StartedPrompts.Count);
        Assert.Equal("Q: 1+1\nRevision:\n", e.StartedPrompts[0]);
        var sixth = e.StartedPrompts[10]; // step 5, chain 0
        Assert.Equal("Q: 1+1\nAttempt:\nA: 01\nAttempt:\nA: 02\nAttempt:\nA: 03\nAttempt:\nA: 04\nRevision:\n", sixth);
        Assert.Equal(6, result.Rounds);
        Assert.Equal(12, result.Candidates.Count);
        Assert.Equal(["00", "01", "02", "03", "04", "04"], result.Candidates.Where(c => c.Chain == 0).Select(c => c.Answer));
        // Scores are 0.1 except 03 (0.4), 04 (0.05 each) and 13 (0.45). Chain 0's winner: 03 (0.4 > 0.1 for 04).
        // Chain 1's winner: 13 (0.45 > 0.2 for 14). Across the winners: 13.
        Assert.Equal("13", result.Answer);
        Assert.Equal(0, e.Live);
        Assert.Equal(12 * 10 + 12 * 1, result.Budget.FlopsSpent);

        var maj = new ScriptedEngine(r => $"A: {r.Index}{Attempts(r.Prompt)}", (_, _) => 0.5);
        var m = Run(new Revisions(2, 6, new SearchOptions { Selector = new AnswerSelector(AnswerSelection.Majority) }), maj);
        Assert.Equal("04", m.Answer); // 04 and 14 appear twice; 04 first
        Assert.Empty(maj.Scores);
    }

    /// <summary>
    /// Beam search inside revisions: P = 2 chains x L = 2 attempts, each attempt a beam search of B = 4 beams (M = 2).
    /// The policy writes "s{index}" then an answer; the PRM prefers higher indices, so each tree's kept candidate is its
    /// best-scored one, and the second attempt's prompt holds the first attempt's kept text.
    /// </summary>
    [Fact]
    public void Revisions_with_a_beam_search_per_attempt_keep_each_trees_selected_candidate()
    {
        static int Attempts(string prompt) => (prompt.Length - prompt.Replace(RevisionPrompt.AttemptHeader, "").Length) / RevisionPrompt.AttemptHeader.Length;
        var e = new ScriptedEngine(r => r.Steps.Count == 0 ? $"s{r.Index % 4}" : $"A: {r.Steps[0][1]}{Attempts(r.Prompt)}",
            (_, steps) => steps.Count == 1 ? (steps[0][1] - '0') / 10.0 : (steps[0][1] - '0') / 10.0 + 0.05);
        var result = Run(new Revisions(2, 2, attemptBeams: 4), e);

        // 2 sequential steps x 2 chains, one tree each: 4 roots; each tree's first round extends 4 beams.
        Assert.Equal(4, e.StartedPrompts.Count);
        Assert.Equal(4, result.Candidates.Count);
        Assert.All(result.Candidates, c => Assert.True(c.Finished));
        // Each tree keeps 2 of 4 first steps (ranks s3, s2; then s3, s2 again as the call's indices repeat mod 4).
        Assert.Equal([0, 0, 1, 1], result.Candidates.Select(c => c.Chain).Order());
        Assert.All(result.Candidates, c => Assert.Equal(c.Round == 0 ? "30" : "31", c.Answer));
        Assert.Contains("Attempt:\ns3\nA: 30\n", e.StartedPrompts[2]);
        Assert.Equal(0, e.Live);
        Assert.Throws<ArgumentException>(() => new Revisions(2, 2, new SearchOptions { Selector = new AnswerSelector(AnswerSelection.Majority) }, attemptBeams: 4));
        Assert.Equal(new StrategySpec(StrategyKind.Revisions, 16, Parallel: 2, AttemptBeams: 4), StrategySpec.Parse("revisions", "P=2;B=4", 16));
        Assert.Equal("P=2;B=4", StrategySpec.Parse("revisions", "P=2;B=4", 16).Params);
        Assert.Equal(2, ((Revisions)StrategySpec.Parse("revisions", "P=2;B=4", 16).Create()).Sequential);
    }

    /// <summary>
    /// A context that holds the question, two attempts and the answer room: the window shrinks from four attempts to the
    /// two most recent, and the chain goes on.
    /// </summary>
    [Fact]
    public void Revisions_shrink_the_window_to_fit_the_policy_context()
    {
        static int Attempts(string prompt) => (prompt.Length - prompt.Replace(RevisionPrompt.AttemptHeader, "").Length) / RevisionPrompt.AttemptHeader.Length;
        // "Q: 1+1\n" (7) + w x "Attempt:\nA: 0k\n" (15) + "Revision:\n" (10) + room.
        int context = 7 + 2 * 15 + 10 + RevisionPrompt.AnswerRoom;
        var e = new ScriptedEngine(r => $"A: {r.Index}{Attempts(r.Prompt)}", (_, _) => 0.5) { Context = context };
        var result = Run(new Revisions(1, 6), e);

        Assert.Equal(6, e.StartedPrompts.Count);
        Assert.All(e.StartedPrompts, p => Assert.True(p.Length + RevisionPrompt.AnswerRoom <= context, p));
        Assert.Equal("Q: 1+1\nAttempt:\nA: 02\nAttempt:\nA: 02\nRevision:\n", e.StartedPrompts[5]);
        Assert.Equal(["00", "01", "02", "02", "02", "02"], result.Candidates.Select(c => c.Answer));
    }

    public static TheoryData<string, long> Strategies => new()
    {
        { "best-of-n", 115 }, { "beam", 115 }, { "dvts", 115 }, { "revisions", 115 },
        // Round 1 of lookahead costs 8 steps + 8 scores + 8 rollout steps + 8 rollout scores = 176; 3 more steps fit.
        { "lookahead", 206 },
    };

    static ISearchStrategy Make(string name) => name switch
    {
        "best-of-n" => new BestOfN(8),
        "beam" => new BeamSearch(8, 2),
        "lookahead" => new Lookahead(8, 2, 1),
        "dvts" => new Dvts(8, 2),
        _ => new Revisions(4, 2),
    };

    /// <summary>
    /// Every branch answers "5" after two steps (rollouts at once). The cap pays for round 1 (8 first steps, 80 FLOPs,
    /// plus scores) and only some of round 2, so the run is cut: it must stop within the cap, report exhaustion, still
    /// answer (from the few finished candidates, unscored), and leak no branch.
    /// </summary>
    [Theory]
    [MemberData(nameof(Strategies))]
    public void A_budget_limited_run_stops_within_budget_and_still_answers(string name, long cap)
    {
        var e = new ScriptedEngine(r => r.Steps.Count == 0 && r.Sampling.Temperature > 0 ? $"w{r.Index}" : "A: 5", (_, _) => 0.5)
        {
            FlopsCap = cap,
        };
        var result = Run(Make(name), e);
        Assert.True(result.BudgetExhausted, name);
        Assert.InRange(result.Budget.FlopsSpent, cap - 9, cap);
        Assert.Equal("5", result.Answer);
        Assert.Equal(0, e.Live);
    }

    [Fact]
    public void Compute_optimal_runs_the_strategy_its_table_chose_for_the_questions_bin()
    {
        var table = new ComputeOptimalTable(
        [
            new(1, 4, "revisions", "P=1", 0.9), new(1, 16, "best-of-n", "", 0.95),
            new(5, 4, "beam", "M=2", 0.2),
        ]);
        int Bin(string q) => q == "hard" ? 5 : 1;
        Assert.Equal(new StrategySpec(StrategyKind.Revisions, 8, Parallel: 1), new ComputeOptimal(table, Bin, 8).Choose("easy"));
        Assert.Equal(new StrategySpec(StrategyKind.BestOfN, 32), new ComputeOptimal(table, Bin, 32).Choose("easy"));
        Assert.Equal(new StrategySpec(StrategyKind.BeamSearch, 4, 2), new ComputeOptimal(table, Bin, 4).Choose("hard"));
        Assert.Throws<ArgumentException>(() => new ComputeOptimal(table, Bin, 2).Choose("hard"));

        var e = new ScriptedEngine(r => "A: 3", (_, _) => 0.7);
        var result = Run(new ComputeOptimal(table, Bin, 4), e, "hard");
        Assert.Equal("compute-optimal:beam(N=4,M=2)", result.Strategy);
        Assert.Equal("3", result.Answer);

        var path = Path.Combine(Path.GetTempPath(), $"ponder-co-{Guid.NewGuid():N}.json");
        try
        {
            table.Save(path);
            Assert.Equal(table.Entries, ComputeOptimalTable.Load(path).Entries);
            File.WriteAllText(path, "[{\"Bin\":1,\"Budget\":4,\"Strategy\":\"magic\",\"Params\":\"\",\"Accuracy\":0}]");
            var bad = Assert.Throws<InvalidDataException>(() => ComputeOptimalTable.Load(path));
            Assert.Contains("magic", bad.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
