using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Cache;
using Ponder.Models;

namespace Ponder.Tests.Forward;

/// <summary>Runs the engine's forward over one or more sequences with a private block pool.</summary>
sealed class ForwardHarness : IDisposable
{
    public ForwardHarness(ModelConfig config, IReadOnlyDictionary<string, HostTensor> tensors, int blockSize = 16, int kvTokens = 4096, IBackend? backend = null)
        : this(new HostTensorSource(config, tensors), blockSize, kvTokens, backend) { }

    /// <summary>Loads the model straight from <paramref name="source"/> (a file keeps its weights' formats where the backend can).</summary>
    public ForwardHarness(ITensorSource source, int blockSize = 16, int kvTokens = 4096, IBackend? backend = null)
    {
        Backend = backend ?? new CpuBackend();
        Transformer = new Transformer(Backend, source);
        Pool = BlockPool.ForTokens(Backend, source.Config.ToKvLayout(blockSize), kvTokens);
    }

    public IBackend Backend { get; }
    public Transformer Transformer { get; }
    public BlockPool Pool { get; }
    public ModelConfig Config => Transformer.Config;

    /// <summary>Appends <paramref name="tokens"/> to each sequence, runs one batched forward, returns outputs at every new row.</summary>
    public float[][] Run(IReadOnlyList<(Sequence Seq, int[] Tokens)> work)
    {
        var batch = new BatchLayout(Pool.BlockSize);
        var all = new List<int>();
        foreach (var (seq, tokens) in work)
        {
            int p = seq.Length;
            seq.Append(tokens);
            batch.Add(p, tokens.Length, seq.BlockTable);
            all.AddRange(tokens);
        }
        int rows = all.Count, width = Config.HeadRows;
        var output = new float[rows * width];
        Transformer.Forward(batch, all.ToArray(), Pool.Storage, Enumerable.Range(0, rows).ToArray(), output);
        foreach (var (seq, _) in work) seq.MarkComputed(seq.Length);
        return Enumerable.Range(0, rows).Select(r => output.AsSpan(r * width, width).ToArray()).ToArray();
    }

    public float[][] Run(Sequence seq, int[] tokens) => Run([(seq, tokens)]);

    public void Dispose()
    {
        Pool.Dispose();
        Transformer.Dispose();
        Backend.Dispose();
    }
}
