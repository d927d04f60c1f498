using Ponder.Backends;
using Ponder.Backends.Profiling;
using Ponder.Cache;
using Ponder.Models;

namespace Ponder.Kernels.Tests;

/// <summary>The whole forward on ILGPU kernels against the CPU backend on a small random model.</summary>
public sealed class ForwardTests
{
    /// <summary>GQA (4 query heads on 2 KV heads), QKV biases, blocks of 4 so contexts end mid-block.</summary>
    internal static readonly ModelConfig Config = new()
    {
        Vocab = 37, DModel = 24, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 6, DFf = 40, MaxPositions = 64, QkvBias = true,
    };

    [Fact]
    public void IlgpuCpuAcceleratorMatchesCpuBackend() => CompareForward(TestBackends.IlgpuCpu);

    /// <summary>
    /// Qwen3 (per-head q/k norms, headDim 32 with dModel 32 over 2 heads) with Q5_1 weights: the ILGPU backend
    /// multiplies quantized weights as their f32 dequantization (it keeps no quantized format), the CPU backend keeps
    /// them quantized; logits agree. Small: ILGPU's CPU accelerator is slow.
    /// </summary>
    [Fact]
    public void IlgpuCpuAcceleratorMatchesCpuBackendOnQuantizedQwen3() =>
        CompareForward(TestBackends.IlgpuCpu, new Ponder.TestSupport.QuantizedTestSource(
            Ponder.TestSupport.TestConfigs.TinyQwen3 with { Vocab = 37, DModel = 32, NHeads = 2, NKvHeads = 1, HeadDim = 32, DFf = 64, NLayers = 1 },
            Ponder.Tensors.DType.Q5_1, seed: 2));

    /// <summary>
    /// A process reward head (score.0, ReLU, score.2, both biased) on the Qwen2 backbone: its two labels agree at every
    /// output row and both backends charge the same FLOPs, the ReLU included.
    /// </summary>
    [Fact]
    public void IlgpuCpuAcceleratorMatchesCpuBackendOnAProcessRewardHead()
    {
        // One layer: the body is what the other forward tests cover; the ILGPU CPU accelerator is slow.
        var config = Config with { Architecture = Architecture.Qwen2, Head = HeadKind.ProcessReward, NumLabels = 2, NLayers = 1 };
        CompareForward(TestBackends.IlgpuCpu, new HostTensorSource(config, RandomModels.Create(config, 4UL)));
    }

    /// <summary>
    /// Two sequences prefilled together (5 and 9 tokens), then three batched decode steps: logits agree within 1e-4
    /// (relative) and both backends charge exactly the same FLOPs by category.
    /// </summary>
    internal static void CompareForward(IBackend candidate, ITensorSource? model = null)
    {
        using var source = model ?? new HostTensorSource(Config, RandomModels.Create(Config, 3UL));
        var expected = Run(TestBackends.Cpu, source, out var cpuFlops);
        var actual = Run(candidate, source, out var flops);
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
            Compare.Close(expected[i].Select(x => (double)x).ToArray(), actual[i], 1e-4, $"logits of forward {i}");
        foreach (var c in Enum.GetValues<FlopCategory>()) Assert.Equal(cpuFlops[c], flops[c]);
    }

    static List<float[]> Run(IBackend backend, ITensorSource source, out FlopLedger spent)
    {
        var before = backend.Flops.Snapshot();
        using var model = new Transformer(backend, source);
        var layout = model.Config.ToKvLayout(blockSize: 4);
        using var pool = new BlockPool(backend, layout, 16);
        using var a = new Sequence(pool);
        using var b = new Sequence(pool);
        a.Append([1, 2, 3, 4, 5]);
        b.Append([6, 7, 8, 9, 10, 11, 12, 13, 36]);
        var batch = new BatchLayout(layout.BlockSize);
        var results = new List<float[]>();
        int[] tokens = [.. a.Tokens, .. b.Tokens];
        batch.Add(0, a.Length, a.BlockTable);
        batch.Add(0, b.Length, b.BlockTable);
        results.Add(Forward(model, pool, batch, tokens, [4, 13, 0]));
        a.MarkComputed(a.Length); b.MarkComputed(b.Length);
        for (int step = 0; step < 3; step++)
        {
            a.Append([(step * 7 + 3) % model.Config.Vocab]); b.Append([(step * 11 + 5) % model.Config.Vocab]);
            batch.Clear();
            batch.Add(a.ComputedLength, 1, a.BlockTable);
            batch.Add(b.ComputedLength, 1, b.BlockTable);
            results.Add(Forward(model, pool, batch, [a.Tokens[^1], b.Tokens[^1]], [0, 1]));
            a.MarkComputed(a.Length); b.MarkComputed(b.Length);
        }
        spent = backend.Flops.Since(before);
        return results;
    }

    static float[] Forward(Transformer model, BlockPool pool, BatchLayout batch, int[] tokens, int[] outputRows)
    {
        var logits = new float[outputRows.Length * model.Config.HeadRows];
        Array.Fill(logits, float.NaN);
        model.Forward(batch, tokens, pool.Storage, outputRows, logits);
        return logits;
    }
}
