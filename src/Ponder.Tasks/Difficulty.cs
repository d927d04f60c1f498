namespace Ponder.Tasks;

/// <summary>One sample used to estimate a question's difficulty.</summary>
/// <param name="QuestionId">The question.</param>
/// <param name="Correct">Whether the sample's answer was correct (oracle difficulty).</param>
/// <param name="FinalScore">The verifier's final-answer score of the sample (predicted difficulty).</param>
public readonly record struct DifficultySample(string QuestionId, bool Correct, double FinalScore);

/// <summary>
/// Difficulty bins (Snell et al. 2024, section 3): a per-question easiness score (oracle: the policy's pass@1 from many
/// samples; predicted: the mean verifier final score of the same samples, no ground truth needed) split into
/// quantile bins, bin 1 easiest.
/// </summary>
/// <remarks>
/// Bins have equal sizes (the first <c>count % bins</c> bins one larger): questions are ordered by score, highest
/// (easiest) first, and equal scores by question id (ordinal), so the split is deterministic and does not depend on
/// input order. Equal scores can therefore land in adjacent bins; that keeps the bins quantiles, as in the paper.
/// </remarks>
public static class DifficultyBins
{
    /// <summary>The paper's number of bins.</summary>
    public const int DefaultBins = 5;

    /// <summary>Pass@1 per question: the fraction of its samples that were correct.</summary>
    public static Dictionary<string, double> OracleScores(IEnumerable<DifficultySample> samples) =>
        MeanPerQuestion(samples, s => s.Correct ? 1 : 0);

    /// <summary>Mean verifier final score per question.</summary>
    public static Dictionary<string, double> PredictedScores(IEnumerable<DifficultySample> samples) =>
        MeanPerQuestion(samples, s => s.FinalScore);

    /// <summary>Bin (1 = easiest .. <paramref name="bins"/>) per question from its easiness score (higher = easier).</summary>
    public static Dictionary<string, int> Assign(IReadOnlyDictionary<string, double> easiness, int bins = DefaultBins)
    {
        ArgumentNullException.ThrowIfNull(easiness);
        if (bins < 1) throw new ArgumentException($"difficulty bins must be >= 1, got {bins}", nameof(bins));
        foreach (var (q, s) in easiness)
            if (double.IsNaN(s)) throw new ArgumentException($"question '{q}' has a NaN difficulty score", nameof(easiness));
        var order = easiness.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Key).ToList();
        var result = new Dictionary<string, int>(order.Count, StringComparer.Ordinal);
        int n = order.Count, size = n / bins, extra = n % bins, index = 0;
        for (int b = 1; b <= bins; b++)
        {
            int count = size + (b <= extra ? 1 : 0);
            for (int i = 0; i < count; i++) result[order[index++]] = b;
        }
        return result;
    }

    static Dictionary<string, double> MeanPerQuestion(IEnumerable<DifficultySample> samples, Func<DifficultySample, double> value)
    {
        ArgumentNullException.ThrowIfNull(samples);
        var sums = new Dictionary<string, (double Sum, int Count)>(StringComparer.Ordinal);
        foreach (var s in samples)
        {
            if (s.QuestionId is null) throw new ArgumentException("a difficulty sample has no question id", nameof(samples));
            sums.TryGetValue(s.QuestionId, out var acc);
            sums[s.QuestionId] = (acc.Sum + value(s), acc.Count + 1);
        }
        return sums.ToDictionary(kv => kv.Key, kv => kv.Value.Sum / kv.Value.Count, StringComparer.Ordinal);
    }
}
