using ScottPlot;

namespace Ponder.Evaluation.Reports;

/// <summary>
/// Plots that mirror the paper's figures, each written as PNG and SVG (<c>path</c> is given without extension).
/// Budgets go on a log2 axis labelled 1, 2, 4, ...; accuracies on [0, 1].
/// </summary>
public static class StudyPlots
{
    const int Width = 1050, Height = 520;

    /// <summary>Accuracy vs generation budget, one line (with Wilson interval bars) per configuration (paper figures 3, 7, 9).</summary>
    public static IReadOnlyList<string> AccuracyVsBudget(string path, string title,
        IReadOnlyDictionary<string, List<(int Budget, AccuracyEstimate Accuracy)>> series)
    {
        ArgumentNullException.ThrowIfNull(series);
        var plot = new Plot();
        var budgets = new SortedSet<int>();
        int colour = 0;
        foreach (var (name, points) in series)
        {
            if (points.Count == 0) continue;
            double[] xs = points.Select(p => Math.Log2(p.Budget)).ToArray();
            var color = Palette.GetColor(colour++);
            var line = plot.Add.Scatter(xs, points.Select(p => p.Accuracy.Value).ToArray());
            line.LegendText = name;
            line.Color = color;
            // Reference curves (coverage, verifier-free voting) are dashed: ceilings and baselines, not strategies.
            if (name.Contains("@N", StringComparison.Ordinal)) line.LinePattern = LinePattern.Dashed;
            // Wilson intervals are asymmetric: negative and positive y errors separately.
            var bars = new ScottPlot.Plottables.ErrorBar(xs, points.Select(p => p.Accuracy.Value).ToArray(), null, null,
                points.Select(p => p.Accuracy.Value - p.Accuracy.Low).ToArray(),
                points.Select(p => p.Accuracy.High - p.Accuracy.Value).ToArray()) { Color = color };
            plot.Add.Plottable(bars);
            foreach (var p in points) budgets.Add(p.Budget);
        }
        Log2Axis(plot, budgets);
        return Save(plot, path, title, "generation budget (log2)", "accuracy");
    }

    /// <summary>The same per difficulty bin: one file per bin, <c>{prefix}-bin{b}</c> (paper figures 3 right, 4).</summary>
    public static IReadOnlyList<string> AccuracyVsBudgetPerBin(string directory, string prefix, string title,
        IReadOnlyDictionary<int, Dictionary<string, List<(int Budget, AccuracyEstimate Accuracy)>>> seriesByBin)
    {
        ArgumentNullException.ThrowIfNull(seriesByBin);
        var files = new List<string>();
        foreach (var (bin, series) in seriesByBin.OrderBy(kv => kv.Key))
            files.AddRange(AccuracyVsBudget(Path.Combine(directory, $"{prefix}-bin{bin}"), $"{title}, difficulty bin {bin}", series));
        return files;
    }

    /// <summary>Compute-optimal (cross-validated) vs best-of-N, accuracy vs budget (paper figures 4 and 8).</summary>
    public static IReadOnlyList<string> ComputeOptimalVsBestOfN(string path, IReadOnlyList<CurvePoint> bestOfN, IReadOnlyList<CurvePoint> computeOptimal)
    {
        var plot = new Plot();
        var budgets = new SortedSet<int>();
        int colour = 0;
        foreach (var (name, curve) in new[] { ("best-of-N weighted", bestOfN), ("compute-optimal", computeOptimal) })
        {
            var line = plot.Add.Scatter(curve.Select(p => Math.Log2(p.Budget)).ToArray(), curve.Select(p => p.Accuracy).ToArray());
            line.LegendText = name;
            line.Color = Palette.GetColor(colour++);
            foreach (var p in curve) budgets.Add((int)Math.Round(p.Budget));
        }
        Log2Axis(plot, budgets);
        return Save(plot, path, "Compute-optimal scaling vs best-of-N", "generation budget (log2)", "accuracy");
    }

    /// <summary>Pass@1 of each revision step (paper figure 6 right): one line per series, x = revision step (1-based).</summary>
    public static IReadOnlyList<string> RevisionsByStep(string path, IReadOnlyDictionary<string, IReadOnlyList<double>> passAt1ByStep)
    {
        ArgumentNullException.ThrowIfNull(passAt1ByStep);
        var plot = new Plot();
        int colour = 0;
        foreach (var (name, values) in passAt1ByStep)
        {
            var line = plot.Add.Scatter(Enumerable.Range(1, values.Count).Select(i => (double)i).ToArray(), values.ToArray());
            line.LegendText = name;
            line.Color = Palette.GetColor(colour++);
        }
        return Save(plot, path, "Revisions: pass@1 at each revision step", "revision step", "pass@1");
    }

    /// <summary>
    /// Accuracy vs sequential/parallel ratio L/P, one line per difficulty bin (bin 0 = all questions; paper figure 7
    /// right); x labels are the ratios in the given order.
    /// </summary>
    public static IReadOnlyList<string> SequentialParallelRatio(string path, int budget, IReadOnlyList<string> ratioLabels,
        IReadOnlyDictionary<int, IReadOnlyList<double>> accuracyByBin)
    {
        ArgumentNullException.ThrowIfNull(ratioLabels);
        ArgumentNullException.ThrowIfNull(accuracyByBin);
        var plot = new Plot();
        double[] xs = Enumerable.Range(0, ratioLabels.Count).Select(i => (double)i).ToArray();
        int colour = 0;
        foreach (var (bin, acc) in accuracyByBin.OrderBy(kv => kv.Key))
        {
            if (acc.Count != ratioLabels.Count)
                throw new ArgumentException($"bin {bin} has {acc.Count} accuracies for {ratioLabels.Count} ratios", nameof(accuracyByBin));
            var line = plot.Add.Scatter(xs, acc.ToArray());
            line.LegendText = bin == 0 ? "all questions" : $"bin {bin}";
            line.Color = Palette.GetColor(colour++);
        }
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(xs, ratioLabels.ToArray());
        return Save(plot, path, $"Sequential/parallel ratio at budget {budget}", "sequential/parallel ratio", "accuracy");
    }

    /// <summary>
    /// FLOPs-matched comparison (paper figure 9): bars of (small + test-time compute) − (large greedy) accuracy per bin,
    /// one bar group per R. Above 0: test-time compute wins.
    /// </summary>
    public static IReadOnlyList<string> FlopsMatchedBars(string path, IReadOnlyList<FlopsMatchedRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var plot = new Plot();
        var ratios = rows.Select(r => r.R).Distinct().Order().ToList();
        var bins = rows.Select(r => r.Bin).Distinct().Order().ToList();
        double group = ratios.Count + 1;
        var legend = new List<LegendItem>();
        for (int k = 0; k < ratios.Count; k++)
        {
            var color = Palette.GetColor(k);
            var bars = rows.Where(r => r.R == ratios[k]).Select(r => new Bar
            {
                Position = bins.IndexOf(r.Bin) * group + k,
                Value = r.Advantage,
                FillColor = color,
            }).ToList();
            plot.Add.Bars(bars);
            legend.Add(new LegendItem { LabelText = $"R = {ratios[k]:0.##}", FillColor = color });
        }
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            bins.Select((_, i) => i * group + (ratios.Count - 1) / 2.0).ToArray(), bins.Select(b => b == 0 ? "all" : $"bin {b}").ToArray());
        plot.ShowLegend(legend);
        plot.Add.HorizontalLine(0, 1, Colors.Black);
        return Save(plot, path, "FLOPs-matched: test-time compute minus larger model", "difficulty bin", "accuracy difference");
    }

    /// <summary>
    /// One line per series over a linear x axis (e.g. accuracy against a verifier's measured within-question AUC),
    /// points labelled by name where given.
    /// </summary>
    public static IReadOnlyList<string> LinesOverX(string path, string title, string xLabel, string yLabel,
        IReadOnlyDictionary<string, IReadOnlyList<(double X, double Y)>> series, bool logY = false)
    {
        ArgumentNullException.ThrowIfNull(series);
        var plot = new Plot();
        int colour = 0;
        foreach (var (name, points) in series)
        {
            var ordered = points.Where(p => !double.IsNaN(p.X) && !double.IsNaN(p.Y)).OrderBy(p => p.X).ToList();
            if (ordered.Count == 0) continue;
            var line = plot.Add.Scatter(ordered.Select(p => p.X).ToArray(), ordered.Select(p => logY ? Math.Log2(p.Y) : p.Y).ToArray());
            line.LegendText = name;
            line.Color = Palette.GetColor(colour++);
        }
        if (logY)
        {
            double[] ticks = [0.125, 0.25, 0.5, 1, 2, 4, 8, 16];
            plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.Select(Math.Log2).ToArray(),
                ticks.Select(t => t.ToString(System.Globalization.CultureInfo.InvariantCulture) + "x").ToArray());
        }
        return Save(plot, path, title, xLabel, yLabel);
    }

    static readonly ScottPlot.Palettes.Category20 Palette = new();

    static void Log2Axis(Plot plot, IEnumerable<int> budgets)
    {
        var b = budgets.Where(x => x > 0).ToArray();
        if (b.Length == 0) return;
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            b.Select(x => Math.Log2(x)).ToArray(), b.Select(x => x.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray());
    }

    static IReadOnlyList<string> Save(Plot plot, string path, string title, string xLabel, string yLabel)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        // Outside the data area: with a dozen configurations an inside legend hides curves.
        if (plot.PlottableList.Any(p => p is ScottPlot.Plottables.Scatter)) plot.ShowLegend(Edge.Right);
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        string png = path + ".png", svg = path + ".svg";
        plot.SavePng(png, Width, Height);
        plot.SaveSvg(svg, Width, Height);
        return [png, svg];
    }
}
