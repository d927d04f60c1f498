using Ponder.Cache;
using Ponder.Models;
using Ponder.Models.Gguf;
using Ponder.Models.Safetensors;
using Ponder.Sampling;
using Ponder.Tensors;
using Ponder.TestSupport;
using Ponder.Tests.Forward;

namespace Ponder.Tests.LlamaCpp;

/// <summary>The engine's CPU forward, loading the same files, agrees with llama.cpp and with itself across formats.</summary>
public sealed class EngineVsLlamaCppTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ponder-engine-llamacpp-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // Measured here (seed 7, 40 positions): max |engine - llama.cpp| / max |logit| = 1.6e-7 .. 6.1e-7 (1.1e-5 absolute
    // on logits up to 54.6): f32 rounding.
    const double RelTolerance = 5e-6;

    static float[][] EngineLogits(ITensorSource source, int[] tokens)
    {
        using var h = new ForwardHarness(source.Config, ReadAll(source), blockSize: 16);
        using var seq = new Sequence(h.Pool);
        return h.Run(seq, tokens);
    }

    static Dictionary<string, HostTensor> ReadAll(ITensorSource source) =>
        source.Tensors.Values.ToDictionary(t => t.Name, t =>
        {
            var h = new HostTensor(t.Shape.Select(x => (int)x).ToArray());
            source.ReadF32(t.Name, h.Data);
            return h;
        });

    [Theory]
    [InlineData(nameof(TestConfigs.Tiny))]        // GQA, tied embeddings
    [InlineData(nameof(TestConfigs.TinyUntied))]  // untied LM head
    [InlineData(nameof(TestConfigs.TinyQwen2Bias))]
    [InlineData(nameof(TestConfigs.TinyLlama3Rope))]
    [InlineData(nameof(TestConfigs.TinyQwen3))]
    [InlineData(nameof(TestConfigs.TinyPhi3))]
    public void Logits_from_the_GGUF_file_match_llama_cpp(string configName)
    {
        var config = TestConfigs.Forward[configName];
        string path = Path.Combine(_dir, configName + ".gguf");
        GgufWriter.Write(path, config, RandomModel.Create(config, seed: 7), DType.F32);
        int[] tokens = RandomModel.Tokens(config, 40, seed: 11);

        using var source = ModelFiles.Open(path);
        var ours = EngineLogits(source, tokens);
        using var llama = LlamaCppModel.Load(path);
        var theirs = llama.Evaluate(tokens);

        double scale = theirs.SelectMany(r => r).Max(v => Math.Abs((double)v));
        double worst = 0;
        for (int t = 0; t < tokens.Length; t++)
            worst = Math.Max(worst, TestTolerance.AssertClose(TestTolerance.ToDouble(theirs[t]), ours[t], abs: RelTolerance * scale, rel: 0, $"{configName} position {t}").MaxAbs);
        Console.WriteLine($"{configName}: max |engine - llama.cpp| = {worst:G3}, max |logit| = {scale:G3}, ratio {worst / scale:G3}");
    }

    [Theory]
    [InlineData(nameof(TestConfigs.Tiny))]
    [InlineData(nameof(TestConfigs.TinyUntied))]
    public async Task Greedy_continuations_are_identical_to_llama_cpp(string configName)
    {
        var config = TestConfigs.All[configName];
        string path = Path.Combine(_dir, configName + "-greedy.gguf");
        GgufWriter.Write(path, config, RandomModel.Create(config, seed: 3), DType.F32);
        int[] prompt = RandomModel.Tokens(config, 8, seed: 5);

        using var llama = LlamaCppModel.Load(path);
        int[] expected = llama.Greedy(prompt, 24);

        await using var model = await PonderModel.LoadAsync(path);
        var ours = new List<int>();
        await foreach (var t in model.GenerateAsync(prompt, SamplingOptions.Greedy with { MaxNewTokens = 24, StopAtEos = false }))
            ours.Add(t.Id);
        Assert.Equal(expected, ours);
    }

    [Theory]
    [InlineData(DType.F32, 0.0)]
    [InlineData(DType.F16, 2e-2)]
    [InlineData(DType.BF16, 1e-1)]
    public void Safetensors_and_GGUF_of_the_same_weights_give_the_same_logits(DType dtype, double relTolerance)
    {
        var config = TestConfigs.TinyUntied;
        var tensors = RandomModel.Create(config, seed: 19);
        string folder = Path.Combine(_dir, $"hf-{dtype}");
        string gguf = Path.Combine(_dir, $"model-{dtype}.gguf");
        SafetensorsWriter.WriteFolder(folder, config, tensors, dtype);
        GgufWriter.Write(gguf, config, tensors, dtype);
        int[] tokens = RandomModel.Tokens(config, 20, seed: 2);

        using var a = ModelFiles.Open(folder);
        using var b = ModelFiles.Open(gguf);
        var fromSafetensors = EngineLogits(a, tokens);
        var fromGguf = EngineLogits(b, tokens);
        for (int t = 0; t < tokens.Length; t++)
        {
            if (dtype == DType.F32) Assert.Equal(fromSafetensors[t], fromGguf[t]);   // same f32 weights: bitwise
            else
            {
                // Both files round the same f32 weights to the same 16-bit values; any difference is in 1-D tensors,
                // which GGUF keeps in f32. Checked against a scale-relative bound.
                double scale = fromGguf[t].Max(v => Math.Abs((double)v));
                TestTolerance.AssertClose(TestTolerance.ToDouble(fromGguf[t]), fromSafetensors[t], relTolerance * scale, 0, $"{dtype} position {t}");
            }
        }
    }
}
