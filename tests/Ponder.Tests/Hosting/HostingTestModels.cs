using System.Text;
using Ponder.Hosting;
using Ponder.Models;
using Ponder.TestSupport;
using Ponder.Tokenization;

namespace Ponder.Tests.Hosting;

/// <summary>Small random models with a raw-byte tokenizer (ids 0..255 are bytes; 257 is EOS), a policy and a value-head PRM.</summary>
static class HostingTestModels
{
    /// <summary>Random models have no tokenizer_config.json: their chat clients opt into the ChatML fallback.</summary>
    public static PonderChatClientOptions ChatMlFallback => new() { AllowChatMlFallback = true };

    public static ModelConfig PolicyConfig => new()
    {
        Vocab = 259, DModel = 32, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 8, DFf = 48, MaxPositions = 512, EosTokenIds = [257],
    };

    public static ModelConfig PrmConfig => PolicyConfig with { Head = HeadKind.Value, NumLabels = 1, DModel = 24, NHeads = 3, NKvHeads = 1, DFf = 40 };

    public static PonderModel Policy(int kvTokens = 4096, int seed = 11, string location = "random-policy", ModelConfig? config = null) =>
        PonderModel.Load(new HostTensorSource(config ?? PolicyConfig, RandomModel.Create(config ?? PolicyConfig, seed), location), new ByteTokenizer(PolicyConfig.Vocab, PolicyConfig.EosTokenIds),
            new ModelOptions { Threads = 1, KvCacheTokens = kvTokens, BlockSize = 8 });

    public static PonderModel Prm(int seed = 12) =>
        PonderModel.Load(new HostTensorSource(PrmConfig, RandomModel.Create(PrmConfig, seed), "random-prm"), new ByteTokenizer(PrmConfig.Vocab, PrmConfig.EosTokenIds),
            new ModelOptions { Threads = 1, KvCacheTokens = 4096, BlockSize = 8 });

    /// <summary>Evicts every cached block and checks the pool is whole again: nothing leaked.</summary>
    public static void AssertNoLeaks(PonderModel model)
    {
        model.ClearPrefixCache();
        var stats = model.CacheStats();
        Assert.Equal(0, stats.LiveSequences);
        Assert.Equal(stats.TotalBlocks, stats.FreeBlocks);
    }
}
