using Ponder.Models;
using Ponder.Models.Gguf;
using Ponder.TestSupport;
using Ponder.Tensors;

namespace Ponder.Tests.LlamaCpp;

/// <summary>
/// Random models written by <see cref="GgufWriter"/> run in llama.cpp and agree with <see cref="ReferenceForward"/>:
/// this checks the writer's metadata and tensor layout (including the Q/K RoPE permutation) end to end.
/// </summary>
public sealed class LlamaCppReferenceTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ponder-llamacpp-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> Configs => new() { nameof(TestConfigs.Tiny), nameof(TestConfigs.TinyUntied), nameof(TestConfigs.TinyMha), nameof(TestConfigs.TinyQwen2Bias), nameof(TestConfigs.TinyLlama3Rope), nameof(TestConfigs.TinyQwen3), nameof(TestConfigs.TinyPhi3) };

    // Max |llama.cpp - reference| over all 40 positions, relative to the largest |logit| (measured here, seed 7):
    // Tiny 8.6e-6 / 54.6 = 1.6e-7, TinyUntied 1.1e-6 / 3.6 = 2.9e-7, TinyMha 7.6e-7 / 4.0 = 1.9e-7,
    // TinyQwen2Bias 6.9e-6 / 54.6 = 1.3e-7, TinyLlama3Rope 9.2e-6 / 54 = 1.7e-7: f32 rounding.
    // (With llama.cpp's flash attention on, which rounds to f16, the error was ~5e-4: LlamaCppModel turns it off.)
    // A wrong Q/K permutation gives errors of order 1.
    private const double RelTolerance = 5e-6;

    [Theory]
    [MemberData(nameof(Configs))]
    public void LogitsAtEveryPositionMatchReference(string configName)
    {
        var config = TestConfigs.Forward[configName];
        var tensors = RandomModel.Create(config, seed: 7);
        string path = Path.Combine(_dir, configName + ".gguf");
        GgufWriter.Write(path, config, tensors, DType.F32);
        int[] tokens = RandomModel.Tokens(config, 40, seed: 11);

        double[,] expected = ReferenceForward.Run(config, tensors, tokens);
        using var model = LlamaCppModel.Load(path);
        Assert.Equal(config.Vocab, model.Vocab);
        float[][] logits = model.Evaluate(tokens);

        var actual = new double[tokens.Length, config.Vocab];
        for (int t = 0; t < tokens.Length; t++)
            for (int v = 0; v < config.Vocab; v++) actual[t, v] = logits[t][v];
        double scale = TestTolerance.Flatten(expected).Max(Math.Abs);
        var c = TestTolerance.AssertClose(expected, actual, abs: RelTolerance * scale, rel: 0, $"{configName} logits, llama.cpp vs reference");
        Assert.True(scale > 0.5, $"logits should be O(1), max |logit| = {scale}");
        Console.WriteLine($"{configName}: max |logit| {scale:G4}, {c}");
    }

    [Theory]
    [InlineData(nameof(TestConfigs.Tiny))]
    [InlineData(nameof(TestConfigs.TinyUntied))]
    public void GreedyContinuationMatchesReference(string configName)
    {
        var config = TestConfigs.Forward[configName];
        var tensors = RandomModel.Create(config, seed: 3);
        string path = Path.Combine(_dir, configName + "-greedy.gguf");
        GgufWriter.Write(path, config, tensors, DType.F32);
        int[] prompt = RandomModel.Tokens(config, 8, seed: 5);

        using var model = LlamaCppModel.Load(path);
        int[] fromLlama = model.Greedy(prompt, 16);

        var sequence = prompt.ToList();
        var fromReference = new int[16];
        for (int i = 0; i < fromReference.Length; i++)
        {
            double[,] logits = ReferenceForward.Run(config, tensors, sequence.ToArray());
            int best = 0;
            for (int v = 1; v < config.Vocab; v++) if (logits[sequence.Count - 1, v] > logits[sequence.Count - 1, best]) best = v;
            fromReference[i] = best;
            sequence.Add(best);
        }
        Assert.Equal(fromReference, fromLlama);
    }
}
