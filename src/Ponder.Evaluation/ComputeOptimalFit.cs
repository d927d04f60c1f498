using Ponder.Search;

namespace Ponder.Evaluation;

/// <summary>The compute-optimal choice of one (bin, budget) cell.</summary>
/// <param name="Bin">Difficulty bin, 1 = easiest.</param>
/// <param name="Budget">Generations.</param>
/// <param name="CrossValidated">Accuracy of compute-optimal on held-out questions: each fold evaluated with the
/// configuration selected on the other fold.</param>
/// <param name="FoldChoices">The configuration selected for evaluating fold 0 and fold 1.</param>
/// <param name="Final">The configuration selected on all the bin's questions (what the deployed table uses).</param>
public sealed record ComputeOptimalCell(int Bin, int Budget, AccuracyEstimate CrossValidated, IReadOnlyList<string> FoldChoices,
    ComputeOptimalEntry Final);

/// <summary>
/// Fits compute-optimal strategy selection (Snell et al. 2024, section 3.2): for each difficulty bin and budget, the
/// configuration (strategy + hyper-parameters) with the best accuracy, with 2-fold cross-validation inside each bin:
/// the bin's questions are split into two folds; each fold is evaluated with the configuration that scored best on
/// the other, so selection and evaluation never use the same questions.
/// </summary>
public static class ComputeOptimalFit
{
    /// <summary>
    /// Fold (0 or 1) of each question: the bin's questions in ordinal order of their ids, alternating. Deterministic
    /// and balanced; ids that carry no order (hashes) make it a random split.
    /// </summary>
    public static Dictionary<string, int> Folds(IEnumerable<string> questions) =>
        questions.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)
            .Select((q, i) => (q, i % 2)).ToDictionary(t => t.q, t => t.Item2, StringComparer.Ordinal);

    /// <summary>
    /// Fits every (bin, budget) cell present in <paramref name="records"/> (records of questions without a bin are
    /// ignored). <paramref name="include"/> restricts the configurations compute-optimal may choose among (e.g. search
    /// only, or revisions only); best-of-N itself is a candidate unless excluded.
    /// </summary>
    public static List<ComputeOptimalCell> Fit(IEnumerable<SweepRecord> records, IReadOnlyDictionary<string, int> binOf,
        Func<SweepRecord, bool>? include = null)
    {
        ArgumentNullException.ThrowIfNull(records);
        ArgumentNullException.ThrowIfNull(binOf);
        var cells = new List<ComputeOptimalCell>();
        var usable = records.Where(r => binOf.ContainsKey(r.QuestionId) && (include is null || include(r))).ToList();
        foreach (var bin in usable.GroupBy(r => binOf[r.QuestionId]).OrderBy(g => g.Key))
        {
            var folds = Folds(bin.Select(r => r.QuestionId));
            foreach (var budget in bin.GroupBy(r => r.Budget).OrderBy(g => g.Key))
            {
                var rows = budget.ToList();
                var choices = new string[2];
                int correct = 0, trials = 0;
                for (int evalFold = 0; evalFold < 2; evalFold++)
                {
                    var select = rows.Where(r => folds[r.QuestionId] != evalFold).ToList();
                    var evaluate = rows.Where(r => folds[r.QuestionId] == evalFold).ToList();
                    if (select.Count == 0 || evaluate.Count == 0) { choices[evalFold] = ""; continue; }
                    var (chosen, _) = Best(select);
                    choices[evalFold] = chosen;
                    foreach (var r in evaluate.Where(r => r.Configuration == chosen))
                    {
                        trials++;
                        if (r.Correct) correct++;
                    }
                }
                var (final, accuracy) = Best(rows);
                var sample = rows.First(r => r.Configuration == final);
                cells.Add(new ComputeOptimalCell(bin.Key, budget.Key, AccuracyEstimate.Wilson(correct, trials), choices,
                    new ComputeOptimalEntry(bin.Key, budget.Key, sample.Strategy, sample.Params, accuracy)));
            }
        }
        return cells;
    }

    /// <summary>The deployable table (each cell's <see cref="ComputeOptimalCell.Final"/> choice).</summary>
    public static ComputeOptimalTable Table(IEnumerable<ComputeOptimalCell> cells) => new(cells.Select(c => c.Final));

    /// <summary>
    /// Compute-optimal's cross-validated accuracy over all bins per budget (runs pooled), as a curve for
    /// <see cref="Curves.ComputeRatio"/> against best-of-N.
    /// </summary>
    public static List<CurvePoint> OverallCurve(IEnumerable<ComputeOptimalCell> cells) =>
        cells.GroupBy(c => c.Budget).OrderBy(g => g.Key)
            .Select(g =>
            {
                int correct = g.Sum(c => c.CrossValidated.Correct), trials = g.Sum(c => c.CrossValidated.Trials);
                return new CurvePoint(g.Key, trials == 0 ? 0 : (double)correct / trials);
            }).ToList();

    /// <summary>The best configuration by accuracy; ties go to the ordinal-first configuration name.</summary>
    static (string Configuration, double Accuracy) Best(IEnumerable<SweepRecord> rows) =>
        rows.GroupBy(r => r.Configuration, StringComparer.Ordinal)
            .Select(g => (g.Key, g.Average(r => r.Correct ? 1.0 : 0.0)))
            .OrderByDescending(t => t.Item2).ThenBy(t => t.Key, StringComparer.Ordinal)
            .First();
}
