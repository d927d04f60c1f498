namespace Ponder.Evaluation;

/// <summary>An accuracy with its Wilson score interval.</summary>
/// <param name="Correct">Successes.</param>
/// <param name="Trials">Trials (question x seed runs).</param>
/// <param name="Value">Correct / Trials (0 when there are no trials).</param>
/// <param name="Low">Lower end of the interval.</param>
/// <param name="High">Upper end of the interval.</param>
public sealed record AccuracyEstimate(int Correct, int Trials, double Value, double Low, double High)
{
    /// <summary>The estimate for <paramref name="correct"/> of <paramref name="trials"/> at normal quantile <paramref name="z"/> (1.96: 95%).</summary>
    public static AccuracyEstimate Wilson(int correct, int trials, double z = 1.96)
    {
        if (trials < 0 || correct < 0 || correct > trials)
            throw new ArgumentException($"accuracy needs 0 <= correct <= trials, got {correct} of {trials}");
        if (trials == 0) return new(0, 0, 0, 0, 1);
        // Wilson (1927): centre (p + z²/2n) / (1 + z²/n), half-width z·sqrt(p(1−p)/n + z²/4n²) / (1 + z²/n).
        double n = trials, p = correct / n, z2 = z * z;
        double denom = 1 + z2 / n;
        double centre = (p + z2 / (2 * n)) / denom;
        double half = z * Math.Sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom;
        return new(correct, trials, p, Math.Max(0, centre - half), Math.Min(1, centre + half));
    }

    /// <summary>The estimate over a sequence of outcomes.</summary>
    public static AccuracyEstimate Of(IEnumerable<bool> outcomes)
    {
        int correct = 0, trials = 0;
        foreach (bool o in outcomes) { trials++; if (o) correct++; }
        return Wilson(correct, trials);
    }
}
