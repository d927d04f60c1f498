using Ponder.Sampling;

namespace Ponder.Models;

/// <summary>
/// Models with random weights, for benchmarks, profiling and tests: the shapes of real models without their files.
/// Weights are scaled so activations and logits stay O(1) through every layer.
/// </summary>
public static class RandomModels
{
    /// <summary>Named shapes: <c>tiny</c> (a few layers, byte vocabulary), <c>smollm2-135m</c> (SmolLM2-135M's shape), <c>qwen3-0.6b</c> (Qwen3-0.6B's).</summary>
    public static ModelConfig Preset(string name) => name switch
    {
        "tiny" => new ModelConfig { Vocab = 259, DModel = 64, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 16, DFf = 176, TiedEmbeddings = true, MaxPositions = 512, EosTokenIds = [257] },
        "smollm2-135m" => new ModelConfig { Vocab = 49152, DModel = 576, NLayers = 30, NHeads = 9, NKvHeads = 3, HeadDim = 64, DFf = 1536, TiedEmbeddings = true, MaxPositions = 8192, RopeTheta = 100000, EosTokenIds = [0] },
        "qwen3-0.6b" => new ModelConfig
        {
            Architecture = Architecture.Qwen3, QkNorm = true, Vocab = 151936, DModel = 1024, NLayers = 28, NHeads = 16, NKvHeads = 8, HeadDim = 128,
            DFf = 3072, TiedEmbeddings = true, MaxPositions = 40960, RopeTheta = 1000000, RmsNormEps = 1e-6f, EosTokenIds = [151645],
        },
        _ => throw new ArgumentException($"unknown random model preset '{name}' (known: tiny, smollm2-135m, qwen3-0.6b)", nameof(name)),
    };

    /// <summary>Random weights for <paramref name="config"/>: every tensor of <see cref="TensorNames.Expected"/>.</summary>
    public static Dictionary<string, HostTensor> Create(ModelConfig config, ulong seed)
    {
        var rng = new Rng(seed);
        var tensors = new Dictionary<string, HostTensor>();
        foreach (var (name, shape, _) in TensorNames.Expected(config))
        {
            var t = new HostTensor(shape.Select(x => checked((int)x)).ToArray());
            bool isNorm = shape.Length == 1 && name.EndsWith("norm.weight", StringComparison.Ordinal);
            // Uniform(-a, a) has variance a²/3: a = sqrt(3 / fanIn) keeps unit variance through a projection.
            float a = shape.Length == 2 ? MathF.Sqrt(3f / shape[1]) : 0.1f;
            var data = t.Data;
            for (int i = 0; i < data.Length; i++)
            {
                float u = (float)(rng.NextDouble() * 2 - 1);
                data[i] = isNorm ? 1f + 0.1f * u : a * u;
            }
            tensors[name] = t;
        }
        return tensors;
    }

    /// <summary>A preset's config and random weights.</summary>
    public static (ModelConfig Config, Dictionary<string, HostTensor> Tensors) Create(string preset, ulong seed)
    {
        var config = Preset(preset);
        return (config, Create(config, seed));
    }

    /// <summary>A preset as a tensor source.</summary>
    public static ITensorSource Source(string preset, ulong seed = 1)
    {
        var (config, tensors) = Create(preset, seed);
        return new HostTensorSource(config, tensors, $"random:{preset}");
    }
}
