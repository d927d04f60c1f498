using System.Globalization;
using System.Text;

namespace Ponder.Evaluation.Reports;

/// <summary>Markdown tables of a study's results.</summary>
public static class MarkdownReport
{
    /// <summary>A Markdown table; cells containing '|' are escaped.</summary>
    public static string Table(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows)
    {
        ArgumentNullException.ThrowIfNull(headers);
        var sb = new StringBuilder();
        sb.Append("| ").AppendJoin(" | ", headers.Select(Escape)).Append(" |\n");
        sb.Append('|').AppendJoin("|", headers.Select(_ => "---")).Append("|\n");
        foreach (var row in rows)
        {
            if (row.Count != headers.Count)
                throw new ArgumentException($"table row has {row.Count} cells, the header {headers.Count}", nameof(rows));
            sb.Append("| ").AppendJoin(" | ", row.Select(Escape)).Append(" |\n");
        }
        return sb.ToString();
    }

    /// <summary>Accuracy per configuration (rows) and budget (columns): "acc [low, high]" as percentages.</summary>
    public static string AccuracyTable(IReadOnlyDictionary<string, List<(int Budget, AccuracyEstimate Accuracy)>> series)
    {
        ArgumentNullException.ThrowIfNull(series);
        var budgets = series.Values.SelectMany(s => s.Select(p => p.Budget)).Distinct().Order().ToList();
        var headers = new List<string> { "strategy" };
        headers.AddRange(budgets.Select(b => b.ToString(CultureInfo.InvariantCulture)));
        var rows = series.Select(kv =>
        {
            var row = new List<string> { kv.Key };
            row.AddRange(budgets.Select(b => kv.Value.Where(p => p.Budget == b).Select(p => Percent(p.Accuracy)).FirstOrDefault() ?? ""));
            return (IReadOnlyList<string>)row;
        });
        return Table(headers, rows);
    }

    /// <summary>FLOPs-matched rows: bin, R, multiplier, small and large accuracies, difference.</summary>
    public static string FlopsMatchedTable(IEnumerable<FlopsMatchedRow> rows) =>
        Table(["bin", "R", "budget (x greedy)", "small + test-time", "large greedy", "difference"],
            rows.Select(r => (IReadOnlyList<string>)
            [
                r.Bin == 0 ? "all" : r.Bin.ToString(CultureInfo.InvariantCulture),
                r.R.ToString("0.##", CultureInfo.InvariantCulture),
                r.Multiplier.ToString("0.##", CultureInfo.InvariantCulture) + (r.Extrapolated ? " (outside sweep)" : ""),
                r.SmallAccuracy.ToString("0.0%", CultureInfo.InvariantCulture),
                r.LargeAccuracy.ToString("0.0%", CultureInfo.InvariantCulture),
                r.Advantage.ToString("+0.0%;-0.0%;0.0%", CultureInfo.InvariantCulture),
            ]));

    /// <summary>"62.5% [40.9, 80.0]".</summary>
    public static string Percent(AccuracyEstimate a) =>
        string.Create(CultureInfo.InvariantCulture, $"{a.Value * 100:0.0}% [{a.Low * 100:0.0}, {a.High * 100:0.0}]");

    static string Escape(string s) => s.Replace("|", "\\|").Replace("\n", " ");
}
