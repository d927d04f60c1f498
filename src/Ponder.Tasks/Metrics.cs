namespace Ponder.Tasks;

/// <summary>Ranking and answer-selection metrics.</summary>
public static class Metrics
{
    /// <summary>Area under the ROC curve of <paramref name="scores"/> separating true from false labels (Mann-Whitney, ties count half); NaN without both classes.</summary>
    public static double Auc(IReadOnlyList<float> scores, IReadOnlyList<bool> labels)
    {
        if (scores.Count != labels.Count) throw new ArgumentException($"{scores.Count} scores for {labels.Count} labels", nameof(labels));
        var order = Enumerable.Range(0, scores.Count).OrderBy(i => scores[i]).ToArray();
        var rank = new double[scores.Count];
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && scores[order[j + 1]] == scores[order[i]]) j++;
            for (int k = i; k <= j; k++) rank[order[k]] = (i + j) / 2.0 + 1;
            i = j + 1;
        }
        long pos = labels.Count(l => l), neg = labels.Count - pos;
        if (pos == 0 || neg == 0) return double.NaN;
        double sumPos = 0;
        for (int i = 0; i < rank.Length; i++) if (labels[i]) sumPos += rank[i];
        return (sumPos - pos * (pos + 1) / 2.0) / ((double)pos * neg);
    }

    /// <summary>
    /// The mean, over groups (questions) holding both true and false labels, of the AUC of the scores within the group
    /// (how well a verifier ranks the solutions of one question), and how many groups count; NaN when none does.
    /// </summary>
    public static (double Mean, int Groups) MeanAucWithin<TGroup>(IEnumerable<(TGroup Group, float Score, bool Label)> items) where TGroup : notnull
    {
        ArgumentNullException.ThrowIfNull(items);
        double sum = 0;
        int groups = 0;
        foreach (var g in items.GroupBy(x => x.Group))
        {
            double auc = Auc(g.Select(x => x.Score).ToList(), g.Select(x => x.Label).ToList());
            if (double.IsNaN(auc)) continue;
            sum += auc;
            groups++;
        }
        return (groups == 0 ? double.NaN : sum / groups, groups);
    }

    /// <summary>The answer with the largest total weight (null answers skipped; ties go to the answer seen first).</summary>
    public static string? Select(IReadOnlyList<string?> answers, IReadOnlyList<float> weights)
    {
        var totals = new Dictionary<string, double>();
        var first = new List<string>();
        for (int i = 0; i < answers.Count; i++)
        {
            if (answers[i] is not { } a) continue;
            if (!totals.ContainsKey(a)) { totals[a] = 0; first.Add(a); }
            totals[a] += weights[i];
        }
        string? best = null;
        foreach (string a in first) if (best is null || totals[a] > totals[best]) best = a;
        return best;
    }
}
