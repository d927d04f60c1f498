using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Cache;
using Ponder.Models;
using Ponder.Scheduling;
using Ponder.Search.Engine;
using Ponder.TestSupport;
using Ponder.Tokenization;

namespace Ponder.Tests.Scheduling;

/// <summary>A policy and a value-head PRM with random weights on one CPU backend, their pools, and a scheduler.</summary>
sealed class SchedulingRig : IDisposable
{
    /// <summary>Vocabulary of both models: the ASCII range, so every sampled id is one character and generated text encodes back to its ids.</summary>
    public const int Vocab = 128;

    public static ModelConfig PolicyConfig => new()
    {
        Vocab = Vocab, DModel = 32, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 8, DFf = 48, MaxPositions = 256,
    };

    public static ModelConfig PrmConfig => PolicyConfig with { Head = HeadKind.Value, NumLabels = 1, DModel = 24, NHeads = 3, NKvHeads = 1, DFf = 40 };

    /// <param name="manualRounds">No pump: the test runs each round with <c>Scheduler.RunRound()</c> (no threads).</param>
    /// <param name="executor">Replaces the transformer forward (null: the real one).</param>
    public SchedulingRig(int policyBlocks = 256, int prmBlocks = 256, int blockSize = 4, SchedulerOptions? options = null, bool prefixIndex = true, ModelConfig? policy = null,
        bool manualRounds = false, IForwardExecutor? executor = null)
    {
        Backend = new CpuBackend(threads: 1);
        var policyConfig = policy ?? PolicyConfig;
        PolicyTransformer = new Transformer(Backend, new HostTensorSource(policyConfig, RandomModel.Create(policyConfig, 11)));
        PrmTransformer = new Transformer(Backend, new HostTensorSource(PrmConfig, RandomModel.Create(PrmConfig, 12)));
        PolicyPool = new BlockPool(Backend, policyConfig.ToKvLayout(blockSize), policyBlocks);
        PrmPool = new BlockPool(Backend, PrmConfig.ToKvLayout(blockSize), prmBlocks);
        Scheduler = new StepScheduler(options, executor, manualRounds);
        Policy = new ScheduledModel("policy", PolicyTransformer, PolicyPool, prefixIndex ? new PrefixIndex(PolicyPool, "policy") : null);
        Prm = new ScheduledModel("prm", PrmTransformer, PrmPool, prefixIndex ? new PrefixIndex(PrmPool, "prm") : null);
        Tokenizer = new ByteTokenizer(policyConfig.Vocab, policyConfig.EosTokenIds);
    }

    public CpuBackend Backend { get; }
    public Transformer PolicyTransformer { get; }
    public Transformer PrmTransformer { get; }
    public BlockPool PolicyPool { get; }
    public BlockPool PrmPool { get; }
    public StepScheduler Scheduler { get; }
    public ScheduledModel Policy { get; }
    public ScheduledModel Prm { get; }
    public ITokenizer Tokenizer { get; }

    public ScheduledSearchEngine Engine(Budget? budget = null, SearchEngineOptions? options = null, CancellationToken ct = default) =>
        new(Scheduler, Policy, Tokenizer, new ValueHeadVerifier(Prm), budget, options, ct);

    /// <summary>Evicts every cached block and checks that both pools are whole again: nothing leaked.</summary>
    public void AssertNoLeaks()
    {
        foreach (var pool in new[] { PolicyPool, PrmPool })
        {
            pool.ValidateInvariants();
            foreach (var index in pool.Indexes) index.Evict(pool.BlockCount);
            pool.ValidateInvariants();
            Assert.Equal(0, pool.SequenceCount);
            Assert.Equal(pool.BlockCount, pool.FreeBlocks);
        }
    }

    public void Dispose()
    {
        PolicyPool.Dispose(); PrmPool.Dispose(); PolicyTransformer.Dispose(); PrmTransformer.Dispose(); Backend.Dispose();
    }
}

/// <summary>An independent FLOP formula: summed token by token and key by key, not in closed form.</summary>
static class NaiveFlops
{
    public static long Chunk(ModelConfig c, int n, int p, int outputs, bool headBias = false)
    {
        long d = c.DModel, h = c.NHeads, g = c.NKvHeads, e = c.HeadDim, f = c.DFf;
        long total = 0;
        for (int i = 0; i < n; i++)
        {
            long keys = p + i + 1; // this token attends to every position up to its own
            long perLayer =
                2 * d * (h * e) + 2 * 2 * d * (g * e) + 2 * (h * e) * d + 3 * 2 * d * f   // Q, K, V, O, gate, up, down
                + 2 * h * e * keys + 2 * h * e * keys                                      // scores, weighted values
                + 2 * 4 * d + 3 * (h + g) * e + 5 * h * keys + 2 * d + 5 * f               // norms, RoPE, softmax, residuals, SwiGLU
                + (c.QkvBias ? h * e + 2 * g * e : 0)
                + (c.QkNorm ? 4 * (h + g) * e : 0);                                         // per-head q/k RMSNorms (Qwen3)
            total += c.NLayers * perLayer;
        }
        // A process reward head always has its output bias, and before it score.0 (d x d, with bias) and a ReLU.
        bool prm = c.Head == HeadKind.ProcessReward;
        total += outputs * (2 * d * c.HeadRows + 4 * d + (headBias || prm ? c.HeadRows : 0) + (prm ? 2 * d * d + d + d : 0));
        return total;
    }
}
