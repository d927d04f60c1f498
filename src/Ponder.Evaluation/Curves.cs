namespace Ponder.Evaluation;

/// <summary>A point of an accuracy-vs-budget curve.</summary>
public readonly record struct CurvePoint(double Budget, double Accuracy);

/// <summary>Accuracy-vs-budget curves, interpolated piecewise-linearly in log2 budget (the paper's x axis).</summary>
public static class Curves
{
    /// <summary>
    /// Accuracy per configuration and budget over the records (a run = one question x seed), optionally restricted to
    /// some questions (a difficulty bin).
    /// </summary>
    public static Dictionary<string, List<(int Budget, AccuracyEstimate Accuracy)>> ByConfiguration(
        IEnumerable<SweepRecord> records, Func<string, bool>? question = null)
    {
        return records.Where(r => question is null || question(r.QuestionId))
            .GroupBy(r => r.Configuration, StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .ToDictionary(g => g.Key,
                g => g.GroupBy(r => r.Budget).OrderBy(b => b.Key)
                    .Select(b => (b.Key, AccuracyEstimate.Of(b.Select(r => r.Correct)))).ToList(),
                StringComparer.Ordinal);
    }

    /// <summary>One configuration's accuracy per budget (all its records pooled), in budget order.</summary>
    public static List<CurvePoint> Of(IEnumerable<SweepRecord> records, string configuration) =>
        [.. records.Where(r => r.Configuration == configuration).GroupBy(r => r.Budget).OrderBy(g => g.Key)
            .Select(g => new CurvePoint(g.Key, g.Average(r => r.Correct ? 1.0 : 0.0)))];

    /// <summary>
    /// The accuracy at <paramref name="budget"/>, interpolated linearly in log2 budget between the curve's points.
    /// Outside the curve it is clamped to the end point and <paramref name="extrapolated"/> is set.
    /// </summary>
    public static double AccuracyAt(IReadOnlyList<CurvePoint> curve, double budget, out bool extrapolated)
    {
        var c = Sorted(curve, nameof(curve));
        if (!(budget > 0)) throw new ArgumentException($"budget must be > 0, got {budget}", nameof(budget));
        extrapolated = budget < c[0].Budget || budget > c[^1].Budget;
        if (budget <= c[0].Budget) return c[0].Accuracy;
        if (budget >= c[^1].Budget) return c[^1].Accuracy;
        int i = 1;
        while (c[i].Budget < budget) i++;
        double x0 = Math.Log2(c[i - 1].Budget), x1 = Math.Log2(c[i].Budget), t = (Math.Log2(budget) - x0) / (x1 - x0);
        return c[i - 1].Accuracy + t * (c[i].Accuracy - c[i - 1].Accuracy);
    }

    /// <summary>
    /// The smallest budget at which the curve (linear in log2 budget) reaches <paramref name="accuracy"/>; null when it
    /// never does. A target at or below the first point's accuracy gives the first budget (no extrapolation below it).
    /// </summary>
    public static double? BudgetFor(IReadOnlyList<CurvePoint> curve, double accuracy)
    {
        var c = Sorted(curve, nameof(curve));
        if (c[0].Accuracy >= accuracy) return c[0].Budget;
        for (int i = 1; i < c.Count; i++)
        {
            if (c[i].Accuracy < accuracy) continue;
            double x0 = Math.Log2(c[i - 1].Budget), x1 = Math.Log2(c[i].Budget);
            double t = (accuracy - c[i - 1].Accuracy) / (c[i].Accuracy - c[i - 1].Accuracy);
            return Math.Pow(2, x0 + t * (x1 - x0));
        }
        return null;
    }

    /// <summary>
    /// How many times more compute <paramref name="baseline"/> (best-of-N) needs to match <paramref name="accuracy"/>
    /// reached at <paramref name="budget"/>: baseline budget / budget. Null when the baseline never gets there.
    /// </summary>
    public static double? ComputeRatio(IReadOnlyList<CurvePoint> baseline, double budget, double accuracy)
    {
        if (!(budget > 0)) throw new ArgumentException($"budget must be > 0, got {budget}", nameof(budget));
        return BudgetFor(baseline, accuracy) is double b ? b / budget : null;
    }

    static List<CurvePoint> Sorted(IReadOnlyList<CurvePoint> curve, string name)
    {
        ArgumentNullException.ThrowIfNull(curve, name);
        if (curve.Count == 0) throw new ArgumentException("the accuracy curve is empty", name);
        var c = curve.OrderBy(p => p.Budget).ToList();
        for (int i = 0; i < c.Count; i++)
        {
            if (!(c[i].Budget > 0)) throw new ArgumentException($"curve budget {c[i].Budget} is not > 0", name);
            if (i > 0 && c[i].Budget == c[i - 1].Budget) throw new ArgumentException($"curve has budget {c[i].Budget} twice", name);
        }
        return c;
    }
}
