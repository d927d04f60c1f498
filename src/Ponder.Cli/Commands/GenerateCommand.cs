using System.CommandLine;
using Ponder.Sampling;

namespace Ponder.Cli.Commands;

/// <summary><c>ponder generate</c>: stream a continuation of a prompt.</summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var model = CliCommon.ModelOption();
        var prompt = new Option<string>("--prompt", "-p") { Description = "Prompt text", Required = true };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Maximum new tokens", DefaultValueFactory = _ => 128 };
        var temperature = new Option<float>("--temperature", "-t") { Description = "Sampling temperature (0 = greedy)", DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { Description = "Keep the k most likely tokens (0 = off)" };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling mass (1 = off)", DefaultValueFactory = _ => 1f };
        var minP = new Option<float>("--min-p") { Description = "Drop tokens below min-p times the top probability (0 = off)" };
        var repetition = new Option<float>("--repetition-penalty") { Description = "Penalty on tokens already in context (1 = off)", DefaultValueFactory = _ => 1f };
        var seed = new Option<ulong>("--seed") { Description = "Random seed", DefaultValueFactory = _ => 42UL };
        var stop = new Option<string[]>("--stop") { Description = "Stop strings (repeatable)", AllowMultipleArgumentsPerToken = false };
        var threads = CliCommon.ThreadsOption();
        var cmd = new Command("generate", "Generate text from a prompt, streaming tokens as they come")
        {
            model, prompt, maxTokens, temperature, topK, topP, minP, repetition, seed, stop, threads,
        };
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            var sampling = new SamplingOptions
            {
                Temperature = r.GetValue(temperature), TopK = r.GetValue(topK), TopP = r.GetValue(topP), MinP = r.GetValue(minP),
                RepetitionPenalty = r.GetValue(repetition), Seed = r.GetValue(seed), MaxNewTokens = r.GetValue(maxTokens),
                StopStrings = r.GetValue(stop) ?? [],
            }.Validate();
            string text = r.GetValue(prompt)!;
            await using var m = await CliCommon.LoadAsync(r.GetValue(model)!, r.GetValue(threads), Math.Max(512, sampling.MaxNewTokens + 4 * text.Length + 64), ct);
            var watch = System.Diagnostics.Stopwatch.StartNew();
            int count = 0;
            Console.Write(text);
            await foreach (var t in m.GenerateAsync(text, sampling, ct))
            {
                Console.Write(t.Text);
                if (t.Id >= 0) count++;
            }
            Console.WriteLine();
            Console.Error.WriteLine($"[{count} tokens in {watch.Elapsed.TotalSeconds:F2} s, {count / watch.Elapsed.TotalSeconds:F1} tok/s, {m.Backend.Name}]");
            return 0;
        }));
        return cmd;
    }
}
