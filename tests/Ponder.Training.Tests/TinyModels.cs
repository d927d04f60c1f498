using Ponder.Models;
using Ponder.Training;
using Ponder.Tasks;
using Ponder.Tokenization;

namespace Ponder.Training.Tests;

/// <summary>Tiny shapes and batches shared by the trainer tests.</summary>
static class TinyModels
{
    public static ModelConfig Config(HeadKind head = HeadKind.LanguageModel, bool tied = true, bool qkvBias = false) => new ModelConfig
    {
        Architecture = qkvBias ? Architecture.Qwen2 : Architecture.Llama, Head = head, Vocab = 11, DModel = 8, NLayers = 2,
        NHeads = 4, NKvHeads = 2, HeadDim = 4, DFf = 12, MaxPositions = 16, TiedEmbeddings = tied, QkvBias = qkvBias,
    }.Validate("tiny");

    /// <summary>A small value-head (PRM) model over the byte vocabulary, default-initialised (value head at zero: every score 0.5).</summary>
    public static TrainableLlama ByteValueModel(ulong seed)
    {
        var config = new ModelConfig
        {
            Head = HeadKind.Value, NumLabels = 1, Vocab = ByteTokenizer.PonderVocabSize, DModel = 32, NLayers = 2, NHeads = 4, NKvHeads = 2,
            HeadDim = 8, DFf = 64, MaxPositions = 64, TiedEmbeddings = true,
        }.Validate("value");
        var p = new ParameterSet(config);
        p.Initialize(seed);
        return new TrainableLlama(p);
    }

    public static TrainableLlama Model(ModelConfig config, ulong seed = 5)
    {
        var p = new ParameterSet(config);
        // Larger than the 0.02 default so every path (attention scores, SwiGLU curvature) carries signal in the check.
        var rng = new DeterministicRandom(seed);
        foreach (var t in p.All)
            for (int i = 0; i < t.Data.Length; i++)
                t.Data[i] = t.Value.Shape.Length == 1 && t.Name.EndsWith("norm.weight", StringComparison.Ordinal)
                    ? 1f + 0.2f * (float)rng.NextGaussian() : 0.3f * (float)rng.NextGaussian();
        return new TrainableLlama(p);
    }

    /// <summary>Two rows of 6: row 0 holds documents [0,3) and [3,6); row 1 one document and a padded tail.</summary>
    public static TrainingBatch Batch(int vocab, bool labels = false, ulong seed = 9)
    {
        var rng = new DeterministicRandom(seed);
        int B = 2, T = 6, n = B * T;
        var b = new TrainingBatch(B, T, new int[n], new int[n], new float[n], new int[n], new int[n], labels ? new float[n] : null);
        for (int i = 0; i < n; i++)
        {
            b.Tokens[i] = rng.Next(0, vocab);
            b.Targets[i] = rng.Next(0, vocab);
            b.Mask[i] = i % 5 == 4 ? 0f : 1f;
            int t = i % T;
            b.SegmentStart[i] = i < T ? (t < 3 ? 0 : 3) : (t < 5 ? 0 : t);
            b.Positions[i] = t - b.SegmentStart[i];
            if (labels) b.Labels![i] = (float)rng.NextDouble();
        }
        return b;
    }
}
