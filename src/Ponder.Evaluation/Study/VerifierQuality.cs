using System.Globalization;
using System.Text;
using System.Text.Json;
using Ponder.Evaluation.Reports;
using Ponder.Tasks;

namespace Ponder.Evaluation.Study;

/// <summary>One verifier's study, reduced to where it sits on the verifier-quality axis.</summary>
/// <param name="Verifier">The study's "prm" value (a model path, "exact", "noisy:q", "random").</param>
/// <param name="Fingerprint">Its identity (model fingerprint or checker name).</param>
/// <param name="WithinQuestionAuc">Mean AUC of final-step scores within a question over the study's oracle samples (questions with both correct and incorrect samples).</param>
/// <param name="MixedQuestions">How many such questions.</param>
/// <param name="Accuracy">Accuracy per (configuration, bin (0 = all), budget).</param>
/// <param name="Efficiency">Compute-optimal's efficiency over the whole curve with its interval.</param>
/// <param name="ScoringFlopsPerRun">Mean PRM FLOPs per verifier-using run (0 for checkers: not counted).</param>
public sealed record VerifierPoint(string Verifier, string Fingerprint, double WithinQuestionAuc, int MixedQuestions,
    IReadOnlyDictionary<string, double> Accuracy, EfficiencyInterval? Efficiency, double ScoringFlopsPerRun)
{
    /// <summary>The key of <see cref="Accuracy"/>.</summary>
    public static string Key(string configuration, int bin, int budget) => string.Create(CultureInfo.InvariantCulture, $"{configuration}|{bin}|{budget}");
}

/// <summary>
/// Verifier quality as an axis: the same study (questions, oracle samples, strategies, budgets, seeds) run once per
/// verifier (learned PRMs and degraded copies of the exact checker), each placed at its measured within-question AUC,
/// so the figure shows at what verifier quality beam search overtakes best-of-N and compute-optimal pays off.
/// </summary>
public static class VerifierQuality
{
    /// <summary>The configurations the axis tables show.</summary>
    public static readonly string[] Shown = ["best-of-n", "beam(M=sqrt)", "beam(M=4)", StudyReport.ComputeOptimalName];

    /// <summary>Reduces a finished study to its point on the axis.</summary>
    public static VerifierPoint Point(string verifier, StudyResult result)
    {
        // Entries without scores (no verifier) carry NaN and are left out.
        var (auc, mixed) = Metrics.MeanAucWithin(result.Oracle.SelectMany((o, q) => o.Samples.Where(s => !double.IsNaN(s.Score))
            .Select(s => (q, (float)s.Score, s.Correct))));
        var accuracy = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (int bin in result.OracleBins.Values.Distinct().Append(0))
            foreach (var (name, curve) in StudyReport.Series(result, bin == 0 ? null : bin))
                foreach (var (budget, estimate) in curve)
                    accuracy[VerifierPoint.Key(name, bin, budget)] = estimate.Value;
        var verifying = result.Records.Where(r => r.Strategy != "best-of-n-majority").ToList();
        return new VerifierPoint(verifier, result.Models[1], auc, mixed, accuracy, result.EfficiencySummary,
            verifying.Count == 0 ? 0 : verifying.Average(r => (double)r.PrmFlops));
    }

    /// <summary>Writes the axis tables (Markdown), the points (JSON) and the plots; returns the files.</summary>
    public static List<string> Write(IReadOnlyList<VerifierPoint> points, IReadOnlyList<int> budgets, IReadOnlyList<int> bins, string outDirectory, string? command)
    {
        Directory.CreateDirectory(outDirectory);
        var files = new List<string>();
        var ordered = points.OrderBy(p => p.WithinQuestionAuc).ToList();
        string json = Path.Combine(outDirectory, "verifier_quality.json");
        File.WriteAllText(json, JsonSerializer.Serialize(ordered, new JsonSerializerOptions { WriteIndented = true, IncludeFields = true,
            NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals }));
        files.Add(json);
        string md = Path.Combine(outDirectory, "verifier_quality.md");
        File.WriteAllText(md, Markdown(ordered, budgets, bins, command));
        files.Add(md);
        string plots = Path.Combine(outDirectory, "plots");
        foreach (int budget in budgets)
            foreach (int bin in bins.Prepend(0))
            {
                var series = Shown.ToDictionary(c => c, c => (IReadOnlyList<(double, double)>)[.. ordered
                    .Where(p => p.Accuracy.ContainsKey(VerifierPoint.Key(c, bin, budget)))
                    .Select(p => (p.WithinQuestionAuc, p.Accuracy[VerifierPoint.Key(c, bin, budget)]))]);
                string where = bin == 0 ? "all questions" : $"bin {bin}";
                files.AddRange(StudyPlots.LinesOverX(Path.Combine(plots, $"accuracy-vs-verifier-auc-b{budget}{(bin == 0 ? "" : $"-bin{bin}")}"),
                    $"Accuracy at {budget} generations vs verifier quality ({where})", "verifier's mean within-question AUC (measured)", "accuracy", series));
            }
        var efficiency = new Dictionary<string, IReadOnlyList<(double, double)>>
        {
            ["compute-optimal efficiency (geometric mean over budgets)"] = [.. ordered.Where(p => p.Efficiency is not null).Select(p => (p.WithinQuestionAuc, p.Efficiency!.Estimate))],
            ["95% interval, low"] = [.. ordered.Where(p => p.Efficiency is not null).Select(p => (p.WithinQuestionAuc, p.Efficiency!.Low))],
            ["95% interval, high"] = [.. ordered.Where(p => p.Efficiency is not null).Select(p => (p.WithinQuestionAuc, p.Efficiency!.High))],
        };
        files.AddRange(StudyPlots.LinesOverX(Path.Combine(plots, "efficiency-vs-verifier-auc"), "Compute-optimal vs best-of-N: efficiency vs verifier quality",
            "verifier's mean within-question AUC (measured)", "best-of-N compute / compute-optimal compute", efficiency, logY: true));
        return files;
    }

    /// <summary>The axis as Markdown tables: one row per verifier, accuracy per configuration and budget, overall and per bin.</summary>
    public static string Markdown(IReadOnlyList<VerifierPoint> points, IReadOnlyList<int> budgets, IReadOnlyList<int> bins, string? command)
    {
        var inv = CultureInfo.InvariantCulture;
        string P(IReadOnlyDictionary<string, double> a, string key) => a.TryGetValue(key, out double v) ? (v * 100).ToString("0.0", inv) : "-";
        var sb = new StringBuilder("# Verifier quality as an axis\n\n");
        if (command is not null) sb.Append($"Command: `{command}`\n\n");
        sb.Append("Each row is the same study with another verifier, placed at its mean within-question AUC measured on the study's own oracle samples. ");
        sb.Append("Checkers (exact, noisy, random) cost no FLOPs (not counted); learned PRMs' scoring FLOPs are their exact counts.\n\n");
        foreach (int bin in bins.Prepend(0))
        {
            sb.Append(bin == 0 ? "## All questions\n\n" : $"## Bin {bin}\n\n");
            var header = new List<string> { "verifier", "within-question AUC (mixed q.)" };
            foreach (int b in budgets) foreach (var c in Shown) header.Add($"{Short(c)} @{b}");
            if (bin == 0) header.Add("compute-optimal efficiency (95% interval)");
            sb.Append("| " + string.Join(" | ", header) + " |\n|" + string.Concat(header.Select(_ => "---|")) + "\n");
            foreach (var p in points)
            {
                var row = new List<string> { p.Verifier, string.Create(inv, $"{p.WithinQuestionAuc:0.000} ({p.MixedQuestions})") };
                foreach (int b in budgets) foreach (var c in Shown) row.Add(P(p.Accuracy, VerifierPoint.Key(c, bin, b)));
                if (bin == 0) row.Add(p.Efficiency is { } e ? string.Create(inv, $"{e.Estimate:0.##}x ({e.Low:0.##}-{e.High:0.##}x)") : "-");
                sb.Append("| " + string.Join(" | ", row) + " |\n");
            }
            var cover = points.FirstOrDefault();
            if (cover is not null)
                sb.Append("\nReferences (oracle samples, the same for every verifier): " + string.Join("; ", budgets.Select(b =>
                    $"@{b}: pass@N {P(cover.Accuracy, VerifierPoint.Key(StudyReport.PassAtNName, bin, b))}%, majority@N {P(cover.Accuracy, VerifierPoint.Key(StudyReport.MajorityAtNName, bin, b))}%")) + ".\n\n");
        }
        return sb.ToString();
    }

    static string Short(string configuration) => configuration == StudyReport.ComputeOptimalName ? "compute-optimal" : configuration;
}
