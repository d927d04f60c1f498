using Ponder.Tasks;
using Ponder.Tokenization;

namespace Ponder.Training;

/// <summary>pass@1 of a policy on questions ordered by difficulty, overall and per fifth (fifth 1 = easiest).</summary>
public sealed record PassAtOneReport(float Temperature, int SamplesPerQuestion, double Overall, double[] Fifths, double[] PerQuestion);

/// <summary>Measures pass@1 with the trainer's own sampler.</summary>
public static class PassAtOne
{
    /// <summary>
    /// Samples <paramref name="samples"/> completions per question (1 when greedy), grades them with
    /// <paramref name="task"/>, and averages per question, per fifth of the list (in the given order) and overall.
    /// </summary>
    public static PassAtOneReport Measure(TrainableLlama model, ITask task, IReadOnlyList<string> questions, float temperature, int samples, ulong seed, int maxLength, int chunk = 256)
    {
        if (temperature <= 0) samples = 1;
        var sampler = new TrainingSampler(model);
        var rng = DeterministicRandom.ForStream(seed, 0xE7A1);
        var perQuestion = new double[questions.Count];
        var work = new List<int>();
        for (int s = 0; s < samples; s++) for (int i = 0; i < questions.Count; i++) work.Add(i);
        for (int start = 0; start < work.Count; start += chunk)
        {
            var ids = work.Skip(start).Take(chunk).ToList();
            var prompts = ids.Select(i => new[] { ByteTokenizer.PonderBos }.Concat(ByteTokenizer.Ponder.Encode(task.Prompt(questions[i]))).ToArray()).ToList();
            var outs = sampler.Generate(prompts, maxLength, temperature, rng);
            for (int j = 0; j < ids.Count; j++)
                if (outs[j].Finished && task.Grade(questions[ids[j]], ByteTokenizer.Ponder.Decode(outs[j].Tokens))) perQuestion[ids[j]] += 1.0 / samples;
        }
        var fifths = new double[5];
        for (int f = 0; f < 5; f++)
        {
            int lo = f * questions.Count / 5, hi = (f + 1) * questions.Count / 5;
            fifths[f] = hi > lo ? perQuestion[lo..hi].Average() : double.NaN;
        }
        return new PassAtOneReport(temperature, samples, perQuestion.Length > 0 ? perQuestion.Average() : double.NaN, fifths, perQuestion);
    }
}
