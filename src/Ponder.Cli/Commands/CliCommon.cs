using System.CommandLine;
using Ponder.Models;
using Spectre.Console;
using Ponder.Tokenization;

namespace Ponder.Cli.Commands;

/// <summary>Options and helpers shared by the subcommands.</summary>
static class CliCommon
{
    public static Option<string> ModelOption() => new("--model", "-m")
    {
        Description = "Model: a Hugging Face folder (config.json + *.safetensors), a .gguf file, or random:<preset> (tiny, smollm2-135m)",
        Required = true,
    };

    public static Option<int?> ThreadsOption() => new("--threads") { Description = "CPU threads (default: all cores)" };

    /// <summary>Loads a model with a progress bar on stderr; reports failures as one clear line.</summary>
    public static async Task<PonderModel> LoadAsync(string path, int? threads, int kvTokens, CancellationToken ct)
    {
        var options = new ModelOptions { Threads = threads, KvCacheTokens = kvTokens };
        if (path.StartsWith("random:", StringComparison.Ordinal))
        {
            var (config, tensors) = RandomModels.Create(path["random:".Length..], seed: 1UL);
            return PonderModel.Load(new HostTensorSource(config, tensors, path), new ByteTokenizer(config.Vocab, config.EosTokenIds), options);
        }
        PonderModel? model = null;
        await Progress().StartAsync(async ctx =>
        {
            var task = ctx.AddTask($"loading {Path.GetFileName(Path.TrimEndingDirectorySeparator(path))}", maxValue: 1);
            var progress = new Progress<float>(v => task.Value = v);
            model = await PonderModel.LoadAsync(path, options, progress, ct);
            task.Value = 1;
        });
        return model!;
    }

    public static Spectre.Console.Progress Progress() =>
        AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) }).Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn());

    /// <summary>Runs a command body, turning expected failures (bad files, bad arguments) into one line on stderr and exit code 1.</summary>
    public static async Task<int> Guard(Func<Task<int>> body)
    {
        try { return await body(); }
        catch (OperationCanceledException) { Console.Error.WriteLine("cancelled"); return 130; }
        catch (Exception e) when (e is InvalidDataException or FileNotFoundException or DirectoryNotFoundException
                                    or NotSupportedException or ArgumentException or InvalidOperationException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }
}
