using Ponder.Evaluation;
using Ponder.Evaluation.Reports;

namespace Ponder.Training.Tests.Evaluation;

public sealed class ReportTests
{
    static Dictionary<string, List<(int Budget, AccuracyEstimate Accuracy)>> Series() => new()
    {
        ["best-of-n"] = [(1, AccuracyEstimate.Wilson(3, 10)), (4, AccuracyEstimate.Wilson(5, 10)), (16, AccuracyEstimate.Wilson(6, 10))],
        ["beam(M=2)"] = [(4, AccuracyEstimate.Wilson(6, 10)), (16, AccuracyEstimate.Wilson(7, 10))],
    };

    [Fact]
    public void Every_plot_is_written_as_png_and_svg()
    {
        var dir = Directory.CreateTempSubdirectory("ponder-plots-");
        try
        {
            var files = new List<string>();
            files.AddRange(StudyPlots.AccuracyVsBudget(Path.Combine(dir.FullName, "accuracy"), "Accuracy vs budget", Series()));
            files.AddRange(StudyPlots.AccuracyVsBudgetPerBin(dir.FullName, "accuracy", "Accuracy",
                Enumerable.Range(1, 5).ToDictionary(b => b, _ => Series())));
            files.AddRange(StudyPlots.ComputeOptimalVsBestOfN(Path.Combine(dir.FullName, "optimal"),
                [new(1, 0.3), new(4, 0.5)], [new(1, 0.4), new(4, 0.6)]));
            files.AddRange(StudyPlots.RevisionsByStep(Path.Combine(dir.FullName, "revisions"),
                new Dictionary<string, IReadOnlyList<double>> { ["revision model"] = [0.3, 0.35, 0.37, 0.38] }));
            files.AddRange(StudyPlots.SequentialParallelRatio(Path.Combine(dir.FullName, "ratio"), 64, ["1/64", "1/16", "1", "16", "64"],
                Enumerable.Range(1, 5).ToDictionary(b => b, b => (IReadOnlyList<double>)[0.9 / b, 0.92 / b, 0.95 / b, 0.97 / b, 0.96 / b])));
            files.AddRange(StudyPlots.FlopsMatchedBars(Path.Combine(dir.FullName, "flops"),
                [new(1, 0.16, 257.75, 0.95, 0.9, false), new(1, 22, 15.8, 0.93, 0.9, false), new(5, 0.16, 257.75, 0.05, 0.2, false), new(5, 22, 15.8, 0.03, 0.2, false)]));

            Assert.Equal(2 * (1 + 5 + 4), files.Count);
            foreach (var f in files)
            {
                Assert.True(File.Exists(f), f);
                Assert.True(new FileInfo(f).Length > 5_000, $"{f} is only {new FileInfo(f).Length} bytes");
            }
            var png = File.ReadAllBytes(files[0]);
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
            Assert.Contains("<svg", File.ReadAllText(files[1]));
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void Markdown_tables_list_accuracy_with_intervals_per_budget()
    {
        var md = MarkdownReport.AccuracyTable(Series());
        var lines = md.TrimEnd('\n').Split('\n');
        Assert.Equal("| strategy | 1 | 4 | 16 |", lines[0]);
        Assert.Equal("|---|---|---|---|", lines[1]);
        Assert.Equal("| best-of-n | 30.0% [10.8, 60.3] | 50.0% [23.7, 76.3] | 60.0% [31.3, 83.2] |", lines[2]);
        Assert.Equal("| beam(M=2) |  | 60.0% [31.3, 83.2] | 70.0% [39.7, 89.2] |", lines[3]);
        var flops = MarkdownReport.FlopsMatchedTable([new(2, 0.16, 257.75, 0.5, 0.6, true)]);
        Assert.Contains("| 2 | 0.16 | 257.75 (outside sweep) | 50.0% | 60.0% | -10.0% |", flops);
        Assert.Throws<ArgumentException>(() => MarkdownReport.Table(["a", "b"], [["1"]]));
    }
}
