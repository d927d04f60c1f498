using Ponder.Hosting;
using Ponder.Models;
using Ponder.Sampling;
using Ponder.Scheduling;
using Ponder.Search;
using Ponder.Search.Engine;
using Ponder.Tests.Hosting;
using Ponder.Tests.Scheduling;

namespace Ponder.Tests.Search;

/// <summary>
/// The scenarios every separately run, mirrored PRM goes through (token-logit, process reward): one branch on fresh
/// pools with its FLOPs by the naive formula, forked branches whose mirrors continue from their parents', and best-of-N
/// and beam searches through the completion engine. Each format supplies its naive float64 scores of a branch.
/// </summary>
static class MirroredPrmRig
{
    public const string Prompt = "Q: 12+34*5=\n";
    public static readonly StepSampling Sampling = new(Temperature: 1f, Seed: 7, MaxStepTokens: 4);

    /// <summary>A branch's scores as a naive forward of the whole mirrored text gives them, each with its tolerance.</summary>
    public delegate (double Score, double Tolerance)[] Reference(EngineBranch branch);

    /// <summary>
    /// The mirrored text of <paramref name="branch"/> (verifier prompt, then each step followed by
    /// <paramref name="suffix"/>) and, per step, the position where its score is read: the suffix's last token.
    /// </summary>
    public static (int[] Tokens, int[] ReadAt) MirrorText(EngineBranch branch, IReadOnlyList<int> suffix)
    {
        var tokens = new List<int>(branch.Root.VerifierTokens);
        var readAt = new List<int>();
        int start = 0;
        foreach (int end in branch.StepEnds)
        {
            tokens.AddRange(branch.Generated.GetRange(start, end - start));
            tokens.AddRange(suffix);
            readAt.Add(tokens.Count - 1);
            start = end;
        }
        return ([.. tokens], [.. readAt]);
    }

    /// <summary>
    /// The tolerance of a two-way softmax score whose two f32 inputs agree with float64 within the forward tests'
    /// bound, 2e-4 + 1e-3·|x| each: d score / d(a − b) = s(1 − s) &lt;= 1/4, so the score is within 1/4 of the two
    /// inputs' errors summed.
    /// </summary>
    public static double SoftmaxTolerance(double a, double b) => 0.25 * (2 * 2e-4 + 1e-3 * (Math.Abs(a) + Math.Abs(b)));

    static void AssertScores(EngineBranch b, Reference reference)
    {
        var expected = reference(b);
        Assert.Equal(expected.Length, b.StepScores.Count);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(b.StepScores[i] - expected[i].Score) <= expected[i].Tolerance, $"step {i}: engine {b.StepScores[i]}, naive {expected[i].Score}");
    }

    static FlopCounts PrmFlops(ScheduledSearchEngine engine) => engine.Request.Report().Models.Single(m => m.Model == "prm").Flops;

    /// <summary>
    /// One branch on fresh pools, two steps scored: the PRM's FLOPs are the prompt once, then each step with its suffix,
    /// one output row each, by the independent token-by-token formula, and equal the backend's ledger; the scores equal
    /// the reference. Then branches that fork between scorings: a fork's mirror continues from its parent's, suffixes
    /// included, so scoring the fork computes only its own steps. Returns the single branch's PRM FLOPs.
    /// </summary>
    public static async Task<FlopCounts> ScoresMatchTheReferenceAndFlopsAreExact(PonderModel policy, PonderModel prm, StepVerifier verifier,
        IReadOnlyList<int> suffix, Reference reference)
    {
        var config = prm.Config;
        int k = suffix.Count;
        var options = new SearchEngineOptions { IsFinalStep = _ => false };
        var before = prm.Backend.Flops.Snapshot();
        FlopCounts single;
        using (var engine = new ScheduledSearchEngine(policy.Scheduler, policy.Scheduled, policy.Tokenizer!, verifier, options: options))
        {
            var b = (EngineBranch)engine.Start(Prompt);
            for (int i = 0; i < 2; i++) await engine.ExtendAsync([b], Sampling);
            Assert.Equal(new StepOutcome(1, 0, false), await engine.ScoreAsync([b]));
            single = PrmFlops(engine);
            int p = b.Root.VerifierTokens.Length, s0 = b.StepEnds[0], s1 = b.StepEnds[1] - s0;
            // The prompt's prefill, like every submitted work, computes its last token's head row.
            long expected = NaiveFlops.Chunk(config, p, 0, 1) + NaiveFlops.Chunk(config, s0 + k, p, 1) + NaiveFlops.Chunk(config, s1 + k, p + s0 + k, 1);
            Assert.Equal(expected, single.Total);
            Assert.Equal(prm.Backend.Flops.Since(before).Total, single.Total);
            Assert.Equal(2, b.StepScores.Count);
            AssertScores(b, reference);
            b.Dispose();
        }

        using (var engine = new ScheduledSearchEngine(policy.Scheduler, policy.Scheduled, policy.Tokenizer!, verifier, options: options))
        {
            var branches = Enumerable.Range(0, 2).Select(_ => (EngineBranch)engine.Start(Prompt)).ToList();
            await engine.ExtendAsync(branches, Sampling);
            await engine.ScoreAsync(branches);
            var fork = (EngineBranch)branches[0].Fork();
            await engine.ExtendAsync([.. branches, fork], Sampling);
            await engine.ExtendAsync([fork], Sampling);
            var beforeFork = PrmFlops(engine);
            await engine.ScoreAsync([fork]);
            int at = fork.Root.VerifierTokens.Length + fork.StepEnds[0] + k, n1 = fork.StepEnds[1] - fork.StepEnds[0] + k, n2 = fork.StepEnds[2] - fork.StepEnds[1] + k;
            Assert.Equal(NaiveFlops.Chunk(config, n1, at, 1) + NaiveFlops.Chunk(config, n2, at + n1, 1), (PrmFlops(engine) - beforeFork).Total);
            await engine.ScoreAsync(branches);
            Assert.Equal(3, fork.StepScores.Count);
            Assert.Equal(branches[0].StepScores[0], fork.StepScores[0]);
            var all = new List<double>();
            foreach (var b in new[] { branches[0], branches[1], fork })
            {
                AssertScores(b, reference);
                all.AddRange(b.StepScores);
            }
            // Scores that all sat at one value would not tell a wrong read position from the right one.
            Assert.True(all.Max() - all.Min() > 0.01, $"scores barely differ: {string.Join(", ", all)}");
            fork.Dispose();
            foreach (var b in branches) b.Dispose();
        }
        HostingTestModels.AssertNoLeaks(policy);
        HostingTestModels.AssertNoLeaks(prm);
        return single;
    }

    /// <summary>
    /// Runs <paramref name="strategy"/> (best-of-n, beam) with N = 4 through a completion engine that owns
    /// <paramref name="prm"/>. Every forward's ledger already equalled the scheduler's prediction (the scheduler checks
    /// it); here the PRM's account must equal its ledger. Returns the PRM's FLOPs.
    /// </summary>
    public static async Task<FlopCounts> SearchThroughTheCompletionEngine(PonderModel policy, PonderModel prm, string strategy)
    {
        FlopCounts flops;
        using (var engine = new CompletionEngine(policy, prm, ownsPrm: true))
        {
            var (kind, selection) = StrategySpec.ParseName(strategy);
            var compute = new TestTimeComputeOptions { Strategy = new StrategySpec(kind, 4, Selection: selection), MaxStepTokens = 6, MaxRounds = 3 };
            var prmBefore = prm.Backend.Flops.Snapshot();
            var (_, report) = await engine.CompleteAsync(Prompt, new SamplingOptions { Seed = 7 }, compute);
            flops = Assert.Single(report.Flops.Models, m => m.Model == "prm").Flops;
            Assert.Equal(prm.Backend.Flops.Since(prmBefore).Total, flops.Total);
            HostingTestModels.AssertNoLeaks(policy);
            HostingTestModels.AssertNoLeaks(prm);
        }
        return flops;
    }
}
