using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Backends.Profiling;
using Ponder.Cache;
using Ponder.Models;
using Ponder.Models.Gguf;
using Ponder.Tensors;
using Ponder.TestSupport;

namespace Ponder.Tests.Forward;

/// <summary>
/// A model stored as F16 / BF16 / Q8_0 keeps its weights in that format on the CPU backend (half or ~quarter the bytes of
/// f32), and its logits match the same file loaded as f32 copies (a backend without typed weights).
/// </summary>
public sealed class TypedWeightLoadTests
{
    [Theory]
    [InlineData(DType.F16, 0.5)]
    [InlineData(DType.BF16, 0.5)]
    [InlineData(DType.Q8_0, 0.29)] // int8 quants + one f32 scale per 32: 36 / 128 bytes
    public void Typed_weights_stay_small_and_give_the_f32_copys_logits(DType type, double maxByteRatio)
    {
        var config = TestConfigs.Tiny;
        string path = Path.Combine(Path.GetTempPath(), $"ponder-typed-load-{type}-{Environment.ProcessId}.gguf");
        try
        {
            GgufWriter.Write(path, config, RandomModel.Create(config, seed: 4), type);
            int[] tokens = RandomModel.Tokens(config, 11, seed: 6);
            using var file = ModelFiles.Open(path);
            var (typedLogits, typedBytes) = Run(new CpuBackend(), file, tokens);
            // The same decoded values as f32 tensors in memory: the Transformer uploads f32 copies.
            var decoded = file.Tensors.Values.ToDictionary(t => t.Name, t =>
            {
                var h = new HostTensor([.. t.Shape.Select(x => (int)x)]);
                file.ReadF32(t.Name, h.Data);
                return h;
            });
            using var f32 = new HostTensorSource(file.Config, decoded);
            var (f32Logits, f32Bytes) = Run(new CpuBackend(), f32, tokens);

            long embedding = (long)config.Vocab * config.DModel * sizeof(float); // the lookup table is f32 either way
            Assert.InRange((double)(typedBytes - embedding) / (f32Bytes - embedding), 0.2, maxByteRatio);
            TestTolerance.AssertClose([.. f32Logits.Select(x => (double)x)], typedLogits, 1e-4, 1e-4, $"{type} logits vs f32 copies");
        }
        finally { File.Delete(path); }
    }

    static (float[] Logits, long WeightBytes) Run(IBackend backend, ITensorSource source, int[] tokens)
    {
        using (backend)
        using (var model = new Transformer(backend, source))
        using (var pool = BlockPool.ForTokens(backend, model.Config.ToKvLayout(4), 64))
        using (var seq = new Sequence(pool))
        {
            seq.Append(tokens);
            var batch = new BatchLayout(pool.BlockSize);
            batch.Add(0, tokens.Length, seq.BlockTable);
            var logits = new float[model.Config.HeadRows];
            model.Forward(batch, tokens, pool.Storage, [tokens.Length - 1], logits);
            return (logits, model.WeightBytes);
        }
    }
}
