using LLama;
using LLama.Common;
using LLama.Native;

namespace Ponder.Tests.LlamaCpp;

/// <summary>
/// llama.cpp (through LLamaSharp) as a reference: loads a GGUF on the CPU, returns logits at every position of
/// a token sequence, and decodes greedily. The KV cache is kept in f32 so the comparison measures the model,
/// not the cache's rounding.
/// </summary>
public sealed class LlamaCppModel : IDisposable
{
    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;
    private readonly int _contextSize;

    /// <summary>Rows of each logits vector (the model's vocabulary).</summary>
    public int Vocab { get; }

    private LlamaCppModel(LLamaWeights weights, LLamaContext context, int contextSize)
    {
        _weights = weights;
        _context = context;
        _contextSize = contextSize;
        Vocab = weights.Vocab.Count;
    }

    /// <summary>Loads <paramref name="ggufPath"/> with a context of <paramref name="contextSize"/> tokens on <paramref name="threads"/> CPU threads.</summary>
    public static LlamaCppModel Load(string ggufPath, int contextSize = 256, int threads = 2)
    {
        var p = new ModelParams(ggufPath)
        {
            ContextSize = (uint)contextSize,
            BatchSize = (uint)contextSize,
            UBatchSize = (uint)contextSize,
            Threads = threads,
            BatchThreads = threads,
            GpuLayerCount = 0,
            TypeK = GGMLType.GGML_TYPE_F32,
            TypeV = GGMLType.GGML_TYPE_F32,
            FlashAttention = false,
        };
        var weights = LLamaWeights.LoadFromFile(p);
        try
        {
            return new LlamaCppModel(weights, weights.CreateContext(p), contextSize);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    /// <summary>Runs <paramref name="tokens"/> as one fresh sequence (positions 0..n-1); returns logits [n][vocab].</summary>
    public float[][] Evaluate(IReadOnlyList<int> tokens)
    {
        if (tokens.Count == 0 || tokens.Count > _contextSize)
            throw new ArgumentException($"{tokens.Count} tokens do not fit a context of {_contextSize}", nameof(tokens));
        _context.NativeHandle.MemoryClear();
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Count; i++) batch.Add((LLamaToken)tokens[i], i, LLamaSeqId.Zero, true);
        Decode(batch);
        var logits = new float[tokens.Count][];
        for (int i = 0; i < tokens.Count; i++) logits[i] = _context.NativeHandle.GetLogitsIth(i).ToArray();
        return logits;
    }

    /// <summary>Greedy continuation: the <paramref name="count"/> argmax tokens after <paramref name="prompt"/>, one decode per token.</summary>
    public int[] Greedy(IReadOnlyList<int> prompt, int count)
    {
        if (prompt.Count + count > _contextSize)
            throw new ArgumentException($"{prompt.Count} + {count} tokens do not fit a context of {_contextSize}", nameof(count));
        float[] last = Evaluate(prompt)[^1];
        var result = new int[count];
        var batch = new LLamaBatch();
        for (int i = 0; i < count; i++)
        {
            result[i] = ArgMax(last);
            batch.Clear();
            batch.Add((LLamaToken)result[i], prompt.Count + i, LLamaSeqId.Zero, true);
            Decode(batch);
            last = _context.NativeHandle.GetLogitsIth(0).ToArray();
        }
        return result;
    }

    /// <summary>Index of the largest value (the first on ties).</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    private void Decode(LLamaBatch batch)
    {
        var result = _context.NativeHandle.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {result}");
    }

    /// <summary>Frees the context and the weights.</summary>
    public void Dispose()
    {
        _context.Dispose();
        _weights.Dispose();
    }
}
