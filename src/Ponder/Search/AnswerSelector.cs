namespace Ponder.Search;

/// <summary>How the final answer is chosen among candidates.</summary>
public enum AnswerSelection
{
    /// <summary>The answer of the single highest-scoring candidate.</summary>
    Naive,
    /// <summary>Best-of-N weighted: sum the scores of candidates sharing an answer; the largest sum wins (default).</summary>
    Weighted,
    /// <summary>The most frequent answer (no verifier needed).</summary>
    Majority,
}

/// <summary>
/// Chooses the final answer: extracts answers from candidate texts (pluggable), aggregates step scores into an answer
/// score, and selects naive / weighted / majority, flat or hierarchically (revision chains).
/// </summary>
/// <remarks>
/// Candidates without an extractable answer never win. Finished candidates are preferred: unfinished ones (cut by the
/// budget or the round limit) are considered only when no finished candidate has an answer, so a budget-limited run
/// still returns its best guess. Ties are broken deterministically: weighted by (sum, count, first occurrence),
/// majority by (count, first occurrence), naive by first occurrence.
/// </remarks>
public sealed class AnswerSelector
{
    /// <summary>Creates a selector.</summary>
    /// <param name="method">Selection method (default weighted).</param>
    /// <param name="aggregation">Step aggregation for a candidate's score (default last).</param>
    /// <param name="extractor">Final-answer extractor over a candidate's text; default <see cref="ExtractFinalLine"/>.</param>
    public AnswerSelector(AnswerSelection method = AnswerSelection.Weighted, StepAggregation aggregation = StepAggregation.Last,
        Func<string, string?>? extractor = null)
    {
        if (!Enum.IsDefined(method)) throw new ArgumentException($"unknown answer selection {method}", nameof(method));
        if (!Enum.IsDefined(aggregation)) throw new ArgumentException($"unknown step aggregation {aggregation}", nameof(aggregation));
        Method = method;
        Aggregation = aggregation;
        Extractor = extractor ?? ExtractFinalLine;
    }

    /// <summary>The selection method.</summary>
    public AnswerSelection Method { get; }

    /// <summary>The step aggregation.</summary>
    public StepAggregation Aggregation { get; }

    /// <summary>The final-answer extractor.</summary>
    public Func<string, string?> Extractor { get; }

    /// <summary>The answer score of a candidate with these step scores.</summary>
    public double Score(IReadOnlyList<double> stepScores) => StepScoreAggregation.Aggregate(stepScores, Aggregation);

    /// <summary>
    /// The arithmetic-chain extractor: the text after "A:" on the last line that starts with "A:" (trimmed), or null.
    /// </summary>
    public static string? ExtractFinalLine(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string? answer = null;
        foreach (var line in text.Split('\n'))
        {
            var t = line.Trim();
            if (t.StartsWith("A:", StringComparison.Ordinal)) answer = t[2..].Trim();
        }
        return string.IsNullOrEmpty(answer) ? null : answer;
    }

    /// <summary>Snapshots a branch as a candidate (answer extracted, score aggregated).</summary>
    public SearchCandidate Candidate(Branch branch, int chain, int round)
    {
        ArgumentNullException.ThrowIfNull(branch);
        var scores = branch.StepScores.ToArray();
        return new SearchCandidate(branch.Text, branch.Steps.ToArray(), scores, Score(scores),
            Extractor(branch.Text), branch.Finished, chain, round);
    }

    /// <summary>Selects with <see cref="Method"/> over all candidates.</summary>
    public string? Select(IReadOnlyList<SearchCandidate> candidates) => Select(candidates, Method);

    /// <summary>
    /// Selection for revision chains. With a verifier (naive or weighted): select within each chain, then across the
    /// chain winners, each winner weighted by its best candidate score in its chain. Majority: flat over all attempts.
    /// </summary>
    public string? SelectHierarchical(IReadOnlyList<IReadOnlyList<SearchCandidate>> chains)
    {
        ArgumentNullException.ThrowIfNull(chains);
        if (Method == AnswerSelection.Majority) return Select(chains.SelectMany(c => c).ToList(), Method);
        var winners = new List<SearchCandidate>();
        foreach (var chain in chains)
        {
            var answer = Select(chain, Method);
            if (answer is null) continue;
            // The chain's representative: its best-scored candidate with the winning answer.
            SearchCandidate? best = null;
            foreach (var c in Eligible(chain))
                if (c.Answer == answer && (best is null || c.Score > best.Score)) best = c;
            winners.Add(best!);
        }
        return Select(winners, Method);
    }

    static string? Select(IReadOnlyList<SearchCandidate> candidates, AnswerSelection method)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        var eligible = Eligible(candidates);
        if (eligible.Count == 0) return null;
        if (method == AnswerSelection.Naive)
        {
            var best = eligible[0];
            foreach (var c in eligible) if (c.Score > best.Score) best = c;
            return best.Answer;
        }
        // Groups in first-occurrence order so ties fall to the earliest answer.
        var order = new List<string>();
        var sums = new Dictionary<string, (double Sum, int Count)>(StringComparer.Ordinal);
        foreach (var c in eligible)
        {
            var a = c.Answer!;
            if (!sums.TryGetValue(a, out var s)) { order.Add(a); s = (0, 0); }
            sums[a] = (s.Sum + c.Score, s.Count + 1);
        }
        string winner = order[0];
        foreach (var a in order)
        {
            var (sum, count) = sums[a];
            var (bestSum, bestCount) = sums[winner];
            bool better = method == AnswerSelection.Weighted
                ? sum > bestSum || (sum == bestSum && count > bestCount)
                : count > bestCount;
            if (better) winner = a;
        }
        return winner;
    }

    static List<SearchCandidate> Eligible(IReadOnlyList<SearchCandidate> candidates)
    {
        var finished = candidates.Where(c => c.Answer is not null && c.Finished).ToList();
        return finished.Count > 0 ? finished : candidates.Where(c => c.Answer is not null).ToList();
    }
}
