using System.CommandLine;
using Ponder.Training;
using Spectre.Console;

namespace Ponder.Cli.Commands;

/// <summary>
/// <c>ponder train policy|prm|value-head|revision --config FILE</c>: trains (or resumes) a policy, a process reward model or a
/// revision model and exports it with its model card.
/// </summary>
public static class TrainCommand
{
    /// <summary>The <c>train</c> command with its <c>policy</c>, <c>prm</c> and <c>revision</c> subcommands.</summary>
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
        train.Subcommands.Add(FineTune("prm", "Train a process reward model on Monte Carlo step labels from the policy's samples (configs/prm-small.json)",
            (cfg, progress, status, ct) =>
            {
                var e = PrmTrainer.Run(cfg, progress, status, ct).Evaluation;
                return $"AUC {e.Auc:F3}; @{e.SamplesPerQuestion}: majority {e.MajorityAccuracy:P1}, PRM-weighted best-of-N {e.WeightedBestOfNAccuracy:P1}, best-of-N {e.BestOfNMaxAccuracy:P1}, pass@1 {e.MeanPassAtOne:P1}, oracle {e.OracleAccuracy:P1}";
            }));
        train.Subcommands.Add(FineTune("value-head", "Fit a shared-backbone PRM: one value row on the frozen policy's hidden states, on the PRM's Monte Carlo labels (configs/value-head-small.json)",
            (cfg, progress, status, ct) =>
            {
                var r = ValueHeadTrainer.Run(cfg, status, ct);
                var e = r.Evaluation;
                return $"held-out BCE {r.Fit.ValidationBce:F4}; AUC {e.Auc:F3}, within-question AUC {e.WithinQuestionAuc:F3}; @{e.SamplesPerQuestion}: majority {e.MajorityAccuracy:P1}, weighted best-of-N {e.WeightedBestOfNAccuracy:P1}"
                    + (r.Separate is { } p ? $" (separate PRM: AUC {p.Auc:F3}, within {p.WithinQuestionAuc:F3}, weighted {p.WeightedBestOfNAccuracy:P1})" : "")
                    + $"; scoring FLOPs per step: shared {r.Flops.SharedHead:N0}, separate {r.Flops.SeparatePrm:N0}";
            }));
        train.Subcommands.Add(FineTune("revision", "Fine-tune the policy into a revision model on its own wrong and right samples (configs/revision-small.json)",
            (cfg, progress, status, ct) =>
            {
                var e = RevisionTrainer.Run(cfg, progress, status, ct).Evaluation;
                return $"policy pass@1 {e.PolicyPassAtOne:P1}; after 0/1/4/{e.ChainLength} revisions: {e.AfterRevisions[0]:P1} / {e.AfterRevisions[Math.Min(1, e.ChainLength)]:P1} / {e.AfterRevisions[Math.Min(4, e.ChainLength)]:P1} / {e.AfterRevisions[e.ChainLength]:P1}; chain majority {e.ChainMajority:P1}";
            }));
        var compare = new Command("prm-compare", "Score one set of held-out policy samples with several verifiers (PRMs, shared value heads, the exact checker) and compare their rankings (configs/prm-compare.json)");
        var compareConfig = new Option<FileInfo>("--config") { Description = "Comparison config JSON", Required = true };
        compare.Options.Add(compareConfig);
        compare.SetAction((ParseResult r, CancellationToken ct) =>
        {
            var cfg = PrmComparisonConfig.Load(r.GetValue(compareConfig)!.FullName);
            var started = System.Diagnostics.Stopwatch.StartNew();
            var status = new SynchronousProgress<string>(s => Console.WriteLine($"prm-compare [{started.Elapsed:hh\\:mm\\:ss}] {s}"));
            var result = PrmComparison.Run(cfg, status);
            Console.WriteLine(PrmComparison.Markdown(result));
            AnsiConsole.MarkupLine($"wall {started.Elapsed:hh\\:mm\\:ss}; tables in [bold]{Markup.Escape(cfg.OutputDir)}[/]");
            return Task.FromResult(0);
        });
        train.Subcommands.Add(compare);
        return train;
    }

    static Command FineTune(string name, string description, Func<FineTuneConfig, IProgress<TrainingProgress>, IProgress<string>, CancellationToken, string> run)
    {
        var command = new Command(name, description);
        var config = new Option<FileInfo>("--config") { Description = "Fine-tuning config JSON", Required = true };
        command.Options.Add(config);
        command.SetAction((ParseResult r, CancellationToken ct) =>
        {
            var cfg = FineTuneConfig.Load(r.GetValue(config)!.FullName);
            var started = System.Diagnostics.Stopwatch.StartNew();
            // Plain lines rather than a live bar: these runs spend most of their time sampling, outside the step loop.
            var status = new SynchronousProgress<string>(s => Console.WriteLine($"{cfg.Name} [{started.Elapsed:hh\\:mm\\:ss}] {s}"));
            long lastStep = -1;
            var progress = new SynchronousProgress<TrainingProgress>(p =>
            {
                if (p.Step % 50 != 0 || p.Step == lastStep) return;
                lastStep = p.Step;
                Console.WriteLine($"{cfg.Name} [{started.Elapsed:hh\\:mm\\:ss}] step {p.Step}/{p.TotalSteps} loss {p.Loss:F4} {p.TokensPerSecond:F0} tok/s");
            });
            string summary = run(cfg, progress, status, ct);
            AnsiConsole.MarkupLine($"{Markup.Escape(summary)}; wall {started.Elapsed:hh\\:mm\\:ss}");
            if (cfg.WeightsDir is not null) AnsiConsole.MarkupLine($"weights and model card in [bold]{Markup.Escape(cfg.WeightsDir)}[/]");
            return Task.FromResult(0);
        });
        return command;
    }

    // Progress<T> posts to the thread pool; the bar must update in order, on the training thread.
    sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
