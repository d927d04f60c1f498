namespace Ponder.Evaluation;

/// <summary>
/// Compute-optimal's efficiency over the whole budget curve, with a bootstrap interval over questions.
/// At each budget b the efficiency is the budget best-of-N needs to reach compute-optimal's cross-validated accuracy,
/// divided by b (<see cref="Curves.ComputeRatio"/>); where best-of-N never gets there within the sweep the ratio is
/// censored at (largest budget / b), a lower bound. The curve's summary is the geometric mean of these ratios over
/// the budgets. The interval resamples questions with replacement within each difficulty bin and redoes everything
/// (the 2-fold selection included), so it carries selection noise as well as outcome noise.
/// </summary>
/// <param name="Estimate">Geometric-mean ratio on the questions as they are.</param>
/// <param name="Low">2.5th percentile over bootstrap replicates.</param>
/// <param name="High">97.5th percentile.</param>
/// <param name="Replicates">Bootstrap replicates.</param>
/// <param name="PerBudget">Per budget: the ratio and its interval (censored ratios are lower bounds).</param>
/// <param name="Censored">Whether any budget's ratio was censored on the questions as they are.</param>
public sealed record EfficiencyInterval(double Estimate, double Low, double High, int Replicates,
    IReadOnlyList<(int Budget, double Ratio, double Low, double High)> PerBudget, bool Censored)
{
    /// <summary>True when the interval contains 1 (no demonstrated saving or loss).</summary>
    public bool IncludesOne => Low <= 1 && High >= 1;

    /// <summary>
    /// Bootstraps the efficiency of compute-optimal (choosing among records that pass <paramref name="include"/>)
    /// against <paramref name="baseline"/> (a configuration name, e.g. "best-of-n"); null when either curve is empty.
    /// </summary>
    public static EfficiencyInterval? Compute(IReadOnlyList<SweepRecord> records, IReadOnlyDictionary<string, int> binOf, string baseline,
        Func<SweepRecord, bool> include, int replicates = 1000, ulong seed = 0xB007)
    {
        ArgumentNullException.ThrowIfNull(records);
        var byQuestion = records.Where(r => binOf.ContainsKey(r.QuestionId)).GroupBy(r => r.QuestionId).ToDictionary(g => g.Key, g => g.ToList());
        var point = Ratios(records, binOf, baseline, include);
        if (point is null) return null;
        var questionsByBin = byQuestion.Keys.GroupBy(q => binOf[q]).OrderBy(g => g.Key).Select(g => g.Order(StringComparer.Ordinal).ToArray()).ToList();
        var rng = new Random(unchecked((int)seed));
        var summaries = new List<double>(replicates);
        var perBudget = point.Select(_ => new List<double>(replicates)).ToList();
        for (int rep = 0; rep < replicates; rep++)
        {
            // Resampled questions get new ids (a copy per draw) so that folds and selection treat them as distinct.
            var sample = new List<SweepRecord>();
            var bins = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var qs in questionsByBin)
                for (int i = 0; i < qs.Length; i++)
                {
                    string q = qs[rng.Next(qs.Length)], id = $"{q}#{i}";
                    bins[id] = binOf[q];
                    foreach (var r in byQuestion[q]) sample.Add(r with { QuestionId = id });
                }
            var ratios = Ratios(sample, bins, baseline, include);
            if (ratios is null) continue;
            summaries.Add(GeometricMean(ratios.Select(x => x.Ratio)));
            for (int i = 0; i < ratios.Count && i < perBudget.Count; i++) perBudget[i].Add(ratios[i].Ratio);
        }
        return new EfficiencyInterval(GeometricMean(point.Select(x => x.Ratio)), Percentile(summaries, 0.025), Percentile(summaries, 0.975), summaries.Count,
            [.. point.Select((p, i) => (p.Budget, p.Ratio, Percentile(perBudget[i], 0.025), Percentile(perBudget[i], 0.975)))], point.Any(p => p.Censored));
    }

    /// <summary>Compute-optimal's ratio at every budget (censored at largest budget / b where best-of-N never reaches it).</summary>
    static List<(int Budget, double Ratio, bool Censored)>? Ratios(IReadOnlyList<SweepRecord> records, IReadOnlyDictionary<string, int> binOf, string baseline,
        Func<SweepRecord, bool> include)
    {
        var baseCurve = Curves.Of(records, baseline);
        var cells = ComputeOptimalFit.Fit(records, binOf, include);
        if (baseCurve.Count == 0 || cells.Count == 0) return null;
        double maxBudget = baseCurve[^1].Budget;
        return [.. ComputeOptimalFit.OverallCurve(cells).Select(p => Curves.ComputeRatio(baseCurve, p.Budget, p.Accuracy) is double r
            ? ((int)p.Budget, r, false) : ((int)p.Budget, maxBudget / p.Budget, true))];
    }

    static double GeometricMean(IEnumerable<double> values)
    {
        var list = values.ToList();
        return list.Count == 0 ? double.NaN : Math.Exp(list.Average(Math.Log));
    }

    static double Percentile(List<double> values, double q)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToList();
        double pos = q * (sorted.Count - 1);
        int lo = (int)Math.Floor(pos), hi = (int)Math.Ceiling(pos);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }
}
