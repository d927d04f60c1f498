using LLama;
using LLama.Common;
using LLama.Native;
using Ponder.Models;
using Ponder.Models.Gguf;
using Ponder.Tensors;

namespace Ponder.Bench;

/// <summary>llama.cpp through LLamaSharp 0.30, as the peer every bench compares against, on the same GGUF file.</summary>
public sealed class LlamaCpp : IDisposable
{
    readonly LLamaWeights _weights;
    readonly LLamaContext _context;
    readonly LLamaBatch _batch = new();

    /// <param name="sequences">Sequences decoding together (llama.cpp's unified cache: they share a copied prompt).</param>
    public LlamaCpp(string gguf, int contextSize, int sequences = 1, int threads = 2)
    {
        var p = new ModelParams(gguf)
        {
            ContextSize = (uint)contextSize, BatchSize = 512, UBatchSize = 512, Threads = threads, BatchThreads = threads,
            GpuLayerCount = 0, SeqMax = (uint)sequences, KVUnified = true,
        };
        _weights = LLamaWeights.LoadFromFile(p);
        _context = _weights.CreateContext(p);
    }

    public void Clear() => _context.NativeHandle.MemoryClear();

    /// <summary>Decodes <paramref name="tokens"/> of one sequence from position <paramref name="start"/> (logits for the last only).</summary>
    public void Run(ReadOnlySpan<int> tokens, int start, int sequence = 0)
    {
        for (int i = 0; i < tokens.Length; i += 512)
        {
            _batch.Clear();
            int count = Math.Min(512, tokens.Length - i);
            for (int j = 0; j < count; j++)
                _batch.Add((LLamaToken)tokens[i + j], start + i + j, (LLamaSeqId)sequence, i + j == tokens.Length - 1);
            Decode();
        }
    }

    /// <summary>Shares sequence 0's cells with sequences 1..n-1 (llama.cpp's prompt sharing).</summary>
    public void CopyPrompt(int sequences, int length)
    {
        for (int s = 1; s < sequences; s++) _context.NativeHandle.MemorySequenceCopy((LLamaSeqId)0, (LLamaSeqId)s, 0, length);
    }

    /// <summary>One decode token for each of <paramref name="sequences"/> sequences at <paramref name="position"/>, in one batch.</summary>
    public void DecodeStep(int sequences, int position, Func<int, int> token)
    {
        _batch.Clear();
        for (int s = 0; s < sequences; s++) _batch.Add((LLamaToken)token(s), position, (LLamaSeqId)s, true);
        Decode();
    }

    /// <summary>
    /// Appends <paramref name="stepTokens"/> tokens (<paramref name="token"/>(sequence, i)) to each of
    /// <paramref name="sequences"/> sequences at <paramref name="position"/>, whole sequences per batch of at most 512
    /// tokens, with one output (the last token) per sequence.
    /// </summary>
    public void ScoreSteps(int sequences, int position, int stepTokens, Func<int, int, int> token)
    {
        int perBatch = Math.Max(1, 512 / stepTokens);
        for (int s0 = 0; s0 < sequences; s0 += perBatch)
        {
            _batch.Clear();
            for (int s = s0; s < Math.Min(sequences, s0 + perBatch); s++)
                for (int i = 0; i < stepTokens; i++)
                    _batch.Add((LLamaToken)token(s, i), position + i, (LLamaSeqId)s, i == stepTokens - 1);
            Decode();
        }
    }

    void Decode()
    {
        var r = _context.NativeHandle.Decode(_batch);
        if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {r}");
    }

    public void Dispose() { _context.Dispose(); _weights.Dispose(); }

    /// <summary>The SmolLM2-135M-shaped random model (seed 1) as GGUF in the temp folder, written once per dtype.</summary>
    public static string SmolLm2Gguf(DType dtype = DType.F32)
    {
        string path = Path.Combine(Path.GetTempPath(), $"ponder-bench-smollm2-135m-{dtype}.gguf".ToLowerInvariant());
        if (!File.Exists(path))
        {
            var config = RandomModels.Preset("smollm2-135m");
            string tmp = path + ".tmp";
            GgufWriter.Write(tmp, config, RandomModels.Create(config, 1), dtype);
            File.Move(tmp, path, overwrite: true);
        }
        return path;
    }
}
