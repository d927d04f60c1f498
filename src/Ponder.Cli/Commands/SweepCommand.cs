using System.CommandLine;
using System.Diagnostics;
using Ponder.Cluster;
using Ponder.Evaluation.Study;
using Spectre.Console;

namespace Ponder.Cli.Commands;

/// <summary><c>ponder sweep --config FILE [--out DIR]</c>: runs a study (configs/study-*.json) and writes its report, CSV, JSON and plots.</summary>
public static class SweepCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config", "-c") { Description = "Study config JSON (e.g. configs/study-demo.json)", Required = true };
        var outDir = new Option<string?>("--out", "-o") { Description = "Output folder (default: out/<study name>)" };
        var threads = CliCommon.ThreadsOption();
        var verifiers = new Option<string[]>("--verifier")
        {
            Description = "Run the study once per verifier (a PRM path, exact, random, noisy:<auc>, or shared:<policy with a value row>) and write the verifier-quality axis (repeatable)",
            AllowMultipleArgumentsPerToken = true,
        };
        var cluster = ClusterCommands.ClusterOption(required: false,
            "Run the sweep's jobs on a cluster of silos (ponder silo): a Redis connection string, or dev (one machine, localhost clustering)");
        var gateways = ClusterCommands.GatewaysOption();
        var cmd = new Command("sweep", "Run the paper's study: oracle difficulty, strategy x budget sweep, compute-optimal fit, FLOPs-matched comparison")
        {
            config, outDir, threads, verifiers, cluster, gateways,
        };
        cmd.SetAction((r, ct) => CliCommon.Guard(() =>
        {
            string command = $"ponder sweep --config {r.GetValue(config)}";
            var list = r.GetValue(verifiers) ?? [];
            if (r.GetValue(cluster) is { } on)
            {
                if (list.Length > 0) throw new ArgumentException("--cluster runs one study; --verifier is not supported with it");
                return ClusterCommands.SweepAsync(r.GetValue(config)!, on, r.GetValue(gateways), Directory.GetCurrentDirectory(), r.GetValue(outDir), r.GetValue(threads),
                    command + $" --cluster {(PonderCluster.IsDev(on) ? on : "<redis>")}", ct);
            }
            return list.Length == 0
                ? RunAsync(r.GetValue(config)!, Directory.GetCurrentDirectory(), r.GetValue(outDir), r.GetValue(threads), command, ct)
                : VerifierAxisAsync(r.GetValue(config)!, list, Directory.GetCurrentDirectory(), r.GetValue(outDir), r.GetValue(threads),
                    command + string.Concat(list.Select(v => $" --verifier {v}")), ct);
        }));
        return cmd;
    }

    /// <summary>
    /// The verifier-quality axis: the config's study once per verifier (each study's report in its own subfolder), then
    /// every verifier placed at its measured within-question AUC in one table and set of plots.
    /// </summary>
    static async Task<int> VerifierAxisAsync(string configPath, string[] verifiers, string baseDirectory, string? outDir, int? threads, string command, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var config = StudyConfig.Load(Path.GetFullPath(configPath, baseDirectory));
        string output = Path.GetFullPath(outDir ?? Path.Combine("out", config.Name), baseDirectory);
        var points = new List<VerifierPoint>();
        var bins = new SortedSet<int>();
        foreach (string verifier in verifiers)
        {
            string slug = new string([.. verifier.Select(ch => char.IsLetterOrDigit(ch) || ch is '.' or '-' ? ch : '-')]).Trim('-');
            // "shared:<policy>" is a policy with its own value row: it replaces the policy (same LM weights) and scores its steps.
            var one = verifier.StartsWith("shared:", StringComparison.Ordinal)
                ? config with { Prm = StudyConfig.SharedPrm, Policy = verifier["shared:".Length..], Name = $"{config.Name}-{slug}", LargePolicy = null }
                : config with { Prm = verifier, Name = $"{config.Name}-{slug}", LargePolicy = null };
            AnsiConsole.MarkupLine($"[bold]Verifier[/] [blue]{Markup.Escape(verifier)}[/]");
            var result = await StudyAsync(one, baseDirectory, threads, ct);
            StudyReport.Write(result, Path.Combine(output, slug), command);
            if (!result.Models[1].Equals("none", StringComparison.Ordinal)) points.Add(VerifierQuality.Point(verifier, result));
            foreach (int b in result.OracleBins.Values) bins.Add(b);
        }
        var files = VerifierQuality.Write(points, config.Budgets, [.. bins], output, command);
        Console.WriteLine(VerifierQuality.Markdown(points.OrderBy(p => p.WithinQuestionAuc).ToList(), config.Budgets, [], null));
        AnsiConsole.MarkupLine($"Wrote {files.Count} files to [blue]{Markup.Escape(output)}[/] in {clock.Elapsed.TotalSeconds:0} s");
        return 0;
    }

    /// <summary>Loads a study's models and runs it with progress bars on stderr (its sweep on <paramref name="executor"/> when given).</summary>
    static async Task<StudyResult> StudyAsync(StudyConfig config, string baseDirectory, int? threads, CancellationToken ct, IStudySweepExecutor? executor = null)
    {
        if (threads is not null) config = config with { Threads = threads };
        void Notice(string text) => AnsiConsole.MarkupLine($"[yellow]notice:[/] {Markup.Escape(text)}");
        using var models = await StudyModels.LoadAsync(config, baseDirectory, Notice, ct);
        StudyResult? result = null;
        await CliCommon.Progress().StartAsync(async ctx =>
        {
            var tasks = new Dictionary<string, ProgressTask>();
            var progress = new Progress<StudyProgress>(p =>
            {
                if (!tasks.TryGetValue(p.Phase, out var task)) tasks[p.Phase] = task = ctx.AddTask(p.Phase, maxValue: Math.Max(1, p.Total));
                task.MaxValue = Math.Max(1, p.Total);
                task.Value = p.Total == 0 ? 1 : p.Done;
                if (p.Detail is not null) task.Description = Markup.Escape($"{p.Phase}: {p.Detail}");
            });
            result = await StudyRunner.RunAsync(config, models, baseDirectory, progress, Notice, ct, executor);
        });
        return result!;
    }

    /// <summary>
    /// Loads the config and its models, runs the study with progress bars on stderr, writes the outputs and prints the
    /// key tables. Relative paths in the config resolve against <paramref name="baseDirectory"/>.
    /// </summary>
    internal static async Task<int> RunAsync(string configPath, string baseDirectory, string? outDir, int? threads, string command, CancellationToken ct)
    {
        await RunStudyAsync(StudyConfig.Load(Path.GetFullPath(configPath, baseDirectory)), baseDirectory, outDir, threads, command, ct);
        return 0;
    }

    /// <summary><see cref="RunAsync"/> on a config already read; returns the result.</summary>
    internal static async Task<StudyResult> RunStudyAsync(StudyConfig config, string baseDirectory, string? outDir, int? threads, string command, CancellationToken ct,
        IStudySweepExecutor? executor = null)
    {
        var clock = Stopwatch.StartNew();
        string output = Path.GetFullPath(outDir ?? Path.Combine("out", config.Name), baseDirectory);
        AnsiConsole.MarkupLine($"[bold]Study[/] [blue]{Markup.Escape(config.Name)}[/]: {config.Questions} questions, K = {config.OracleSamples} oracle samples, budgets {string.Join(", ", config.Budgets)}");
        var result = await StudyAsync(config, baseDirectory, threads, ct, executor);
        var files = StudyReport.Write(result!, output, command);
        Console.WriteLine();
        Console.WriteLine("Accuracy per strategy and budget, all questions (mean exact FLOPs per question):");
        Console.WriteLine(StudyReport.AccuracyTable(result!, null));
        Console.WriteLine("Oracle difficulty bins:");
        Console.WriteLine(StudyReport.BinTable(result!));
        foreach (int b in result!.OracleBins.Values.Distinct().Order())
        {
            Console.WriteLine($"Bin {b}:");
            Console.WriteLine(StudyReport.AccuracyTable(result, b));
        }
        Console.WriteLine($"Compute-optimal vs {result.Baseline}:");
        Console.WriteLine(StudyReport.EfficiencyTable(result));
        Console.WriteLine(StudyReport.EfficiencyHeadline(result));
        if (result.FlopsMatched.Skipped is not null) AnsiConsole.MarkupLine($"[yellow]{Markup.Escape(result.FlopsMatched.Skipped)}[/]");
        AnsiConsole.MarkupLine($"Wrote {files.Count} files to [blue]{Markup.Escape(output)}[/] (report.md, records.csv, plots/) in {clock.Elapsed.TotalSeconds:0} s");
        return result;
    }
}
