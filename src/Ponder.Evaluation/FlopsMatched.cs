namespace Ponder.Evaluation;

/// <summary>One FLOPs-matched comparison: small model + test-time compute vs a larger model's greedy answer.</summary>
/// <param name="Bin">Difficulty bin (0 = all questions).</param>
/// <param name="R">Inference-to-pretraining token ratio D_inference / D_pretrain.</param>
/// <param name="Multiplier">Test-time budget of the small model, in multiples of its greedy inference compute (generations).</param>
/// <param name="SmallAccuracy">The small model's accuracy at that budget (interpolated in log2 budget).</param>
/// <param name="LargeAccuracy">The large model's greedy accuracy.</param>
/// <param name="Extrapolated">True when the multiplier lies outside the budgets swept (accuracy clamped to the nearest end).</param>
public sealed record FlopsMatchedRow(int Bin, double R, double Multiplier, double SmallAccuracy, double LargeAccuracy, bool Extrapolated)
{
    /// <summary>Positive when test-time compute on the small model wins.</summary>
    public double Advantage => SmallAccuracy - LargeAccuracy;
}

/// <summary>
/// FLOPs-matched comparison (Snell et al. 2024, section 7). Pretraining costs X = 6·N·D_pretrain, inference
/// Y = 2·N·D_inference. A model M times larger costs, over its lifetime, as much as the small model spending
/// M + 3(M−1)/R times its greedy inference compute at test time, R = D_inference / D_pretrain. Ponder also computes the
/// same match from exact FLOP counts.
/// </summary>
public static class FlopsMatched
{
    /// <summary>The R values the paper used.</summary>
    public static readonly IReadOnlyList<double> PaperRatios = [0.16, 0.79, 22];

    /// <summary>
    /// The paper's multiplier M + 3(M−1)/R. Derivation: 6·M·N·D + 2·M·N·D·R = 6·N·D + 2·N·D·R·c gives
    /// c = M + 3(M−1)/R.
    /// </summary>
    public static double Multiplier(double sizeRatio, double r)
    {
        if (!(sizeRatio >= 1)) throw new ArgumentException($"model size ratio M must be >= 1, got {sizeRatio}", nameof(sizeRatio));
        if (!(r > 0)) throw new ArgumentException($"inference/pretraining token ratio R must be > 0, got {r}", nameof(r));
        return sizeRatio + 3 * (sizeRatio - 1) / r;
    }

    /// <summary>
    /// The same match from exact counts: the small model's test-time FLOPs per query that equal the large model's
    /// lifetime cost, divided by the small model's greedy FLOPs per query. The large model's extra pretraining is spread
    /// over the queries served, Q = R·D_pretrain / tokensPerQuery.
    /// </summary>
    /// <param name="smallGreedyFlops">Exact FLOPs of one greedy answer of the small model (per query, averaged).</param>
    /// <param name="largeGreedyFlops">Exact FLOPs of one greedy answer of the large model.</param>
    /// <param name="smallPretrainFlops">Exact training FLOPs of the small model.</param>
    /// <param name="largePretrainFlops">Exact training FLOPs of the large model.</param>
    /// <param name="r">D_inference / D_pretrain.</param>
    /// <param name="pretrainTokens">D_pretrain (tokens both models were trained on).</param>
    /// <param name="tokensPerQuery">Inference tokens per query (prompt + answer).</param>
    public static double ExactMultiplier(double smallGreedyFlops, double largeGreedyFlops, double smallPretrainFlops, double largePretrainFlops,
        double r, double pretrainTokens, double tokensPerQuery)
    {
        if (!(smallGreedyFlops > 0)) throw new ArgumentException($"small model greedy FLOPs must be > 0, got {smallGreedyFlops}", nameof(smallGreedyFlops));
        if (!(largeGreedyFlops > 0)) throw new ArgumentException($"large model greedy FLOPs must be > 0, got {largeGreedyFlops}", nameof(largeGreedyFlops));
        if (!(largePretrainFlops >= smallPretrainFlops) || smallPretrainFlops < 0)
            throw new ArgumentException($"pretraining FLOPs must satisfy 0 <= small ({smallPretrainFlops}) <= large ({largePretrainFlops})", nameof(largePretrainFlops));
        if (!(r > 0)) throw new ArgumentException($"inference/pretraining token ratio R must be > 0, got {r}", nameof(r));
        if (!(pretrainTokens > 0) || !(tokensPerQuery > 0))
            throw new ArgumentException($"pretraining tokens ({pretrainTokens}) and tokens per query ({tokensPerQuery}) must be > 0", nameof(pretrainTokens));
        double queries = r * pretrainTokens / tokensPerQuery;
        return (largeGreedyFlops + (largePretrainFlops - smallPretrainFlops) / queries) / smallGreedyFlops;
    }

    /// <summary>
    /// Rows per bin and R: the small model's accuracy at <paramref name="multiplier"/>(R) generations on its
    /// accuracy-vs-generations curve against the large model's greedy accuracy.
    /// </summary>
    public static List<FlopsMatchedRow> Compare(IReadOnlyDictionary<int, IReadOnlyList<CurvePoint>> smallCurveByBin,
        IReadOnlyDictionary<int, double> largeAccuracyByBin, IEnumerable<double> ratios, Func<double, double> multiplier)
    {
        ArgumentNullException.ThrowIfNull(smallCurveByBin);
        ArgumentNullException.ThrowIfNull(largeAccuracyByBin);
        var rows = new List<FlopsMatchedRow>();
        foreach (double r in ratios)
        {
            double m = multiplier(r);
            foreach (var (bin, curve) in smallCurveByBin.OrderBy(kv => kv.Key))
            {
                if (!largeAccuracyByBin.TryGetValue(bin, out double large))
                    throw new ArgumentException($"no large-model accuracy for bin {bin}", nameof(largeAccuracyByBin));
                double small = Curves.AccuracyAt(curve, m, out bool extrapolated);
                rows.Add(new FlopsMatchedRow(bin, r, m, small, large, extrapolated));
            }
        }
        return rows;
    }
}
