using Ponder.Backends.Cpu;
using Ponder.Models;
using Ponder.TestSupport;

namespace Ponder.Tests.Cache;

/// <summary>Small random models (policy and PRM shapes) for the cache tests.</summary>
static class CacheTestModels
{
    public static ModelConfig Policy => new()
    {
        Vocab = 61, DModel = 32, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 8, DFf = 48, MaxPositions = 256,
    };

    public static ModelConfig Prm => Policy with { Head = HeadKind.Value, NumLabels = 1, DModel = 24, NHeads = 3, NKvHeads = 1, DFf = 40 };

    public static Transformer Create(ModelConfig config, int seed) =>
        new(new CpuBackend(threads: 2), new HostTensorSource(config, RandomModel.Create(config, seed)));
}
