using System.CommandLine;

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
            return SweepCommand.RunAsync(path, root, r.GetValue(outDir) ?? Path.Combine("out", "study-demo"), r.GetValue(threads), "ponder demo", ct);
        }));
        return cmd;
    }

    /// <summary>The folder holding Engine.sln above the executable (so the demo finds weights/ and configs/ from anywhere), else the working directory.</summary>
    static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) return dir.FullName;
        return Directory.GetCurrentDirectory();
    }
}
