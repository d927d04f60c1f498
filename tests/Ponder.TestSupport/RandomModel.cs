using Ponder.Models;

namespace Ponder.TestSupport;

/// <summary>Deterministic random weights for a config, scaled so activations and logits stay O(1).</summary>
public static class RandomModel
{
    /// <summary>
    /// Every tensor of <see cref="TensorNames.Expected"/>: norms uniform in 1 ± 0.2, embeddings with unit standard
    /// deviation, biases ± 0.1, and other matrices with standard deviation <paramref name="scale"/> / sqrt(columns),
    /// so each projection keeps its input's scale. The same seed gives the same tensors.
    /// </summary>
    public static Dictionary<string, HostTensor> Create(ModelConfig config, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        // Uniform on [-a, a] has standard deviation a / sqrt(3).
        float Uniform(float std) => (float)((rng.NextDouble() * 2 - 1) * Math.Sqrt(3) * std);
        var tensors = new Dictionary<string, HostTensor>();
        foreach (var (name, shape, _) in TensorNames.Expected(config))
        {
            var t = new HostTensor(shape.Select(d => (int)d).ToArray());
            bool norm = name.EndsWith("norm.weight", StringComparison.Ordinal);
            bool bias = name.EndsWith(".bias", StringComparison.Ordinal);
            for (int i = 0; i < t.Data.Length; i++)
                t.Data[i] = norm ? 1 + 0.2f * (float)(rng.NextDouble() * 2 - 1)
                    : bias ? 0.1f * (float)(rng.NextDouble() * 2 - 1)
                    : name == TensorNames.Embedding ? Uniform(1)
                    : Uniform(scale / MathF.Sqrt(t.Cols));
            tensors[name] = t;
        }
        return tensors;
    }

    /// <summary><paramref name="count"/> random token ids in [0, vocab).</summary>
    public static int[] Tokens(ModelConfig config, int count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => rng.Next(config.Vocab)).ToArray();
    }
}
