using Ponder.Models;

namespace Ponder.Backends.Profiling;

/// <summary>Model shapes for profiling without a file (<c>random:&lt;preset&gt;</c>), filled with random weights.</summary>
public static class ProfileModels
{
    /// <summary>Preset names: "tiny" (2 layers, dModel 64) and "smollm2-135m" (SmolLM2-135M's shape).</summary>
    public static IReadOnlyList<string> Presets { get; } = ["tiny", "smollm2-135m"];

    /// <summary>The configuration of a preset; throws naming the known presets for any other name.</summary>
    public static ModelConfig Preset(string name) => name.ToLowerInvariant() switch
    {
        "tiny" => new ModelConfig { Vocab = 256, DModel = 64, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 16, DFf = 160, MaxPositions = 1024 },
        "smollm2-135m" => new ModelConfig
        {
            Vocab = 49152, DModel = 576, NLayers = 30, NHeads = 9, NKvHeads = 3, HeadDim = 64, DFf = 1536,
            RopeTheta = 100000, MaxPositions = 8192, TiedEmbeddings = true,
        },
        _ => throw new ArgumentException($"unknown model preset '{name}'; known: {string.Join(", ", Presets)}", nameof(name)),
    };

    /// <summary>
    /// Random weights for <paramref name="config"/>: projections uniform in ±1/√cols (activations keep unit scale
    /// through the layers), embeddings ±0.1, norms 1 + small noise, biases ±0.05. Deterministic in <paramref name="seed"/>.
    /// </summary>
    public static HostTensorSource Random(ModelConfig config, int seed = 1)
    {
        var rng = new Random(seed);
        var tensors = new Dictionary<string, HostTensor>();
        foreach (var (name, shape, _) in TensorNames.Expected(config))
        {
            var t = new HostTensor(shape.Select(x => checked((int)x)).ToArray());
            var data = t.Data;
            if (shape.Length == 1)
            {
                bool norm = name.EndsWith("norm.weight", StringComparison.Ordinal);
                for (int i = 0; i < data.Length; i++) data[i] = norm ? 1f + 0.1f * (float)(rng.NextDouble() - 0.5) : 0.1f * (float)(rng.NextDouble() - 0.5);
            }
            else
            {
                float a = name == TensorNames.Embedding ? 0.1f : 1f / MathF.Sqrt(shape[1]);
                for (int i = 0; i < data.Length; i++) data[i] = a * (2 * (float)rng.NextDouble() - 1);
            }
            tensors[name] = t;
        }
        return new HostTensorSource(config, tensors, $"random:{seed}");
    }
}
