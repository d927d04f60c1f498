using Ponder.Cache;
using Ponder.Models;
using Ponder.Models.Gguf;
using Ponder.Tensors;
using Ponder.TestSupport;
using Ponder.Tests.Forward;
using Ponder.Tests.Quantization;

namespace Ponder.Tests.LlamaCpp;

/// <summary>
/// Qwen3-0.6B's per-layer shape (dModel 1024, 16 query heads over 8 KV heads of headDim 128, so q is 2048 wide, twice
/// dModel; dFf 3072; q/k norms; rope theta 1e6; tied embeddings) with two layers and a 2048-token vocabulary, random
/// weights: the engine against the float64 reference and llama.cpp at every position, in f32 and as llama.cpp's Q4_K_M.
/// </summary>
public sealed class Qwen3ShapeTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ponder-qwen3-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static readonly ModelConfig Config = new()
    {
        Architecture = Architecture.Qwen3, QkNorm = true,
        Vocab = 2048, DModel = 1024, NLayers = 2, NHeads = 16, NKvHeads = 8, HeadDim = 128, DFf = 3072,
        TiedEmbeddings = true, MaxPositions = 40960, RopeTheta = 1000000, RmsNormEps = 1e-6f,
    };

    // As the smaller f32 agreement tests: f32 rounding measured at 1.6e-7 .. 6.1e-7 of the largest logit there; wider
    // rows (3072) add rounding, so 5e-6 of the largest logit still bounds it with margin (measured below).
    const double RelTolerance = 5e-6;

    [Fact]
    public void F32_and_Q4_K_M_logits_match_the_reference_and_llama_cpp_at_every_position()
    {
        var tensors = RandomModel.Create(Config, seed: 5);
        string f32 = Path.Combine(_dir, "qwen3-f32.gguf"), q4 = Path.Combine(_dir, "qwen3-q4_k_m.gguf");
        GgufWriter.Write(f32, Config, tensors, DType.F32);
        int[] tokens = RandomModel.Tokens(Config, 12, seed: 8);

        double[,] expected = ReferenceForward.Run(Config, tensors, tokens);
        float[][] ours;
        using (var source = new GgufSource(f32))
        using (var h = new ForwardHarness(source))
        using (var seq = new Sequence(h.Pool))
            ours = h.Run(seq, tokens);
        float[][] theirs;
        using (var llama = LlamaCppModel.Load(f32))
            theirs = llama.Evaluate(tokens);

        double scale = TestTolerance.Flatten(expected).Max(Math.Abs);
        double worstOurs = 0, worstLlama = 0;
        for (int t = 0; t < tokens.Length; t++)
        {
            var row = Enumerable.Range(0, Config.Vocab).Select(v => expected[t, v]).ToArray();
            worstOurs = Math.Max(worstOurs, TestTolerance.AssertClose(row, ours[t], RelTolerance * scale, 0, $"engine vs reference, position {t}").MaxAbs);
            worstLlama = Math.Max(worstLlama, TestTolerance.AssertClose(row, theirs[t], RelTolerance * scale, 0, $"llama.cpp vs reference, position {t}").MaxAbs);
        }
        Console.WriteLine($"Qwen3 shape f32: max |logit| {scale:G3}; |engine - reference| {worstOurs / scale:G2}, |llama.cpp - reference| {worstLlama / scale:G2} of it");

        GgmlNative.Quantize(f32, q4, "Q4_K_M");
        using var quantized = new GgufSource(q4);
        Assert.Contains(quantized.Tensors.Values, t => t.Type == DType.Q4_K);
        LlamaCppQuantizedTests.AssertAgreement("Qwen3 shape Q4_K_M", quantized, q4, tokens);
    }
}
