using System.Globalization;
using System.Text;
using System.Text.Json;
using Ponder.Evaluation.Reports;

namespace Ponder.Evaluation.Study;

/// <summary>
/// Writes a study's outputs into a folder: <c>records.csv</c> (sweep rows), <c>records.json</c> (rows with policy/PRM
/// FLOPs, tokens), <c>difficulty.csv</c>, <c>oracle.json</c>, <c>compute_optimal.json</c>, <c>summary.json</c>,
/// <c>report.md</c>, and <c>plots/*.png|svg</c> mirroring the paper's figures.
/// </summary>
public static class StudyReport
{
    /// <summary>The name compute-optimal (cross-validated) carries in tables and plots.</summary>
    public const string ComputeOptimalName = "compute-optimal (2-fold CV)";

    /// <summary>The name compute-optimal over revision configurations carries.</summary>
    public const string ComputeOptimalRevisionsName = "compute-optimal revisions (2-fold CV)";

    /// <summary>Writes every output; returns the files written.</summary>
    public static List<string> Write(StudyResult result, string outDirectory, string? command = null)
    {
        ArgumentNullException.ThrowIfNull(result);
        Directory.CreateDirectory(outDirectory);
        var files = new List<string>();
        string F(string name) { var p = Path.Combine(outDirectory, name); files.Add(p); return p; }

        var sweep = result.Records.Select(r => r.ToSweepRecord()).ToList();
        SweepResults.WriteCsv(F("records.csv"), sweep);
        File.WriteAllText(F("records.json"), JsonSerializer.Serialize(result.Records, Json));
        File.WriteAllText(F("difficulty.csv"), DifficultyCsv(result));
        File.WriteAllText(F("compute_optimal.json"), JsonSerializer.Serialize(new
        {
            oracle = Cells(result.ComputeOptimal), predicted = Cells(result.ComputeOptimalPredicted), revisions = Cells(result.ComputeOptimalRevisions),
        }, Json));
        File.WriteAllText(F("summary.json"), JsonSerializer.Serialize(Summary(result), Json));
        File.WriteAllText(F("report.md"), Markdown(result, command));

        string plots = Path.Combine(outDirectory, "plots");
        files.AddRange(StudyPlots.AccuracyVsBudget(Path.Combine(plots, "accuracy-vs-budget"), $"{result.Config.Name}: accuracy vs generation budget", Series(result, null)));
        var perBin = result.OracleBins.Values.Distinct().Order().ToDictionary(b => b, b => Series(result, b));
        files.AddRange(StudyPlots.AccuracyVsBudgetPerBin(plots, "accuracy-vs-budget", result.Config.Name, perBin));
        var baseCurve = Curves.ByConfiguration(sweep).GetValueOrDefault(result.Baseline);
        if (baseCurve is not null && result.ComputeOptimal.Count > 0)
            files.AddRange(StudyPlots.ComputeOptimalVsBestOfN(Path.Combine(plots, "compute-optimal-vs-best-of-n"),
                [.. baseCurve.Select(p => new CurvePoint(p.Budget, p.Accuracy.Value))], ComputeOptimalFit.OverallCurve(result.ComputeOptimal)));
        foreach (var rev in Revisions(result))
        {
            files.AddRange(StudyPlots.RevisionsByStep(Path.Combine(plots, $"{rev.Name}-by-step"), rev.ByStep));
            if (rev.Ratios.Count > 1)
                files.AddRange(StudyPlots.SequentialParallelRatio(Path.Combine(plots, $"{rev.Name}-ratio"), rev.Budget,
                    [.. rev.Ratios.Select(r => r.Label)], rev.RatioAccuracyByBin));
        }
        if (result.FlopsMatched.Skipped is null)
        {
            files.AddRange(StudyPlots.FlopsMatchedBars(Path.Combine(plots, "flops-matched-paper"), result.FlopsMatched.Paper));
            files.AddRange(StudyPlots.FlopsMatchedBars(Path.Combine(plots, "flops-matched-exact"), result.FlopsMatched.Exact));
        }
        return files;
    }

    /// <summary>One revisions record name's analysis at the sweep's largest budget.</summary>
    /// <param name="Name">Record name ("revisions", "revisions-majority").</param>
    /// <param name="Budget">The budget B analysed.</param>
    /// <param name="ByStep">Pass@1 at each sequential step per configuration ("P=1 (L=64)"), plus the policy's oracle pass@1 as a flat reference.</param>
    /// <param name="Ratios">The sequential/parallel ratios L/P at B, most parallel first: label and P.</param>
    /// <param name="RatioAccuracyByBin">Accuracy per oracle bin (0 = all) at each ratio, in <paramref name="Ratios"/> order.</param>
    public sealed record RevisionAnalysis(string Name, int Budget, IReadOnlyDictionary<string, IReadOnlyList<double>> ByStep,
        IReadOnlyList<(string Label, int Parallel)> Ratios, IReadOnlyDictionary<int, IReadOnlyList<double>> RatioAccuracyByBin);

    /// <summary>The revisions analyses of a study (none without revision runs).</summary>
    public static List<RevisionAnalysis> Revisions(StudyResult result)
    {
        var list = new List<RevisionAnalysis>();
        foreach (var family in result.Records.Where(r => r.RoundAccuracy is not null).GroupBy(r => r.Strategy).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            int budget = family.Max(r => r.Budget);
            var atBudget = family.Where(r => r.Budget == budget).ToList();
            // Revisions with a beam search per attempt (B > 1) appear by step; the sequential/parallel ratio compares B = 1 only.
            var all = atBudget.GroupBy(r => (StrategySpecOf(r).Parallel, StrategySpecOf(r).AttemptBeams)).OrderBy(g => g.Key.AttemptBeams).ThenByDescending(g => g.Key.Parallel).ToList();
            var configs = all.Where(g => g.Key.AttemptBeams == 1).Select(g => new Grouping(g.Key.Parallel, [.. g])).ToList();
            var byStep = new Dictionary<string, IReadOnlyList<double>>(StringComparer.Ordinal);
            foreach (var g in all)
            {
                var (p, b) = g.Key;
                int length = budget / (p * b);
                if (length <= 1) continue;
                int steps = g.Max(r => r.RoundAccuracy!.Count);
                byStep[b == 1 ? $"P={p} (L={length})" : $"P={p}, beam B={b} per attempt (L={length})"] = [.. Enumerable.Range(0, steps).Select(t =>
                    g.Where(r => r.RoundAccuracy!.Count > t).Average(r => r.RoundAccuracy![t]))];
            }
            if (byStep.Count == 0) continue;
            double policy = result.Oracle.Count == 0 ? double.NaN : result.Oracle.Average(o => o.PassAt1);
            byStep["policy pass@1 (oracle samples)"] = [.. Enumerable.Repeat(policy, byStep.Values.Max(v => v.Count))];
            var ratios = configs.Select(g => (Label: RatioLabel(budget / g.Key, g.Key), Parallel: g.Key)).ToList();
            var bins = result.OracleBins.Values.Distinct().Order().Prepend(0).ToList();
            var accuracy = bins.ToDictionary(b => b, b => (IReadOnlyList<double>)[.. configs.Select(g =>
            {
                var runs = g.Where(r => b == 0 || result.OracleBins.GetValueOrDefault(r.QuestionId) == b).ToList();
                return runs.Count == 0 ? double.NaN : runs.Average(r => r.Correct ? 1.0 : 0.0);
            })]);
            list.Add(new RevisionAnalysis(family.Key, budget, byStep, ratios, accuracy));
        }
        return list;
    }

    sealed record Grouping(int Key, List<StudyRecord> Runs) : IEnumerable<StudyRecord>
    {
        public IEnumerator<StudyRecord> GetEnumerator() => Runs.GetEnumerator();
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    static Ponder.Search.StrategySpec StrategySpecOf(StudyRecord r) => Ponder.Search.StrategySpec.Parse("revisions", r.Params, r.Budget);

    /// <summary>L/P as the paper labels it: "16" or "1/4".</summary>
    static string RatioLabel(int sequential, int parallel) =>
        sequential >= parallel ? (sequential / parallel).ToString(CultureInfo.InvariantCulture) : $"1/{parallel / sequential}";

    static string RevisionsMarkdown(StudyResult result)
    {
        var sb = new StringBuilder();
        foreach (var rev in Revisions(result))
        {
            sb.Append($"### {rev.Name} at budget {rev.Budget}\n\nPass@1 of the attempt at each sequential step (mean over chains and questions; step 1 is the first attempt):\n\n");
            int steps = rev.ByStep.Values.Max(v => v.Count);
            var shown = Enumerable.Range(1, steps).Where(t => t <= 2 || (t & (t - 1)) == 0 || t == steps).ToList();
            sb.Append(MarkdownReport.Table(["configuration", .. shown.Select(t => t.ToString(CultureInfo.InvariantCulture))],
                rev.ByStep.Select(kv => (IReadOnlyList<string>)[kv.Key, .. shown.Select(t => t <= kv.Value.Count ? Pct(kv.Value[t - 1]) : "")]))).Append('\n');
            if (rev.Ratios.Count > 1)
            {
                sb.Append($"Accuracy (final answer selected over all attempts) by sequential/parallel ratio L/P at budget {rev.Budget}, per oracle bin (0 = all):\n\n");
                sb.Append(MarkdownReport.Table(["bin", .. rev.Ratios.Select(r => $"L/P = {r.Label} (P={r.Parallel})")],
                    rev.RatioAccuracyByBin.Select(kv => (IReadOnlyList<string>)[kv.Key.ToString(CultureInfo.InvariantCulture), .. kv.Value.Select(Pct)]))).Append('\n');
            }
        }
        return sb.ToString();
    }

    /// <summary>Accuracy series per configuration (plus compute-optimal) over all questions or one oracle bin.</summary>
    public static Dictionary<string, List<(int Budget, AccuracyEstimate Accuracy)>> Series(StudyResult result, int? bin)
    {
        var series = Curves.ByConfiguration(result.Records.Select(r => r.ToSweepRecord()),
            bin is int b ? q => result.OracleBins.GetValueOrDefault(q) == b : null);
        foreach (var (name, fitted) in new[] { (ComputeOptimalName, result.ComputeOptimal), (ComputeOptimalRevisionsName, result.ComputeOptimalRevisions) })
        {
            var cells = fitted.Where(c => bin is null || c.Bin == bin).ToList();
            if (cells.Count > 0)
                series[name] = [.. cells.GroupBy(c => c.Budget).OrderBy(g => g.Key)
                    .Select(g => (g.Key, AccuracyEstimate.Wilson(g.Sum(c => c.CrossValidated.Correct), g.Sum(c => c.CrossValidated.Trials))))];
        }
        foreach (var (name, curve) in ReferenceCurves(result, bin)) series[name] = curve;
        return series;
    }

    /// <summary>The name of the coverage reference curve (pass@N from the oracle samples).</summary>
    public const string PassAtNName = "pass@N (coverage, oracle samples)";

    /// <summary>The name of the majority@N reference curve (from the oracle samples).</summary>
    public const string MajorityAtNName = "majority@N (oracle samples)";

    /// <summary>
    /// pass@N and majority@N at every budget N of the sweep up to K, from each question's K oracle samples (expected
    /// accuracy over draws of N of them; interval: Wilson over questions at the expected count).
    /// </summary>
    public static IEnumerable<(string Name, List<(int Budget, AccuracyEstimate Accuracy)> Curve)> ReferenceCurves(StudyResult result, int? bin)
    {
        var entries = result.Questions.Zip(result.Oracle).Where(t => bin is null || result.OracleBins.GetValueOrDefault(t.First.Id) == bin)
            .Select(t => (Id: t.First.Id, Samples: t.Second.Samples)).Where(t => t.Samples.Count > 0).ToList();
        if (entries.Count == 0) yield break;
        int k = entries.Min(e => e.Samples.Count);
        var budgets = result.Config.Budgets.Where(n => n <= k).Order().ToList();
        AccuracyEstimate Estimate(double expectedCorrect) => AccuracyEstimate.Wilson((int)Math.Round(expectedCorrect), entries.Count) with { Value = expectedCorrect / entries.Count };
        yield return (PassAtNName, [.. budgets.Select(n => (n, Estimate(entries.Sum(e => Coverage.PassAtN(e.Samples.Count, e.Samples.Count(x => x.Correct), n)))))]);
        yield return (MajorityAtNName, [.. budgets.Select(n => (n, Estimate(entries.Sum(e =>
            Coverage.MajorityAtN([.. e.Samples.Select(x => (x.Answer, x.Correct))], n, StableHash(e.Id) ^ (ulong)n)))))]);
    }

    static ulong StableHash(string s)
    {
        ulong h = 14695981039346656037UL;
        foreach (char c in s) h = (h ^ c) * 1099511628211UL;
        return h;
    }

    /// <summary>
    /// Accuracy per configuration (rows) and budget (columns) over all questions or one oracle bin, each cell
    /// "accuracy% ±half-width of its 95% Wilson interval (mean exact FLOPs per question)".
    /// </summary>
    public static string AccuracyTable(StudyResult result, int? bin)
    {
        var series = Series(result, bin);
        var budgets = series.Values.SelectMany(s => s.Select(p => p.Budget)).Distinct().Order().ToList();
        bool InBin(string q) => bin is null || result.OracleBins.GetValueOrDefault(q) == bin;
        var rows = series.Select(kv =>
        {
            var row = new List<string> { kv.Key };
            foreach (int b in budgets)
            {
                var point = kv.Value.Where(p => p.Budget == b).Select(p => p.Accuracy).FirstOrDefault();
                var runs = result.Records.Where(r => r.Budget == b && InBin(r.QuestionId) && r.Configuration == kv.Key).ToList();
                string flops = runs.Count == 0 ? "" : " (" + Flops(runs.Average(r => (double)r.Flops)) + ")";
                row.Add(point is null ? "" : string.Create(CultureInfo.InvariantCulture, $"{point.Value * 100:0.0}% ±{(point.High - point.Low) * 50:0}") + flops);
            }
            return (IReadOnlyList<string>)row;
        });
        return MarkdownReport.Table(["strategy", .. budgets.Select(b => b.ToString(CultureInfo.InvariantCulture))], rows);
    }

    /// <summary>The efficiency table: compute-optimal vs the baseline per budget.</summary>
    public static string EfficiencyTable(StudyResult result) => EfficiencyTable(result.Efficiency, result.Baseline);

    /// <summary>An efficiency table of <paramref name="rows"/> against <paramref name="baseline"/>.</summary>
    public static string EfficiencyTable(IReadOnlyList<EfficiencyRow> rows, string baseline, string name = "compute-optimal") =>
        MarkdownReport.Table(["budget", name, baseline, $"{baseline} budget for the same accuracy", "ratio"],
            rows.Select(e => (IReadOnlyList<string>)
            [
                e.Budget.ToString(CultureInfo.InvariantCulture), Pct(e.Accuracy), Pct(e.BaselineAccuracy),
                e.BaselineBudget is double bb ? bb.ToString("0.#", CultureInfo.InvariantCulture) : "not reached",
                e.Ratio is double r ? r.ToString("0.##", CultureInfo.InvariantCulture) + "x" : "> sweep",
            ]));

    /// <summary>
    /// One line for the whole curve (never its best cell): compute-optimal's geometric-mean efficiency against the
    /// baseline over the sweep's budgets (the paper: about 4x), with its 95% bootstrap interval over questions, and
    /// "not distinguishable from 1x" when the interval contains 1.
    /// </summary>
    public static string EfficiencyHeadline(StudyResult result) => EfficiencyHeadline(result.EfficiencySummary, result.Baseline);

    /// <summary>The headline of <paramref name="summary"/> against <paramref name="baseline"/>.</summary>
    public static string EfficiencyHeadline(EfficiencyInterval? summary, string baseline, string name = "compute-optimal")
    {
        if (summary is null || summary.PerBudget.Count == 0) return $"{name}: no efficiency (no compute-optimal cells or no {baseline} runs)";
        var inv = CultureInfo.InvariantCulture;
        string X(double v) => v.ToString(v < 10 ? "0.##" : "0", inv) + "x";
        var budgets = summary.PerBudget.Select(p => p.Budget).ToList();
        string verdict = summary.IncludesOne ? "not distinguishable from 1x"
            : summary.Low > 1 ? $"{name} needs less compute than {baseline}" : $"{name} needs more compute than {baseline}";
        return $"{name} vs {baseline} over budgets {budgets.Min()}-{budgets.Max()}: {X(summary.Estimate)} less compute (geometric mean over budgets; " +
               $"95% bootstrap interval over questions {X(summary.Low)}-{X(summary.High)}, {summary.Replicates} replicates): {verdict}" +
               (summary.Censored ? $" (where {baseline} never reaches compute-optimal's accuracy within the sweep, the ratio counts as largest budget / b, a lower bound)" : "");
    }

    /// <summary>Per budget: the efficiency ratio with its bootstrap interval.</summary>
    public static string EfficiencyIntervalTable(EfficiencyInterval summary)
    {
        var inv = CultureInfo.InvariantCulture;
        return MarkdownReport.Table(["budget", "ratio", "95% bootstrap interval"], summary.PerBudget.Select(p => (IReadOnlyList<string>)
            [p.Budget.ToString(inv), p.Ratio.ToString("0.##", inv) + "x", $"{p.Low.ToString("0.##", inv)}x-{p.High.ToString("0.##", inv)}x"]));
    }

    /// <summary>Difficulty bins: questions, pass@1 range and mean per oracle bin.</summary>
    public static string BinTable(StudyResult result)
    {
        var pass = result.Questions.Zip(result.Oracle).ToDictionary(t => t.First.Id, t => t.Second.PassAt1, StringComparer.Ordinal);
        return MarkdownReport.Table(["oracle bin", "questions", "pass@1 range", "mean pass@1"],
            result.OracleBins.GroupBy(kv => kv.Value).OrderBy(g => g.Key).Select(g => (IReadOnlyList<string>)
            [
                g.Key.ToString(CultureInfo.InvariantCulture), g.Count().ToString(CultureInfo.InvariantCulture),
                $"{Pct(g.Min(kv => pass[kv.Key]))} .. {Pct(g.Max(kv => pass[kv.Key]))}", Pct(g.Average(kv => pass[kv.Key])),
            ]));
    }

    /// <summary>The whole Markdown report.</summary>
    public static string Markdown(StudyResult result, string? command = null)
    {
        var c = result.Config;
        var sb = new StringBuilder();
        sb.Append($"# Study: {c.Name}\n\n");
        if (command is not null) sb.Append($"Command: `{command}`\n\n");
        sb.Append($"Models: policy `{result.Models[0]}`, PRM `{result.Models[1]}`, larger policy `{result.Models[2]}`");
        sb.Append(result.Models.Count > 3 && result.Models[3] != "none" ? $", revision model `{result.Models[3]}`.\n" : ".\n");
        sb.Append($"Questions: {result.Questions.Count} of `{c.Dataset}` (evenly spaced over lines {c.From}..{(c.To?.ToString(CultureInfo.InvariantCulture) ?? "end")}). ");
        sb.Append($"Budgets: {string.Join(", ", c.Budgets)} generations; seeds: {string.Join(", ", c.Seeds)}; ");
        sb.Append($"sampling T = {c.Temperature.ToString(CultureInfo.InvariantCulture)}, steps of at most {c.MaxStepTokens} tokens, {c.MaxRounds} rounds.\n");
        sb.Append($"Difficulty: oracle pass@1 from K = {c.OracleSamples} samples per question (the paper used 2048), {c.Bins} quantile bins (1 = easiest)");
        sb.Append(result.PredictedBins.Count > 0 ? "; predicted bins from the mean PRM final score of the same samples.\n\n" : "; no PRM, so no predicted bins.\n\n");
        foreach (var n in result.Notices) sb.Append($"> {n}\n");
        if (result.Notices.Count > 0) sb.Append('\n');

        sb.Append("## Accuracy per strategy and budget (all questions)\n\nEach cell: accuracy ±half-width of its 95% Wilson interval (mean exact FLOPs per question, policy + PRM, from the scheduler's request report).\n\n");
        sb.Append(AccuracyTable(result, null)).Append('\n');
        sb.Append("## Per oracle difficulty bin\n\n").Append(BinTable(result)).Append('\n');
        foreach (int b in result.OracleBins.Values.Distinct().Order())
            sb.Append($"### Bin {b}\n\n").Append(AccuracyTable(result, b)).Append('\n');

        sb.Append("## Compute-optimal (oracle bins, 2-fold cross-validation within each bin)\n\n");
        sb.Append(EfficiencyHeadline(result)).Append(".\n\n").Append(EfficiencyTable(result)).Append('\n');
        if (result.EfficiencySummary is { } es) sb.Append(EfficiencyIntervalTable(es)).Append('\n');
        sb.Append(CellTable(result.ComputeOptimal)).Append('\n');
        if (result.ComputeOptimalPredicted.Count > 0)
        {
            sb.Append("### With predicted bins (mean PRM score, no ground truth)\n\n");
            sb.Append(MarkdownReport.Table(["budget", "compute-optimal (predicted bins)"],
                ComputeOptimalFit.OverallCurve(result.ComputeOptimalPredicted).Select(p => (IReadOnlyList<string>)
                    [p.Budget.ToString(CultureInfo.InvariantCulture), Pct(p.Accuracy)]))).Append('\n');
        }

        string revisions = RevisionsMarkdown(result);
        if (revisions.Length > 0)
        {
            sb.Append("## Sequential revisions\n\n").Append(revisions);
            if (result.ComputeOptimalRevisions.Count > 0)
            {
                const string name = "compute-optimal revisions";
                sb.Append($"### Compute-optimal revisions (the ratio L/P chosen per oracle bin and budget, 2-fold CV) vs {result.Baseline}\n\n");
                sb.Append(EfficiencyHeadline(result.EfficiencySummaryRevisions, result.Baseline, name)).Append(".\n\n");
                sb.Append(EfficiencyTable(result.EfficiencyRevisions, result.Baseline, name)).Append('\n');
                sb.Append(CellTable(result.ComputeOptimalRevisions)).Append('\n');
            }
        }

        sb.Append("## Cost of estimating difficulty (not part of the budgets above)\n\n");
        long oraclePolicy = result.Oracle.Sum(o => o.PolicyFlops), oraclePrm = result.Oracle.Sum(o => o.PrmFlops);
        sb.Append($"- oracle samples (policy): {Flops(oraclePolicy)} in all, {Flops((double)oraclePolicy / Math.Max(1, result.Oracle.Count))} per question\n");
        sb.Append($"- predicted difficulty (PRM scoring of the same samples): {Flops(oraclePrm)} in all, {Flops((double)oraclePrm / Math.Max(1, result.Oracle.Count))} per question\n");
        sb.Append($"- {result.OracleComputed} of {result.Oracle.Count} questions' samples were drawn in this run; the rest came from the cache `{c.OracleCache}`\n");
        sb.Append($"- {result.RecordsComputed} of {result.Records.Count} sweep runs were computed in this run; the rest came from the cache `{c.RecordCache}`\n\n");

        sb.Append("## FLOPs-matched comparison\n\n");
        var fm = result.FlopsMatched;
        if (fm.Skipped is not null) sb.Append(fm.Skipped).Append(".\n\n");
        else
        {
            sb.Append($"Larger policy / policy non-embedding parameters M = {fm.SizeRatio:0.##}; greedy answer: {Flops(fm.SmallGreedyFlops)} (policy) vs {Flops(fm.LargeGreedyFlops)} (larger).\n");
            sb.Append("Small policy = compute-optimal (cross-validated) at the matched budget.\n\n");
            sb.Append("### Paper's approximation (budget = M + 3(M-1)/R generations)\n\n").Append(MarkdownReport.FlopsMatchedTable(fm.Paper)).Append('\n');
            sb.Append("### Exact FLOP counts (budget in exact FLOPs / greedy FLOPs of the policy)\n\n").Append(MarkdownReport.FlopsMatchedTable(fm.Exact)).Append('\n');
        }

        sb.Append("## Wall time\n\n");
        foreach (var (phase, t) in result.WallTimes) sb.Append($"- {phase}: {t.TotalSeconds:0.0} s\n");
        return sb.ToString();
    }

    static string CellTable(IEnumerable<ComputeOptimalCell> cells) =>
        MarkdownReport.Table(["bin", "budget", "chosen (all questions)", "chosen on fold 1 / fold 0", "held-out accuracy"],
            cells.Select(cell => (IReadOnlyList<string>)
            [
                cell.Bin.ToString(CultureInfo.InvariantCulture), cell.Budget.ToString(CultureInfo.InvariantCulture),
                cell.Final.Params.Length == 0 ? cell.Final.Strategy : $"{cell.Final.Strategy}({cell.Final.Params})",
                string.Join(" / ", cell.FoldChoices), MarkdownReport.Percent(cell.CrossValidated),
            ]));

    // Entries carry a computed Spec that only parses the paper's family names (not "best-of-n-majority"): written field by field.
    static IEnumerable<object> Cells(IEnumerable<ComputeOptimalCell> cells) => cells.Select(c => new
    {
        bin = c.Bin, budget = c.Budget, strategy = c.Final.Strategy, @params = c.Final.Params, selectedAccuracy = c.Final.Accuracy,
        foldChoices = c.FoldChoices, heldOut = c.CrossValidated,
    });

    static object Summary(StudyResult r) => new
    {
        name = r.Config.Name,
        models = r.Models,
        questions = r.Questions.Count,
        oracleSamples = r.Config.OracleSamples,
        runs = r.Records.Count,
        baseline = r.Baseline,
        efficiency = r.Efficiency,
        efficiencySummary = r.EfficiencySummary is { } es ? new { es.Estimate, es.Low, es.High, es.Replicates, es.Censored, perBudget = es.PerBudget.Select(p => new { p.Budget, p.Ratio, p.Low, p.High }) } : null,
        efficiencyRevisions = r.EfficiencyRevisions,
        notices = r.Notices,
        wallSeconds = r.WallTimes.ToDictionary(kv => kv.Key, kv => Math.Round(kv.Value.TotalSeconds, 1)),
        flopsMatched = r.FlopsMatched,
    };

    static string DifficultyCsv(StudyResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder("question_id,question,reference,pass_at_1,mean_prm_score,oracle_bin,predicted_bin,policy_flops,prm_flops\n");
        foreach (var (q, o) in r.Questions.Zip(r.Oracle))
            sb.Append(inv, $"{q.Id},{q.Question},{q.Reference},{o.PassAt1.ToString("R", inv)},{(double.IsNaN(o.MeanScore) ? "" : o.MeanScore.ToString("R", inv))},")
              .Append(inv, $"{r.OracleBins[q.Id]},{(r.PredictedBins.TryGetValue(q.Id, out int pb) ? pb.ToString(inv) : "")},{o.PolicyFlops},{o.PrmFlops}\n");
        return sb.ToString();
    }

    /// <summary>"12.3 MF" / "4.56 GF".</summary>
    public static string Flops(double flops) => flops switch
    {
        >= 1e12 => (flops / 1e12).ToString("0.##", CultureInfo.InvariantCulture) + " TF",
        >= 1e9 => (flops / 1e9).ToString("0.##", CultureInfo.InvariantCulture) + " GF",
        >= 1e6 => (flops / 1e6).ToString("0.#", CultureInfo.InvariantCulture) + " MF",
        _ => flops.ToString("0", CultureInfo.InvariantCulture) + " F",
    };

    static string Pct(double v) => (v * 100).ToString("0.0", CultureInfo.InvariantCulture) + "%";

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
}
