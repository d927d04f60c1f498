using System.CommandLine;
using Ponder.Evaluation.Study;
using Spectre.Console;
using Ponder.Tasks;

namespace Ponder.Cli.Commands;

/// <summary>
/// <c>ponder demo</c>: the README's main command. Runs the reduced study (configs/study-demo.json) on the shipped
/// models and prints the accuracy per strategy, budget and difficulty bin with exact FLOPs, and writes the plots.
/// </summary>
public static class DemoCommand
{
    public static Command Create()
    {
        var outDir = new Option<string?>("--out", "-o") { Description = "Output folder (default: out/study-demo under the repository)" };
        var config = new Option<string?>("--config", "-c") { Description = "Study config (default: configs/study-demo.json)" };
        var threads = CliCommon.ThreadsOption();
        var cmd = new Command("demo", "Run the reduced study (best-of-N vs beam search vs majority vs compute-optimal) on the shipped models") { outDir, config, threads };
        cmd.SetAction((r, ct) => CliCommon.Guard(() =>
        {
            string root = RepositoryRoot();
            string path = r.GetValue(config) ?? Path.Combine("configs", "study-demo.json");
            return RunAsync(path, root, r.GetValue(outDir) ?? Path.Combine("out", "study-demo"), r.GetValue(threads), ct);
        }));
        return cmd;
    }

    /// <summary>
    /// The study with the config's learned PRM, then the same questions with the task's exact step checker as the
    /// verifier (a control: it costs no FLOPs and knows the truth), so the demo shows what test-time compute is worth with
    /// the verifier we have and with a perfect one, each headline over the whole curve.
    /// </summary>
    static async Task<int> RunAsync(string path, string root, string outDir, int? threads, CancellationToken ct)
    {
        var config = StudyConfig.Load(Path.GetFullPath(path, root));
        var learned = await SweepCommand.RunStudyAsync(config, root, outDir, threads, "ponder demo", ct);
        if (config.Prm is null || config.UsesSharedPrm || Ponder.Tasks.ArithmeticStepChecker.Parse(config.Prm) is not null) return 0;
        Console.WriteLine();
        AnsiConsole.MarkupLine("[bold]Control[/]: the same questions with the task's exact step checker as the verifier (no model, 0 FLOPs)");
        var exact = await SweepCommand.RunStudyAsync(config with { Prm = Ponder.Tasks.ArithmeticStepChecker.ExactName, Name = config.Name + "-exact", LargePolicy = null },
            root, Path.Combine(outDir, "exact"), threads, "ponder demo (exact-checker control)", ct);
        Console.WriteLine();
        AnsiConsole.MarkupLine($"[bold]With the learned PRM[/] ({Markup.Escape(learned.Models[1])}): {Markup.Escape(StudyReport.EfficiencyHeadline(learned))}");
        AnsiConsole.MarkupLine($"[bold]With the exact checker[/]: {Markup.Escape(StudyReport.EfficiencyHeadline(exact))}");
        return 0;
    }

    /// <summary>The folder holding Engine.sln above the executable (so the demo finds weights/ and configs/ from anywhere), else the working directory.</summary>
    static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) return dir.FullName;
        return Directory.GetCurrentDirectory();
    }
}
