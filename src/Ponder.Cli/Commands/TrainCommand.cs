using System.CommandLine;
using Ponder.Training;
using Spectre.Console;

namespace Ponder.Cli.Commands;

/// <summary><c>ponder train policy --config FILE</c>: trains (or resumes) a policy and exports it with its model card.</summary>
public static class TrainCommand
{
    /// <summary>The <c>train</c> command with its <c>policy</c> subcommand.</summary>
    public static Command Create()
    {
        var train = new Command("train", "Train Ponder's own models with the pure C# trainer");
        var policy = new Command("policy", "Train a policy on the arithmetic-chain task (resumes from the output folder's checkpoint)");
        var config = new Option<FileInfo>("--config") { Description = "Training config JSON (e.g. configs/policy-small.json)", Required = true };
        var noEval = new Option<bool>("--no-eval") { Description = "Skip the pass@1 measurement at the end" };
        policy.Options.Add(config);
        policy.Options.Add(noEval);
        policy.SetAction((ParseResult r, CancellationToken ct) =>
        {
            var cfg = TrainingConfig.Load(r.GetValue(config)!.FullName);
            PolicyTrainingResult? result = null;
            AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var bar = ctx.AddTask($"[green]{Markup.Escape(cfg.Name)}[/]", maxValue: cfg.Steps);
                    var progress = new SynchronousProgress<TrainingProgress>(p =>
                    {
                        bar.Value = p.Step;
                        bar.Description = $"[green]{Markup.Escape(cfg.Name)}[/] {p.Phase} step {p.Step}/{p.TotalSteps} loss {p.Loss:F4} {p.TokensPerSecond:F0} tok/s ETA {p.Eta:hh\\:mm\\:ss}";
                    });
                    result = PolicyTrainer.Run(cfg, progress, ct, evaluate: !r.GetValue(noEval));
                    bar.Value = cfg.Steps;
                });
            var res = result!;
            AnsiConsole.MarkupLine($"train loss [bold]{res.FinalTrainLoss:F4}[/], validation loss [bold]{res.FinalValidationLoss:F4}[/], {res.TokensPerSecond:F0} tokens/s, wall {res.WallTime:hh\\:mm\\:ss}");
            foreach (var rep in new[] { res.Greedy, res.Sampled })
                if (rep is not null)
                    AnsiConsole.MarkupLine($"pass@1 T={rep.Temperature} (x{rep.SamplesPerQuestion}): overall {rep.Overall:P1}; fifths {string.Join("  ", rep.Fifths.Select(f => f.ToString("P1", System.Globalization.CultureInfo.InvariantCulture)))}");
            if (cfg.WeightsDir is not null)
            {
                ModelExport.Write(cfg, res);
                AnsiConsole.MarkupLine($"weights and model card in [bold]{Markup.Escape(cfg.WeightsDir)}[/]");
            }
            return Task.FromResult(0);
        });
        train.Subcommands.Add(policy);
        return train;
    }

    // Progress<T> posts to the thread pool; the bar must update in order, on the training thread.
    sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
