using System.CommandLine;
using Ponder.Sampling;
using Spectre.Console;

namespace Ponder.Cli.Commands;

/// <summary><c>ponder demo</c>: the README's main command.</summary>
public static class DemoCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model", "-m") { Description = "Model (default: weights/policy-small when present, else random:tiny)" };
        var cmd = new Command("demo", "Generate answers to a few arithmetic-chain questions") { model };
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            string path = r.GetValue(model) ?? DefaultModel();
            AnsiConsole.MarkupLine($"[bold]Ponder demo[/]: model [blue]{Markup.Escape(path)}[/]");
            await using var m = await CliCommon.LoadAsync(path, null, 4096, ct);
            string[] questions = ["Q: 3+4\n", "Q: 12*3-7\n", "Q: 25+17*2\n", "Q: (8-3)*41+6\n"];
            foreach (var q in questions)
            {
                AnsiConsole.Markup($"[grey]{Markup.Escape(q.TrimEnd())}[/] -> ");
                var sampling = SamplingOptions.Greedy with { MaxNewTokens = 96, StopStrings = ["\n\n"] };
                var text = new System.Text.StringBuilder();
                await foreach (var t in m.GenerateAsync(q, sampling, ct)) text.Append(t.Text);
                AnsiConsole.WriteLine(text.ToString().Replace("\n", " | ").TrimEnd(' ', '|'));
            }
            return 0;
        }));
        return cmd;
    }

    static string DefaultModel()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "weights", "policy-small");
            if (File.Exists(Path.Combine(candidate, "config.json"))) return candidate;
        }
        return "random:tiny";
    }
}
