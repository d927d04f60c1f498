using System.CommandLine;

namespace Ponder.Cli.Commands;

/// <summary><c>ponder perplexity</c>: mean NLL and perplexity of a text file, the standard cross-engine check.</summary>
public static class PerplexityCommand
{
    public static Command Create()
    {
        var model = CliCommon.ModelOption();
        var file = new Option<FileInfo>("--text-file", "-f") { Description = "UTF-8 text to score", Required = true };
        var window = new Option<int?>("--window") { Description = "Tokens per window (default: the model's context)" };
        var threads = CliCommon.ThreadsOption();
        var cmd = new Command("perplexity", "Mean negative log-likelihood and perplexity of a text") { model, file, window, threads };
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            var f = r.GetValue(file)!;
            if (!f.Exists) throw new FileNotFoundException($"text file '{f.FullName}' does not exist", f.FullName);
            string text = await File.ReadAllTextAsync(f.FullName, ct);
            await using var m = await CliCommon.LoadAsync(r.GetValue(model)!, r.GetValue(threads), r.GetValue(window) ?? 4096, ct);
            int[] tokens = m.Encode(text);
            var watch = System.Diagnostics.Stopwatch.StartNew();
            PerplexityResult? result = null;
            await CliCommon.Progress().StartAsync(async ctx =>
            {
                var task = ctx.AddTask("scoring", maxValue: 1);
                result = await Task.Run(() => m.Perplexity(tokens, r.GetValue(window), new Progress<float>(v => task.Value = v), ct), ct);
            });
            Console.WriteLine($"tokens scored: {result!.TokensScored}");
            Console.WriteLine($"mean NLL:      {result.MeanNll:F6} nats/token");
            Console.WriteLine($"perplexity:    {result.Perplexity:F4}");
            Console.Error.WriteLine($"[{tokens.Length / watch.Elapsed.TotalSeconds:F0} tok/s]");
            return 0;
        }));
        return cmd;
    }
}
