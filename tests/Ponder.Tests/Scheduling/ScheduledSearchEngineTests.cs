using Ponder.Backends;
using Ponder.Cache;
using Ponder.Scheduling;
using Ponder.Search;
using Ponder.Search.Engine;

namespace Ponder.Tests.Scheduling;

/// <summary>
/// The search engine over the scheduler. The random policy's byte tokenizer never produces "\n" and the config has
/// no EOS, so every step ends at MaxStepTokens: token counts below are exact.
/// </summary>
public sealed class ScheduledSearchEngineTests
{
    const string Prompt = "Q: 12+34*5=";   // 11 tokens
    const int P = 11, StepTokens = 5;
    static readonly StepSampling Sampling = new(Temperature: 1f, Seed: 7, MaxStepTokens: StepTokens);

    static List<Branch> StartMany(ScheduledSearchEngine engine, int count) => [.. Enumerable.Range(0, count).Select(_ => engine.Start(Prompt))];

    /// <summary>An engine with <paramref name="count"/> branches of the prompt, each extended <paramref name="steps"/> times together.</summary>
    static async Task<List<Branch>> Extended(ScheduledSearchEngine engine, int count, int steps)
    {
        var branches = StartMany(engine, count);
        for (int i = 0; i < steps; i++) await engine.ExtendAsync(branches, Sampling);
        return branches;
    }

    static ModelReport Usage(ScheduledSearchEngine engine, string model) =>
        engine.Request.Report().Models.SingleOrDefault(m => m.Model == model) ?? new ModelReport(model, default, default, 0, 0, 0, 0);

    [Fact]
    public async Task StartsShareOnePrefillAndForksRecomputeNoPrefix()
    {
        using var rig = new SchedulingRig();
        using var engine = rig.Engine();
        var roots = StartMany(engine, 3);
        var outcome = await engine.ExtendAsync(roots, Sampling);
        Assert.Equal(new StepOutcome(3, 0, false), outcome);
        // The prompt once, then every sampled token once (the last one too: its logits start the next step).
        Assert.Equal(P + 3 * StepTokens, Usage(engine, "policy").TokensComputed);
        Assert.All(roots, b => Assert.Equal(StepTokens, b.Text.Length));

        var forks = roots.SelectMany(b => new[] { b, b.Fork(), b.Fork() }).ToList();
        long copiesBefore = rig.PolicyPool.CopyOnWriteCopies;
        Assert.True(rig.PolicyPool.Stats().SharedBlocks >= 4, "the forks share their parents' blocks");
        outcome = await engine.ExtendAsync(forks, Sampling);
        Assert.Equal(new StepOutcome(9, 0, false), outcome);
        Assert.Equal(P + 3 * StepTokens + 9 * StepTokens, Usage(engine, "policy").TokensComputed);
        // Only a shared, partly filled last block is copied when a fork writes to it: here the 16-token prefixes end
        // on a block boundary (block size 4), so no block is copied at all.
        Assert.Equal(0, rig.PolicyPool.CopyOnWriteCopies - copiesBefore);
        Assert.All(forks, b => Assert.Equal(2, b.Steps.Count));
        // Reported savings: 2 later starts reused the prompt, 6 forks their 16-token prefix.
        var counter = rig.Policy.Counter;
        Assert.Equal(2 * P + 6 * (P + StepTokens), Usage(engine, "policy").TokensReused);
        Assert.Equal((counter.Prefill(P).Total * 2) + counter.Prefill(P + StepTokens).Total * 6, Usage(engine, "policy").SavedFlops.Total);
        foreach (var b in forks) b.Dispose();
        engine.Dispose();
        rig.AssertNoLeaks();
    }

    [Fact]
    public async Task PrmMirrorPrefillsOnlyNewStepsAndScoresMatchADirectForward()
    {
        using var rig = new SchedulingRig();
        using var engine = rig.Engine();
        var branches = await Extended(engine, 3, 1);
        Assert.Equal(new StepOutcome(3, 0, false), await engine.ScoreAsync(branches));
        Assert.Equal(P + 3 * StepTokens, Usage(engine, "prm").TokensComputed);

        await engine.ExtendAsync(branches, Sampling);
        var fork = branches[0].Fork();
        await engine.ExtendAsync([fork], Sampling);
        await engine.ScoreAsync([.. branches, fork]);
        // Branches: their second step only; the fork: its second and third steps (its first is shared).
        Assert.Equal(P + 3 * StepTokens + 3 * StepTokens + 2 * StepTokens, Usage(engine, "prm").TokensComputed);
        Assert.All(branches, b => Assert.Equal(2, b.StepScores.Count));
        Assert.Equal(3, fork.StepScores.Count);
        Assert.Equal(branches[0].StepScores[0], fork.StepScores[0]);

        // Independent check: the PRM run on the whole text from an empty cache, in one piece.
        var tokens = rig.Tokenizer.Encode(Prompt).Concat(rig.Tokenizer.Encode(fork.Text)).ToArray();
        Assert.Equal(P + 3 * StepTokens, tokens.Length);
        using var seq = new Sequence(rig.PrmPool);
        seq.Append(tokens);
        var layout = new BatchLayout(rig.PrmPool.BlockSize);
        layout.Add(0, tokens.Length, seq.BlockTable);
        int[] rows = [P + StepTokens - 1, P + 2 * StepTokens - 1, P + 3 * StepTokens - 1];
        var output = new float[3];
        rig.Scheduler.RunExclusive(() => rig.PrmTransformer.Forward(layout, tokens, rig.PrmPool.Storage, rows, output));
        for (int i = 0; i < 3; i++) Assert.Equal(1 / (1 + Math.Exp(-output[i])), fork.StepScores[i], 5);
        fork.Dispose();
    }

    /// <summary>
    /// A branch started with a verifier prompt (a revision: the reviser reads earlier attempts, the PRM only the
    /// question): the policy computes the long prompt, the PRM mirror the short one plus the steps, and its scores
    /// match a direct PRM forward over the short prompt and the generated text.
    /// </summary>
    [Fact]
    public async Task VerifierPromptReplacesThePolicyPromptInThePrmMirror()
    {
        const string Short = "Q: 1+2=";     // 7 tokens
        using var rig = new SchedulingRig();
        using var engine = rig.Engine();
        var b = engine.Start(Prompt, verifierPrompt: Short);
        await engine.ExtendAsync([b], Sampling);
        await engine.ScoreAsync([b]);
        Assert.Equal(P + StepTokens, Usage(engine, "policy").TokensComputed);
        Assert.Equal(7 + StepTokens, Usage(engine, "prm").TokensComputed);

        var tokens = rig.Tokenizer.Encode(Short).Concat(rig.Tokenizer.Encode(b.Text)).ToArray();
        using var seq = new Sequence(rig.PrmPool);
        seq.Append(tokens);
        var layout = new BatchLayout(rig.PrmPool.BlockSize);
        layout.Add(0, tokens.Length, seq.BlockTable);
        var output = new float[1];
        rig.Scheduler.RunExclusive(() => rig.PrmTransformer.Forward(layout, tokens, rig.PrmPool.Storage, [tokens.Length - 1], output));
        Assert.Equal(1 / (1 + Math.Exp(-output[0])), b.StepScores[0], 5);

        // The same policy prompt with another verifier prompt is another root: its PRM mirror holds the other prompt
        // (computed, or its leading full block "Q: 1" found in the PRM's prefix index).
        var other = engine.Start(Prompt, verifierPrompt: Prompt);
        await engine.ExtendAsync([other], Sampling);
        await engine.ScoreAsync([other]);
        var prm = Usage(engine, "prm");
        Assert.Equal(7 + StepTokens + P + StepTokens, prm.TokensComputed + prm.TokensReused);
        b.Dispose();
        other.Dispose();
    }

    /// <summary>
    /// The verifier's context bounds a branch too: with a 240-token verifier prompt the PRM (256 positions) can read
    /// 16 generated tokens, so the branch stops there (finished at the context limit) and every step is scored.
    /// </summary>
    [Fact]
    public async Task BranchesStopWhereTheVerifierContextEnds()
    {
        string longVerifierPrompt = new('7', 239);
        using var rig = new SchedulingRig();
        using var engine = rig.Engine();
        int verifierTokens = rig.Tokenizer.Encode(longVerifierPrompt, addSpecialTokens: true).Length;
        int room = SchedulingRig.PrmConfig.MaxPositions - verifierTokens;
        var b = engine.Start(Prompt, verifierPrompt: longVerifierPrompt);
        for (int i = 0; i < 10 && !b.Finished; i++) await engine.ExtendAsync([b], Sampling);
        Assert.True(b.Finished);
        Assert.Equal(room, b.Text.Length);
        Assert.Equal(new StepOutcome(1, 0, false), await engine.ScoreAsync([b]));
        Assert.Equal(b.Steps.Count, b.StepScores.Count);
        b.Dispose();
    }

    [Fact]
    public async Task SameSeedGivesTheSameStepsWhateverElseIsInTheBatch()
    {
        using var rig = new SchedulingRig();
        using var engine = rig.Engine();
        var together = await Extended(engine, 4, 2);
        Assert.True(together.Select(b => b.Text).Distinct().Count() > 1, "branches of one call must differ (seeds derive from the branch index): " + string.Join(" | ", together.Select(b => b.Text)));

        using var rig2 = new SchedulingRig();
        using var engine2 = rig2.Engine();
        var second = engine2.Start(Prompt);
        var first = engine2.Start(Prompt);
        // Branch index 1 alone in a batch of two (index 0 is a different branch): same text as index 1 of four.
        await engine2.ExtendAsync([first, second], Sampling);
        await engine2.ExtendAsync([first, second], Sampling);
        Assert.Equal(together[1].Text, second.Text);
        Assert.Equal(together[0].Text, first.Text);
    }

    [Fact]
    public async Task ABudgetTooSmallForTheFirstStepLeavesBranchesUntouchedAndSaysWhy()
    {
        using var rig = new SchedulingRig();
        using var engine = rig.Engine(new Budget(new BudgetLimits(Flops: 1000)));
        var branches = new[] { engine.Start(Prompt), engine.Start(Prompt) };
        var outcome = await engine.ExtendAsync(branches, Sampling);
        Assert.Equal(new StepOutcome(0, 2, true), outcome);
        Assert.All(branches, b => Assert.Equal(("", 0, false), (b.Text, b.Steps.Count, b.Finished)));
        Assert.Equal(0, engine.Budget.FlopsSpent);
        Assert.Equal(1000, engine.Budget.FlopsCap);
        Assert.Contains("FLOP cap 1000", engine.Request.BudgetExhaustedReason);
        Assert.Equal(0, rig.Backend.Flops.Total);
    }

    [Fact]
    public async Task BudgetStopsSomeBranchesMidSearchAndIsNeverExceeded()
    {
        using var rig = new SchedulingRig();
        var counter = rig.Policy.Counter;
        // Room for the prompt and exactly 5 worst-case steps at the first depth, less than 6.
        long cap = counter.Chunk(P, 0, 1).Total + 5 * counter.Decode(P, StepTokens).Total + 1000;
        using var engine = rig.Engine(new Budget(new BudgetLimits(Flops: cap)));
        var branches = StartMany(engine, 8);
        var outcome = await engine.ExtendAsync(branches, Sampling);
        Assert.Equal(new StepOutcome(5, 3, true), outcome);
        Assert.Equal(5, branches.Count(b => b.Steps.Count == 1));
        Assert.True(engine.Budget.FlopsSpent <= cap);
        Assert.Equal(rig.Backend.Flops.Total, engine.Budget.FlopsSpent);
        Assert.Equal(5, engine.Budget.GenerationsSpent);
    }

    [Fact]
    public async Task GenerationsAreTheWidthOfTheWidestLevelAndTheirCapHolds()
    {
        using var rig = new SchedulingRig();
        using var engine = rig.Engine(new Budget(new BudgetLimits(Generations: 6)));
        var beams = StartMany(engine, 4);
        await engine.ExtendAsync(beams, Sampling);                      // depth 0: width 4
        Assert.Equal(4, engine.Budget.GenerationsSpent);
        var next = new List<Branch> { beams[0], beams[0].Fork(), beams[1], beams[1].Fork() };
        await engine.ExtendAsync(next, Sampling);                       // depth 1: width 4 (beam search stays at N)
        Assert.Equal(4, engine.Budget.GenerationsSpent);
        var wide = next.Concat(next.Select(b => b.Fork())).ToList();
        var outcome = await engine.ExtendAsync(wide, Sampling);         // depth 2: 8 wanted, the cap allows 6
        Assert.Equal(new StepOutcome(6, 2, true), outcome);
        Assert.Equal(6, engine.Budget.GenerationsSpent);
        Assert.Contains("generation cap 6", engine.Request.BudgetExhaustedReason);
    }

    [Fact]
    public async Task CancellingMidSearchThrowsAndLeaksNoBlock()
    {
        using var rig = new SchedulingRig(options: new SchedulerOptions { MaxTokensPerForward = 2 });
        using var cts = new CancellationTokenSource();
        var engine = rig.Engine(ct: cts.Token);
        var branches = StartMany(engine, 4);
        await engine.ExtendAsync(branches, Sampling);
        await engine.ScoreAsync(branches);
        var forks = branches.Select(b => b.Fork()).ToList();
        long rounds = rig.Scheduler.Rounds;
        var run = engine.ExtendAsync([.. branches, .. forks], Sampling with { MaxStepTokens = 200 }).AsTask();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (rig.Scheduler.Rounds < rounds + 3)
        {
            if (watch.Elapsed.TotalSeconds > 10) Assert.Fail($"no round ran: {rig.Scheduler.Rounds} rounds (from {rounds}), search {run.Status}");
            Thread.Yield();
        }
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
        long spent = engine.Budget.FlopsSpent;
        Assert.Throws<OperationCanceledException>(() => engine.Start(Prompt));
        Assert.Equal(spent, engine.Budget.FlopsSpent);
        // The engine disposed every branch and prompt root; the strategy's own disposal is harmless.
        foreach (var b in branches.Concat(forks)) b.Dispose();
        rig.AssertNoLeaks();
    }

    [Fact]
    public async Task FinalAnswerStepFinishesTheBranch()
    {
        using var rig = new SchedulingRig();
        using var engine = rig.Engine(options: new SearchEngineOptions { IsFinalStep = _ => true });
        var b = engine.Start(Prompt);
        await engine.ExtendAsync([b], Sampling);
        Assert.True(b.Finished);
        // The final step's last token is not computed (no next step needs its logits).
        Assert.Equal(P + StepTokens - 1, Usage(engine, "policy").TokensComputed);
        Assert.Equal(new StepOutcome(0, 0, false), await engine.ExtendAsync([b], Sampling));
        Assert.Equal(new StepOutcome(1, 0, false), await engine.ScoreAsync([b]));
        Assert.Single(b.StepScores);
    }

    [Fact]
    public async Task APromptIsReleasedWithItsLastBranchAndItsCachedBlocksServeTheNextStart()
    {
        using var rig = new SchedulingRig();
        using var engine = rig.Engine();
        var first = await Extended(engine, 2, 1);
        foreach (var b in first) b.Dispose();
        Assert.Equal(0, rig.PolicyPool.SequenceCount);          // the prompt root went with its last branch
        var again = await Extended(engine, 1, 1);
        // The prompt's two full blocks (8 of 11 tokens) come from the prefix index; the rest and the step are computed.
        Assert.Equal(P + 2 * StepTokens + (P - 8) + StepTokens, Usage(engine, "policy").TokensComputed);
        Assert.Equal(8 + P, Usage(engine, "policy").TokensReused);   // the second start of the first pair, then the index hit
        again[0].Dispose();
    }

    [Fact]
    public async Task RecomputationAfterEvictionIsCharged()
    {
        using var rig = new SchedulingRig();
        using var engine = rig.Engine();
        foreach (var b in await Extended(engine, 1, 1)) b.Dispose();
        foreach (var index in rig.PolicyPool.Indexes) index.Evict(rig.PolicyPool.BlockCount);
        foreach (var b in await Extended(engine, 1, 1)) b.Dispose();
        Assert.Equal(2 * (P + StepTokens), Usage(engine, "policy").TokensComputed);
        Assert.Equal(2 * rig.Policy.Counter.Chunk(P, 0, 1).Total + 2 * rig.Policy.Counter.Decode(P, StepTokens).Total, Usage(engine, "policy").Flops.Total);
    }
}
