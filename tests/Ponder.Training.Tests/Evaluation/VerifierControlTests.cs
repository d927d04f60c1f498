using Ponder.Evaluation;
using Ponder.Tasks;
using Ponder.Search;
using Ponder.Training;
using Ponder.Tokenization;

namespace Ponder.Training.Tests.Evaluation;

/// <summary>
/// The control verifiers (the task's exact step checker and its degraded copies), the coverage reference curves and the
/// bootstrap efficiency interval, each against an independent computation.
/// </summary>
public sealed class VerifierControlTests
{
    [Fact]
    public void The_checker_accepts_the_reference_solution_and_rejects_from_the_first_wrong_step_on()
    {
        const string q = "17+4*9-6";
        var reference = ArithmeticChainTask.Solve(q).Solution.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["4*9=36", "17+36=53", "53-6=47", "A: 47"], reference);
        Assert.Equal([true, true, true, true], ArithmeticChainTask.CheckSteps(q, [.. reference.Select(s => " " + s + "\n")]));
        // A wrong result, then correct-looking steps: everything from the first error on is wrong.
        Assert.Equal([true, false, false, false], ArithmeticChainTask.CheckSteps(q, ["4*9=36", "17+36=52", "52-6=46", "A: 46"]));
        // Another valid reduction order is not the reference order: wrong (stated rule).
        Assert.Equal([false], ArithmeticChainTask.CheckSteps(q, ["17+4=21"]));
        // A right final answer reached through a wrong step is still wrong at that step and after.
        Assert.Equal([true, false, false, false], ArithmeticChainTask.CheckSteps(q, ["4*9=36", "17+36=54", "54-6=47", "A: 47"]));
        // Steps past the reference's end are wrong.
        Assert.Equal([true, true, true, true, false], ArithmeticChainTask.CheckSteps(q, [.. reference, "A: 47"]));
    }

    [Fact]
    public void A_corrupted_solution_slips_once_and_carries_on_consistently()
    {
        const string q = "17+4*9-6";
        // Step 1 (17+36) off by +2: 55, then 55-6=49, answer 49.
        Assert.Equal("4*9=36\n17+36=55\n55-6=49\nA: 49\n", ArithmeticChainTask.CorruptedSolution(q, 1, 2));
        // The last index corrupts only the answer line.
        Assert.Equal("4*9=36\n17+36=53\n53-6=47\nA: 37\n", ArithmeticChainTask.CorruptedSolution(q, 3, -10));
        var steps = PrmLabels.Steps(ArithmeticChainTask.CorruptedSolution(q, 1, 2));
        Assert.Equal([true, false, false, false], ArithmeticChainTask.CheckSteps(q, steps));
        Assert.Throws<ArgumentOutOfRangeException>(() => ArithmeticChainTask.CorruptedSolution(q, 0, 0));
    }

    [Fact]
    public void Hard_negatives_are_the_reference_and_checker_labelled_corruptions_of_it()
    {
        var c = new FineTuneConfig { Labels = FineTuneConfig.CheckerLabels, CorruptedPerQuestion = 3, Seed = 5 };
        string[] questions = ["2+3*4", "9-1-1-1", "(5+6)*7"];
        var list = PrmTrainer.HardNegatives(c, questions);
        Assert.Equal(questions.Length * 4, list.Count);
        foreach (var group in list.GroupBy(x => x.Question))
        {
            var reference = ArithmeticChainTask.Solve(group.Key).Solution;
            Assert.Single(group, x => x.Correct && x.Solution == reference && x.StepLabels.All(l => l == 1));
            foreach (var neg in group.Where(x => !x.Correct))
            {
                Assert.NotEqual(reference, neg.Solution);
                var ok = ArithmeticChainTask.CheckSteps(group.Key, PrmLabels.Steps(neg.Solution));
                Assert.Equal(ok.Select(b => b ? 1f : 0f), neg.StepLabels);
                Assert.Equal(0f, neg.StepLabels[^1]); // the answer is always wrong
            }
        }
        Assert.Equal(list.Select(x => x.Solution), PrmTrainer.HardNegatives(c, questions).Select(x => x.Solution)); // deterministic
    }

    /// <summary>
    /// The policy-confidence baseline scores a padded batch of solutions of different lengths exactly as each solution
    /// alone: the smallest float64 softmax probability of a written token, computed here from a forward of one example.
    /// </summary>
    [Fact]
    public void Policy_confidence_is_the_smallest_probability_of_a_written_token_whatever_the_batch()
    {
        var config = new Ponder.Models.ModelConfig
        {
            Vocab = ByteTokenizer.PonderVocabSize, DModel = 16, NLayers = 1, NHeads = 2, NKvHeads = 1, HeadDim = 8, DFf = 24, MaxPositions = 64, TiedEmbeddings = true,
        }.Validate("confidence");
        var policy = TinyModels.Model(config, seed: 3);
        var task = new ArithmeticChainTask();
        (string, string)[] items = [("5+2", "5+2=7\nA: 7\n"), ("17+4*9-6", "4*9=36\n17+36=53\n53-6=47\nA: 47\n"), ("3-4", "A: -1\n")];
        var batched = PrmComparison.PolicyConfidenceScores(policy, task, items);
        for (int i = 0; i < items.Length; i++)
        {
            var e = SftExample.FromText(task.Prompt(items[i].Item1), items[i].Item2);
            policy.Forward(PrmTrainer.ScoringBatch([e]));
            double min = 1;
            for (int t = e.PromptLength - 1; t < e.Tokens.Length - 2; t++)
            {
                var row = policy.Logits.Slice(t * config.HeadRows, config.Vocab).ToArray();
                double z = row.Sum(v => Math.Exp((double)v));
                min = Math.Min(min, Math.Exp(row[e.Tokens[t + 1]]) / z);
            }
            // The batched score is stored as float32 (relative rounding 6e-8) and padding must not change a row: 1e-5 relative.
            Assert.Equal(min, batched[i], min * 1e-5);
        }
    }

    [Theory]
    [InlineData("""{"labels": "human"}""", "labels = 'human'")]
    [InlineData("""{"earlyStoppingMetric": "accuracy"}""", "earlyStoppingMetric = 'accuracy'")]
    [InlineData("""{"corruptedPerQuestion": 4}""", "corruptedPerQuestion = 4 needs labels 'checker'")]
    [InlineData("""{"labels": "checker", "corruptedPerQuestion": -1}""", "corruptedPerQuestion = -1")]
    public void Prm_config_errors_name_the_file_and_the_field(string json, string expected)
    {
        string path = Path.Combine(Path.GetTempPath(), $"ponder-prm-config-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        try
        {
            var e = Assert.Throws<InvalidDataException>(() => FineTuneConfig.Load(path));
            Assert.Contains(path, e.Message);
            Assert.Contains(expected, e.Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Mean_auc_within_groups_averages_only_groups_with_both_labels()
    {
        // Group a: 2 of 2 pairs ordered right (AUC 1); group b: 1 of 4 (0.25), a tie counting half in group c (0.5);
        // group d has only right answers and does not count.
        (string, float, bool)[] items =
        [
            ("a", 0.9f, true), ("a", 0.1f, false), ("a", 0.2f, false),
            ("b", 0.3f, true), ("b", 0.1f, true), ("b", 0.2f, false), ("b", 0.5f, false),
            ("c", 0.4f, true), ("c", 0.4f, false),
            ("d", 0.7f, true), ("d", 0.6f, true),
        ];
        var (mean, groups) = Metrics.MeanAucWithin(items);
        Assert.Equal(3, groups);
        Assert.Equal((1 + 0.25 + 0.5) / 3, mean, 12);
        Assert.True(double.IsNaN(Metrics.MeanAucWithin(new (string, float, bool)[] { ("d", 0.5f, true) }).Mean));
    }

    [Theory]
    [InlineData("""{"policy": "p", "verifiers": {}}""", "'verifiers' is empty")]
    [InlineData("""{"policy": "p", "verifiers": {"a": "exact"}, "samples": 8, "selectionN": 16}""", "'selectionN'")]
    [InlineData("""{"policy": "p", "verifiers": {"a": "exact"}, "sampels": 8}""", "'sampels'")]
    [InlineData("""{"verifiers": {"a": "exact"}}""", "'policy'")]
    public void Prm_comparison_config_errors_name_the_file_and_the_field(string json, string expected)
    {
        string path = Path.Combine(Path.GetTempPath(), $"ponder-prm-compare-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        try
        {
            var e = Assert.Throws<InvalidDataException>(() => PrmComparisonConfig.Load(path));
            Assert.Contains(path, e.Message);
            Assert.Contains(expected, e.Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void The_exact_checker_reads_the_question_from_the_last_question_line_of_its_prompt()
    {
        var exact = new ArithmeticStepChecker();
        Assert.Equal(1, exact.Score("Q: 5+2\n", ["5+2=7", "A: 7"]));
        Assert.Equal(0, exact.Score("Q: 5+2\n", ["5+2=5"]));
        Assert.Equal(0, exact.Score("Q: 5+2\n", ["5+2=7", "A: 5"]));
        // A revision's prompt holds earlier attempts before the question line: the last Q: line is the question.
        Assert.Equal(1, exact.Score("Q: 3-4\n3-4=1\nA: 1\nQ: 3-4\n", ["3-4=-1"]));
        var e = Assert.Throws<ArgumentException>(() => exact.Score("What is 5+2?", ["5+2=7"]));
        Assert.Contains("What is 5+2?", e.Message);
    }

    [Fact]
    public void Verifier_names_parse_to_checkers_and_bad_targets_are_refused_by_name()
    {
        Assert.Equal("exact", ArithmeticStepChecker.Parse("exact")!.Name);
        Assert.Equal("random", ArithmeticStepChecker.Parse("random")!.Name);
        Assert.Equal("noisy(auc=0.8)", ArithmeticStepChecker.Parse("noisy:0.8")!.Name);
        Assert.Null(ArithmeticStepChecker.Parse("weights/prm-small"));
        Assert.Null(ArithmeticStepChecker.Parse(null));
        Assert.Contains("'1.5' is not a target AUC", Assert.Throws<ArgumentException>(() => ArithmeticStepChecker.Parse("noisy:1.5")).Message);
        Assert.Contains("'x' is not a target AUC", Assert.Throws<ArgumentException>(() => ArithmeticStepChecker.Parse("noisy:x")).Message);
    }

    [Theory]
    [InlineData(0.6)]
    [InlineData(0.75)]
    [InlineData(0.9)]
    public void A_noisy_checker_ranks_correct_above_incorrect_prefixes_at_its_target_auc(double target)
    {
        var noisy = new NoisyStepChecker(new ArithmeticStepChecker(), target);
        // 2,000 correct and 2,000 incorrect one-step prefixes, all distinct texts (a prefix's noise is a hash of its text).
        var scores = new List<float>();
        var labels = new List<bool>();
        for (int a = 1; a <= 40; a++)
            for (int b = 1; b <= 50; b++)
            {
                string prompt = $"Q: {a}+{b}\n";
                scores.Add((float)noisy.Score(prompt, [$"{a}+{b}={a + b}"])); labels.Add(true);
                scores.Add((float)noisy.Score(prompt, [$"{a}+{b}={a + b + 1}"])); labels.Add(false);
            }
        // Standard error of an AUC near 0.6-0.9 with 2,000 of each class is at most sqrt(A(1-A)/n) ~ 0.011 (Hanley-McNeil,
        // bounded): 3.5 SE = 0.04.
        Assert.InRange(Metrics.Auc(scores, labels), target - 0.04, target + 0.04);
        // A pure function of the text: the same prefix scores the same every time.
        Assert.Equal(noisy.Score("Q: 3+4\n", ["3+4=8"]), noisy.Score("Q: 3+4\n", ["3+4=8"]));
        Assert.All(scores, s => Assert.InRange(s, 0f, 1f));
    }

    [Fact]
    public void A_noisy_checker_at_auc_one_is_the_exact_checker_and_at_one_half_ignores_the_truth()
    {
        var exact = new ArithmeticStepChecker();
        var one = new NoisyStepChecker(exact, 1);
        Assert.Equal("exact", one.Name);
        Assert.Equal(1, one.Score("Q: 2*3\n", ["2*3=6"]));
        Assert.Equal(0, one.Score("Q: 2*3\n", ["2*3=5"]));
        var random = new NoisyStepChecker(exact, 0.5);
        var scores = new List<float>();
        var labels = new List<bool>();
        for (int a = 1; a <= 60; a++)
            for (int b = 1; b <= 30; b++)
            {
                scores.Add((float)random.Score($"Q: {a}*{b}\n", [$"{a}*{b}={a * b}"])); labels.Add(true);
                scores.Add((float)random.Score($"Q: {a}*{b}\n", [$"{a}*{b}={a * b + 2}"])); labels.Add(false);
            }
        // 1,800 of each class, SE of an AUC of 0.5 = sqrt((n1+n2+1)/(12 n1 n2)) = 0.0096: 4 SE = 0.04.
        Assert.InRange(Metrics.Auc(scores, labels), 0.46, 0.54);
    }

    [Fact]
    public void Pass_at_n_is_the_exact_fraction_of_subsets_with_a_correct_sample()
    {
        for (int k = 1; k <= 7; k++)
            for (int c = 0; c <= k; c++)
                for (int n = 1; n <= k; n++)
                {
                    int subsets = 0, hit = 0;
                    for (int mask = 0; mask < 1 << k; mask++)
                    {
                        if (System.Numerics.BitOperations.PopCount((uint)mask) != n) continue;
                        subsets++;
                        if ((mask & ((1 << c) - 1)) != 0) hit++; // samples 0..c-1 are the correct ones
                    }
                    Assert.Equal((double)hit / subsets, Coverage.PassAtN(k, c, n), 12);
                }
        Assert.Throws<ArgumentOutOfRangeException>(() => Coverage.PassAtN(4, 1, 5));
    }

    [Fact]
    public void Majority_at_n_matches_an_exhaustive_enumeration_of_subsets()
    {
        (string?, bool)[] answers = [("7", true), ("5", false), ("7", true), ("5", false), ("5", false), (null, false), ("9", false)];
        int k = answers.Length;
        foreach (int n in new[] { 1, 3, 4, 7 })
        {
            double exact = 0;
            int subsets = 0;
            for (int mask = 0; mask < 1 << k; mask++)
            {
                if (System.Numerics.BitOperations.PopCount((uint)mask) != n) continue;
                subsets++;
                var counts = Enumerable.Range(0, k).Where(i => (mask >> i & 1) != 0 && answers[i].Item1 is not null)
                    .GroupBy(i => answers[i].Item1).Select(g => (Answer: g.Key, Count: g.Count())).ToList();
                if (counts.Count == 0) continue;
                int top = counts.Max(x => x.Count);
                var tied = counts.Where(x => x.Count == top).ToList();
                exact += (double)tied.Count(x => x.Answer == "7") / tied.Count;
            }
            exact /= subsets;
            // 20,000 draws: the estimate's standard deviation is at most 0.5/sqrt(20000) = 0.0035; 4.5 SD = 0.016.
            Assert.Equal(exact, Coverage.MajorityAtN(answers, n, seed: 11, draws: 20_000), 0.016);
        }
    }

    /// <summary>64 questions in one bin; best-of-N solves questions 0..8·log2(b)+3 at budget b (strictly more with b).</summary>
    static List<SweepRecord> Curve(string strategy, Func<int, int> solvedAt, int[] budgets) =>
        [.. budgets.SelectMany(b => Enumerable.Range(0, 64).Select(i =>
            new SweepRecord(strategy, "", b, $"q{i:D2}", 1, i < solvedAt(b), null, 100L * b, b)))];

    static readonly int[] Budgets = [1, 2, 4, 8, 16, 32, 64];
    static int BestOfN(int b) => 8 * (int)Math.Log2(b) + 4;

    [Fact]
    public void Efficiency_is_exactly_one_when_compute_optimal_can_only_choose_best_of_n()
    {
        var records = Curve("best-of-n", BestOfN, Budgets);
        var bins = records.Select(r => r.QuestionId).Distinct().ToDictionary(q => q, _ => 1);
        var e = EfficiencyInterval.Compute(records, bins, "best-of-n", _ => true, replicates: 200)!;
        Assert.Equal(1, e.Estimate, 9);
        // Every resample keeps the solved sets nested, so every replicate is 1 as well.
        Assert.Equal(1, e.Low, 9);
        Assert.Equal(1, e.High, 9);
        Assert.True(e.IncludesOne);
        Assert.False(e.Censored);
    }

    [Fact]
    public void Efficiency_of_a_strategy_worth_four_times_the_compute_is_four_up_to_where_the_sweep_ends()
    {
        // "beam" at budget b solves what best-of-N solves at min(4b, 64): ratios 4, 4, 4, 4, 4, then 64/32 = 2 and 64/64 = 1.
        var records = Curve("best-of-n", BestOfN, Budgets).Concat(Curve("beam", b => BestOfN(Math.Min(4 * b, 64)), Budgets)).ToList();
        var bins = records.Select(r => r.QuestionId).Distinct().ToDictionary(q => q, _ => 1);
        var e = EfficiencyInterval.Compute(records, bins, "best-of-n", _ => true, replicates: 200)!;
        Assert.Equal([4, 4, 4, 4, 4, 2, 1], e.PerBudget.Select(p => Math.Round(p.Ratio, 9)));
        Assert.Equal(Math.Pow(2, 11.0 / 7), e.Estimate, 9);
        Assert.False(e.IncludesOne);
        Assert.True(e.Low > 1);
    }
}
