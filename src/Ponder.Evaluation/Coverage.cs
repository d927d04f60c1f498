namespace Ponder.Evaluation;

/// <summary>
/// Reference curves drawn from a question's K oracle samples, the ceiling and the verifier-free baseline every
/// strategy is read against: pass@N (coverage: any of N samples correct) and majority@N (the most frequent of N
/// answers is correct), each as its expectation over draws of N of the K samples without replacement.
/// </summary>
public static class Coverage
{
    /// <summary>
    /// The unbiased pass@N of a question with <paramref name="correct"/> correct among <paramref name="samples"/>
    /// samples: 1 − C(K−c, N) / C(K, N) (Chen et al. 2021), computed as a product to stay exact in double.
    /// </summary>
    public static double PassAtN(int samples, int correct, int n)
    {
        if (samples < 1 || correct < 0 || correct > samples) throw new ArgumentException($"pass@N needs 0 <= correct <= samples, samples >= 1; got {correct} of {samples}");
        if (n < 1 || n > samples) throw new ArgumentOutOfRangeException(nameof(n), $"N = {n} must be in [1, {samples}] (the oracle samples drawn)");
        if (samples - correct < n) return 1;
        double allWrong = 1;
        for (int i = 0; i < n; i++) allWrong *= (double)(samples - correct - i) / (samples - i);
        return 1 - allWrong;
    }

    /// <summary>
    /// majority@N: the probability that the most frequent extracted answer among N samples drawn without replacement
    /// from <paramref name="answers"/> is correct (ties broken uniformly at random; a draw without any answer is
    /// wrong). Estimated over <paramref name="draws"/> seeded draws, exact for N = K (one draw suffices, ties aside).
    /// </summary>
    public static double MajorityAtN(IReadOnlyList<(string? Answer, bool Correct)> answers, int n, ulong seed, int draws = 256)
    {
        ArgumentNullException.ThrowIfNull(answers);
        if (n < 1 || n > answers.Count) throw new ArgumentOutOfRangeException(nameof(n), $"N = {n} must be in [1, {answers.Count}] (the oracle samples drawn)");
        var rng = new Random(unchecked((int)(seed ^ (seed >> 32))));
        var index = Enumerable.Range(0, answers.Count).ToArray();
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        double hits = 0;
        for (int d = 0; d < draws; d++)
        {
            // A partial Fisher-Yates shuffle: the first n entries are a uniform draw without replacement.
            for (int i = 0; i < n; i++) { int j = rng.Next(i, index.Length); (index[i], index[j]) = (index[j], index[i]); }
            counts.Clear();
            int top = 0;
            for (int i = 0; i < n; i++)
                if (answers[index[i]].Answer is { } a) top = Math.Max(top, counts[a] = counts.GetValueOrDefault(a) + 1);
            if (top == 0) continue;
            int tied = 0, right = 0;
            foreach (var (a, c) in counts)
            {
                if (c != top) continue;
                tied++;
                if (answers.First(x => x.Answer == a).Correct) right++;
            }
            hits += (double)right / tied;
        }
        return hits / draws;
    }
}
