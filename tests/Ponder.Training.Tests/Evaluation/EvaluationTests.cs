using Ponder.Evaluation;
using Ponder.Search;
using Ponder.Tasks;

namespace Ponder.Training.Tests.Evaluation;

public sealed class EvaluationTests
{
    static SweepRecord R(string config, int budget, string q, bool correct, ulong seed = 0)
    {
        int open = config.IndexOf('(');
        return open < 0
            ? new SweepRecord(config, "", budget, q, seed, correct, correct ? "1" : "0", 100 * budget, budget)
            : new SweepRecord(config[..open], config[(open + 1)..^1], budget, q, seed, correct, correct ? "1" : "0", 100 * budget, budget);
    }

    [Fact]
    public void Wilson_interval_matches_the_textbook_values()
    {
        // 8/10 at 95%: (0.4902, 0.9433) (Wilson 1927; e.g. Newcombe 1998 table I, method 3).
        var a = AccuracyEstimate.Wilson(8, 10);
        Assert.Equal(0.8, a.Value);
        Assert.Equal(0.4902, a.Low, 4);
        Assert.Equal(0.9433, a.High, 4);
        // 0/5: the lower end is 0 and the upper end 0.4345 (z²/(n+z²)).
        var zero = AccuracyEstimate.Wilson(0, 5);
        Assert.Equal(0, zero.Low, 12);
        Assert.Equal(3.8416 / (5 + 3.8416), zero.High, 4);
        Assert.Equal((0, 1.0), (AccuracyEstimate.Wilson(0, 0).Low, AccuracyEstimate.Wilson(0, 0).High));
        Assert.Throws<ArgumentException>(() => AccuracyEstimate.Wilson(3, 2));
    }

    [Fact]
    public void Difficulty_bins_are_equal_quantiles_easiest_first_with_ties_broken_by_id()
    {
        // pass@1 of q0..q9 from 4 samples each: q_i is correct in (9 - i) / 2 rounded samples, so ties exist.
        var samples = new List<DifficultySample>();
        double[] pass = [1, 1, 0.75, 0.75, 0.5, 0.5, 0.5, 0.25, 0, 0];
        for (int i = 0; i < pass.Length; i++)
            for (int s = 0; s < 4; s++) samples.Add(new($"q{i}", s < pass[i] * 4, 0.1 * i));
        var oracle = DifficultyBins.OracleScores(samples);
        Assert.Equal(0.75, oracle["q3"]);
        var bins = DifficultyBins.Assign(oracle);
        Assert.Equal([1, 1, 2, 2, 3, 3, 4, 4, 5, 5], Enumerable.Range(0, 10).Select(i => bins[$"q{i}"]));
        // Ties: q4, q5, q6 share 0.5; by id q4, q5 go to bin 3 and q6 to bin 4, whatever the input order.
        var reversed = DifficultyBins.Assign(oracle.Reverse().ToDictionary(kv => kv.Key, kv => kv.Value));
        Assert.Equal(bins.OrderBy(kv => kv.Key), reversed.OrderBy(kv => kv.Key));
        // Predicted difficulty: mean verifier score (here 0.1 i, so q9 is "easiest").
        var predicted = DifficultyBins.Assign(DifficultyBins.PredictedScores(samples));
        Assert.Equal(1, predicted["q9"]);
        Assert.Equal(5, predicted["q0"]);
        // 7 questions: sizes 2, 2, 1, 1, 1.
        var seven = DifficultyBins.Assign(Enumerable.Range(0, 7).ToDictionary(i => $"p{i}", i => 1.0 - i / 10.0));
        Assert.Equal([2, 2, 1, 1, 1], Enumerable.Range(1, 5).Select(b => seven.Values.Count(v => v == b)));
        Assert.Throws<ArgumentException>(() => DifficultyBins.Assign(new Dictionary<string, double> { ["x"] = double.NaN }));
    }

    /// <summary>
    /// One bin, questions q1..q4 (folds 0, 1, 0, 1). Config X is right exactly on fold 0's questions; Y on q1, q2.
    /// Honest CV: fold 0 is evaluated with the choice made on fold 1 (Y: 1/2 vs X: 0/2) and scores 1/2; fold 1 with the
    /// choice made on fold 0 (X: 2/2) and scores 0/2: 1/4. Selecting on the evaluated fold itself would give 3/4.
    /// </summary>
    [Fact]
    public void Compute_optimal_cross_validation_never_selects_on_the_evaluated_questions()
    {
        var records = new List<SweepRecord>
        {
            R("beam(M=2)", 4, "q1", true), R("beam(M=2)", 4, "q2", false), R("beam(M=2)", 4, "q3", true), R("beam(M=2)", 4, "q4", false),
            R("best-of-n", 4, "q1", true), R("best-of-n", 4, "q2", true), R("best-of-n", 4, "q3", false), R("best-of-n", 4, "q4", false),
        };
        var bins = new Dictionary<string, int> { ["q1"] = 1, ["q2"] = 1, ["q3"] = 1, ["q4"] = 1 };
        Assert.Equal([0, 1, 0, 1], new[] { "q1", "q2", "q3", "q4" }.Select(q => ComputeOptimalFit.Folds(bins.Keys)[q]));

        var cell = Assert.Single(ComputeOptimalFit.Fit(records, bins));
        Assert.Equal(["best-of-n", "beam(M=2)"], cell.FoldChoices);
        Assert.Equal((1, 4), (cell.CrossValidated.Correct, cell.CrossValidated.Trials));
        // On all questions both are 2/4; the tie goes to the ordinal-first name.
        Assert.Equal(new ComputeOptimalEntry(1, 4, "beam", "M=2", 0.5), cell.Final);
        Assert.Equal(new StrategySpec(StrategyKind.BeamSearch, 8, 2), ComputeOptimalFit.Table([cell]).Lookup(1, 8));
    }

    [Fact]
    public void Compute_optimal_fits_each_bin_and_budget_separately()
    {
        // Bin 1: beam is perfect at budget 4, best-of-N at 16. Bin 2: revisions always.
        var records = new List<SweepRecord>();
        for (int q = 0; q < 4; q++)
        {
            records.Add(R("beam(M=2)", 4, $"e{q}", true)); records.Add(R("best-of-n", 4, $"e{q}", false));
            records.Add(R("beam(M=2)", 16, $"e{q}", false)); records.Add(R("best-of-n", 16, $"e{q}", true));
            records.Add(R("revisions(P=2)", 4, $"h{q}", q < 3)); records.Add(R("best-of-n", 4, $"h{q}", false));
        }
        var bins = Enumerable.Range(0, 4).SelectMany(q => new[] { ($"e{q}", 1), ($"h{q}", 2) }).ToDictionary(t => t.Item1, t => t.Item2);
        var cells = ComputeOptimalFit.Fit(records, bins);
        Assert.Equal(["1@4:beam(M=2)", "1@16:best-of-n", "2@4:revisions(P=2)"], cells.Select(c => $"{c.Bin}@{c.Budget}:{c.FoldChoices[0]}"));
        Assert.Equal(1.0, cells[0].CrossValidated.Value);
        Assert.Equal(0.75, cells[2].CrossValidated.Value);
        // Overall curve pools the bins: budget 4 = (4 + 3) / 8.
        Assert.Equal([new CurvePoint(4, 7 / 8.0), new CurvePoint(16, 1)], ComputeOptimalFit.OverallCurve(cells));
    }

    [Fact]
    public void Compute_ratio_interpolates_best_of_n_in_log_budget()
    {
        CurvePoint[] bestOfN = [new(1, 0.2), new(4, 0.4), new(16, 0.6)];
        // 0.5 lies halfway between log2 4 = 2 and log2 16 = 4: budget 2^3 = 8.
        Assert.Equal(8, Curves.BudgetFor(bestOfN, 0.5)!.Value, 9);
        Assert.Equal(4, Curves.ComputeRatio(bestOfN, 2, 0.5)!.Value, 9);
        Assert.Null(Curves.ComputeRatio(bestOfN, 2, 0.7));
        Assert.Equal(1, Curves.BudgetFor(bestOfN, 0.1));
        Assert.Equal(0.3, Curves.AccuracyAt(bestOfN, 2, out bool inside), 9);
        Assert.False(inside);
        Assert.Equal(0.6, Curves.AccuracyAt(bestOfN, 257.75, out bool outside));
        Assert.True(outside);
        Assert.Throws<ArgumentException>(() => Curves.BudgetFor([new(4, 0.1), new(4, 0.2)], 0.1));
    }

    [Fact]
    public void Flops_matched_multiplier_matches_the_paper_and_the_exact_count_agrees_with_it()
    {
        Assert.Equal(257.75, FlopsMatched.Multiplier(14, 0.16), 9); // 14 + 3*13/0.16
        Assert.Equal(14 + 39 / 0.79, FlopsMatched.Multiplier(14, 0.79), 9);
        Assert.Equal(14 + 39 / 22.0, FlopsMatched.Multiplier(14, 22), 9);
        Assert.Equal(1, FlopsMatched.Multiplier(1, 0.5));
        Assert.Throws<ArgumentException>(() => FlopsMatched.Multiplier(14, 0));

        // Exact counts built from the 2N / 6N model reproduce the approximation.
        double n = 1e6, d = 1e9, tokens = 100;
        foreach (double r in FlopsMatched.PaperRatios)
        {
            double exact = FlopsMatched.ExactMultiplier(2 * n * tokens, 2 * 14 * n * tokens, 6 * n * d, 6 * 14 * n * d, r, d, tokens);
            Assert.Equal(FlopsMatched.Multiplier(14, r), exact, 6);
        }

        var small = new Dictionary<int, IReadOnlyList<CurvePoint>>
        {
            [1] = [new(1, 0.8), new(16, 0.95), new(256, 0.97)],
            [5] = [new(1, 0.01), new(16, 0.03), new(256, 0.05)],
        };
        var large = new Dictionary<int, double> { [1] = 0.9, [5] = 0.2 };
        var rows = FlopsMatched.Compare(small, large, [0.16, 22], r => FlopsMatched.Multiplier(14, r));
        Assert.Equal(4, rows.Count);
        var easyLowR = rows.Single(x => x.Bin == 1 && x.R == 0.16);
        Assert.True(easyLowR.Advantage > 0);
        Assert.True(easyLowR.Extrapolated); // 257.75 > 256
        var hardHighR = rows.Single(x => x.Bin == 5 && x.R == 22);
        Assert.True(hardHighR.Advantage < 0);
        Assert.Equal(0.01 + Math.Log2(14 + 39 / 22.0) / 4 * 0.02, hardHighR.SmallAccuracy, 9); // between budgets 1 and 16
    }

    [Fact]
    public void Sweep_records_round_trip_through_csv_and_json()
    {
        var records = new List<SweepRecord>
        {
            new("beam", "M=4", 16, "q,1", 7, true, "47", 123_456_789_012, 16.25),
            new("lookahead", "M=2;k=1", 8, "q\"2\"", ulong.MaxValue, false, null, 0, 0.1),
            new("revisions", "P=4", 64, "q3", 0, false, "", 1, 64),
            new("best-of-n", "", 1, "q4", 1, false, " a\nb, \"c\" ", 42, 1),
        };
        var dir = Directory.CreateTempSubdirectory("ponder-sweep-");
        try
        {
            string csv = Path.Combine(dir.FullName, "s.csv"), json = Path.Combine(dir.FullName, "s.json");
            SweepResults.WriteCsv(csv, records);
            Assert.Equal(records, SweepResults.ReadCsv(csv));
            SweepResults.WriteJson(json, records);
            Assert.Equal(records, SweepResults.ReadJson(json));
            Assert.Equal(new StrategySpec(StrategyKind.Lookahead, 8, 2, 1), records[1].Spec);

            File.WriteAllText(csv, SweepResults.CsvHeader + "\nbeam,M=4,sixteen,q,0,1,4,10,1\n");
            var e = Assert.Throws<InvalidDataException>(() => SweepResults.ReadCsv(csv));
            Assert.Contains("row 2 field 'budget'", e.Message);
            File.WriteAllText(csv, "strategy,budget\n");
            Assert.Contains("header", Assert.Throws<InvalidDataException>(() => SweepResults.ReadCsv(csv)).Message);
        }
        finally
        {
            dir.Delete(true);
        }
    }
}
