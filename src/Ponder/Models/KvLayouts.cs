using Ponder.Backends;

namespace Ponder.Models;

/// <summary>The KV cache shape a model needs: the model knows its layers and heads; the backend only knows shapes.</summary>
public static class KvLayouts
{
    /// <summary>The paged KV layout of <paramref name="config"/> with <paramref name="blockSize"/> tokens per block.</summary>
    public static KvLayout ToKvLayout(this ModelConfig config, int blockSize = 16)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        return new KvLayout(config.NLayers, config.NKvHeads, config.HeadDim, blockSize);
    }
}
