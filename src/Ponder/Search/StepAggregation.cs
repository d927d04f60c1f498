namespace Ponder.Search;

/// <summary>
/// How a candidate's per-step verifier scores become one answer score. The paper found <see cref="Last"/> (the PRM's
/// value of the whole solution) best; <see cref="Min"/> and <see cref="Prod"/> are the classic PRM aggregations.
/// </summary>
public enum StepAggregation
{
    /// <summary>The score after the last scored step (default).</summary>
    Last,
    /// <summary>The smallest step score.</summary>
    Min,
    /// <summary>The product of step scores.</summary>
    Prod,
    /// <summary>The arithmetic mean of step scores.</summary>
    Mean,
}

/// <summary>Step-score aggregation.</summary>
public static class StepScoreAggregation
{
    /// <summary>
    /// Aggregates <paramref name="stepScores"/>. A candidate with no scored step (the budget ran out before the
    /// verifier saw it) scores 0, so it can still be selected by answer frequency but never outranks a scored one.
    /// </summary>
    public static double Aggregate(IReadOnlyList<double> stepScores, StepAggregation aggregation)
    {
        ArgumentNullException.ThrowIfNull(stepScores);
        if (stepScores.Count == 0) return 0;
        switch (aggregation)
        {
            case StepAggregation.Last: return stepScores[^1];
            case StepAggregation.Min:
            {
                double min = double.PositiveInfinity;
                foreach (double s in stepScores) min = Math.Min(min, s);
                return min;
            }
            case StepAggregation.Prod:
            {
                double prod = 1;
                foreach (double s in stepScores) prod *= s;
                return prod;
            }
            case StepAggregation.Mean:
            {
                double sum = 0;
                foreach (double s in stepScores) sum += s;
                return sum / stepScores.Count;
            }
            default:
                throw new ArgumentException($"unknown step aggregation {aggregation}", nameof(aggregation));
        }
    }

    /// <summary>Parses "last", "min", "prod" or "mean" (case-insensitive).</summary>
    public static StepAggregation Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "last" => StepAggregation.Last,
        "min" => StepAggregation.Min,
        "prod" or "product" => StepAggregation.Prod,
        "mean" => StepAggregation.Mean,
        _ => throw new ArgumentException($"step aggregation '{text}' is not one of last, min, prod, mean", nameof(text)),
    };
}
