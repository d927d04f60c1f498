using System.Text.Json;
using Ponder.Tasks;
using Ponder.Tokenization;

namespace Ponder.Training;

/// <summary>A question with the policy's sampled completions and their grades.</summary>
public sealed record QuestionSamples(string Question, List<Attempt> Attempts);

/// <summary>Text-level sampling from a <see cref="TrainableLlama"/> and a JSONL cache of sampled completions.</summary>
public static class PolicySamples
{
    /// <summary>
    /// Continues each text prompt (after BOS) until EOS; returns the completion text, or null when it did not finish
    /// within <paramref name="maxLength"/> tokens (prompt included) or the prompt leaves no room.
    /// </summary>
    public static List<string?> Complete(TrainableLlama model, IReadOnlyList<string> prompts, float temperature, DeterministicRandom rng, int maxLength, int chunk = 256)
    {
        var sampler = new TrainingSampler(model);
        var result = new List<string?>(prompts.Count);
        for (int start = 0; start < prompts.Count; start += chunk)
        {
            var ids = new List<int[]>();
            var slot = new List<int>();
            for (int i = start; i < Math.Min(prompts.Count, start + chunk); i++)
            {
                int[] p = [ByteTokenizer.PonderBos, .. ByteTokenizer.Ponder.Encode(prompts[i])];
                slot.Add(p.Length < maxLength - 1 ? ids.Count : -1);
                if (p.Length < maxLength - 1) ids.Add(p);
            }
            var outs = ids.Count > 0 ? sampler.Generate(ids, maxLength, temperature, rng) : [];
            foreach (int s in slot)
                result.Add(s >= 0 && outs[s].Finished ? ByteTokenizer.Ponder.Decode(outs[s].Tokens) : null);
        }
        return result;
    }

    /// <summary>
    /// <paramref name="samples"/> completions per question at temperature 1 (unfinished ones dropped), graded; read
    /// from <paramref name="cachePath"/> when it exists (same questions and count), else sampled and written there.
    /// </summary>
    public static List<QuestionSamples> LoadOrSample(string cachePath, TrainableLlama model, ITask task, IReadOnlyList<string> questions,
        int samples, ulong seed, int maxLength, IProgress<string>? progress = null)
    {
        if (File.Exists(cachePath))
        {
            var cached = File.ReadLines(cachePath).Select(l => JsonSerializer.Deserialize<QuestionSamples>(l)!).ToList();
            if (cached.Count == questions.Count && cached.Select(c => c.Question).SequenceEqual(questions)) return cached;
        }
        var rng = DeterministicRandom.ForStream(seed, 0x5A3F);
        var prompts = new List<string>();
        foreach (string q in questions) for (int s = 0; s < samples; s++) prompts.Add(task.Prompt(q));
        var outs = new List<string?>();
        for (int start = 0; start < prompts.Count; start += 1024)
        {
            outs.AddRange(Complete(model, prompts.Skip(start).Take(1024).ToList(), 1f, rng, maxLength));
            progress?.Report($"sampled {outs.Count}/{prompts.Count}");
        }
        var result = new List<QuestionSamples>();
        for (int i = 0; i < questions.Count; i++)
        {
            var attempts = new List<Attempt>();
            for (int s = 0; s < samples; s++)
                if (outs[i * samples + s] is { } c) attempts.Add(new Attempt(c, task.Grade(questions[i], c)));
            result.Add(new QuestionSamples(questions[i], attempts));
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(cachePath))!);
        File.WriteAllLines(cachePath, result.Select(r => JsonSerializer.Serialize(r)));
        return result;
    }
}
