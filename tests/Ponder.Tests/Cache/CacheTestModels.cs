using Ponder.Backends.Cpu;
using Ponder.Models;

namespace Ponder.Tests.Cache;

/// <summary>
/// Small random models for the cache tests. Private stand-in for RandomModel.Create (formats branch, not in main yet):
/// every tensor of TensorNames.Expected(config) gets small random values, norms stay near 1.
/// </summary>
static class CacheTestModels
{
    public static ModelConfig Policy => new()
    {
        Vocab = 61, DModel = 32, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 8, DFf = 48, MaxPositions = 256,
    };

    public static ModelConfig Prm => Policy with { Head = HeadKind.Value, NumLabels = 1, DModel = 24, NHeads = 3, NKvHeads = 1, DFf = 40 };

    public static Transformer Create(ModelConfig config, int seed)
    {
        var random = new Random(seed);
        var tensors = new Dictionary<string, HostTensor>();
        foreach (var (name, shape, _) in TensorNames.Expected(config))
        {
            var t = new HostTensor(shape.Select(x => (int)x).ToArray());
            bool norm = shape.Length == 1 && name.EndsWith("norm.weight", StringComparison.Ordinal);
            for (int i = 0; i < t.Data.Length; i++)
                t.Data[i] = norm ? 1f + 0.1f * (random.NextSingle() - 0.5f) : 0.4f * (random.NextSingle() - 0.5f);
            tensors[name] = t;
        }
        return new Transformer(new CpuBackend(threads: 2), new HostTensorSource(config, tensors));
    }
}
