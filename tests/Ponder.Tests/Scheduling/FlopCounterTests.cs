using CsCheck;
using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Cache;
using Ponder.Models;
using Ponder.Sampling;
using Ponder.Scheduling;
using Ponder.TestSupport;

namespace Ponder.Tests.Scheduling;

/// <summary>
/// The three FLOP numbers must agree exactly: the counter's prediction, what the backend's ops report in their ledger,
/// and an independent formula written here (token by token). Also the paper's approximations.
/// </summary>
public sealed class FlopCounterTests
{
    /// <summary>
    /// Hand-worked: d = 4, h = 2, g = 1, e = 2, f = 6, L = 1, V = 10 (tied). A 3-token prompt, then one decode token.
    /// <code>
    /// prefill (n = 3, p = 0, 1 output row):
    ///   projections  per token 2·4·(2·2 + 2·1·2) = 64 (QKV) + 2·2·2·4 = 32 (O) + 2·3·4·6 = 144 (SwiGLU) = 240;  ×3 = 720
    ///   attention    K = 3·0 + 3·4/2 = 6;  4·2·2·6 = 96
    ///   lm head      2·4·10 = 80
    ///   elementwise  norms 2·4·3·4 = 96, RoPE 3·3·(2+1)·2 = 54, softmax 5·2·6 = 60, residuals 2·3·4 = 24,
    ///                SwiGLU 5·3·6 = 90, final norm 4·1·4 = 16                    = 340
    ///   total        720 + 96 + 80 + 340 = 1236
    /// decode (n = 1, p = 3):
    ///   projections 240; K = 3 + 1 = 4, attention 64; lm head 80;
    ///   elementwise 32 + 18 + 40 + 8 + 30 + 16 = 144;   total 528
    /// </code>
    /// </summary>
    [Fact]
    public async Task HandWorkedExampleMatchesCounterLedgerAndScheduler()
    {
        var config = new ModelConfig { Vocab = 10, DModel = 4, NLayers = 1, NHeads = 2, NKvHeads = 1, HeadDim = 2, DFf = 6, TiedEmbeddings = true, MaxPositions = 16 };
        var counter = new FlopCounter(config);
        Assert.Equal(new FlopCounts(720, 96, 80, 0, 340), counter.Chunk(3, 0, 1));
        Assert.Equal(new FlopCounts(240, 64, 80, 0, 144), counter.Chunk(1, 3, 1));
        Assert.Equal(1236 + 528, (counter.Chunk(3, 0, 1) + counter.Chunk(1, 3, 1)).Total);

        using var backend = new CpuBackend(threads: 1);
        using var model = new Transformer(backend, new HostTensorSource(config, RandomModel.Create(config, 3)));
        using var pool = new BlockPool(backend, config.ToKvLayout(4), 4);
        var scheduler = new StepScheduler();
        var scheduled = new ScheduledModel("policy", model, pool);
        using var request = scheduler.CreateRequest();
        using var seq = new Sequence(pool);
        var logits = new float[10];
        var before = backend.Flops.Snapshot();
        Assert.True((await scheduler.SubmitAsync(request, scheduled, seq, [1, 2, 3], logits)).Completed);
        Assert.Equal(1236, backend.Flops.Since(before).Total);
        Assert.True((await scheduler.SubmitAsync(request, scheduled, seq, [4], logits)).Completed);
        Assert.Equal(1236 + 528, backend.Flops.Since(before).Total);
        var report = request.Report();
        Assert.Equal(1236 + 528, report.Flops.Total);
        Assert.Equal(4, report.TokensComputed);
        Assert.Equal(2 * config.NonEmbeddingParameters * 4, report.Models[0].ApproximateFlops);
    }

    /// <summary>
    /// Qwen3 (per-head q/k norms) and Phi-3 generate through the scheduler, which checks every forward's ledger against
    /// its prediction, and the request is charged exactly the naive formula for the tokens it computed.
    /// </summary>
    [Theory]
    [InlineData(nameof(TestConfigs.TinyQwen3))]
    [InlineData(nameof(TestConfigs.TinyPhi3))]
    public async Task Scheduled_generation_charges_the_naive_formula_beyond_llama(string name)
    {
        var config = TestConfigs.Forward[name];
        await using var model = PonderModel.Load(new HostTensorSource(config, RandomModel.Create(config, 7), name), tokenizer: null,
            new ModelOptions { Threads = 1, KvCacheTokens = 256 });
        using var request = model.CreateRequest();
        int count = 0;
        await foreach (var _ in model.GenerateAsync([1, 2, 3], new SamplingOptions { Temperature = 0, MaxNewTokens = 4, StopAtEos = false }, request)) count++;
        Assert.Equal(4, count);
        // The prompt's 3 tokens (logits at the last), then 3 decodes; the 4th token needs no forward.
        long expected = NaiveFlops.Chunk(config, 3, 0, 1) + NaiveFlops.Chunk(config, 1, 3, 1) + NaiveFlops.Chunk(config, 1, 4, 1) + NaiveFlops.Chunk(config, 1, 5, 1);
        Assert.Equal(expected, request.Report().Flops.Total);
    }

    static readonly Gen<ModelConfig> GenConfig =
        Gen.OneOf(
            Gen.Int[0, TestConfigs.Forward.Count - 1].Select(i => TestConfigs.Forward.Values.ElementAt(i)),
            Gen.Select(Gen.Int[1, 3], Gen.Int[1, 3], Gen.Int[1, 3], Gen.Int[1, 2], Gen.Int[4, 40], Gen.Bool, (layers, groups, kvHeads, halfHeadDim, dFf, bias) =>
                new ModelConfig
                {
                    Vocab = 37, DModel = 12, NLayers = layers, NHeads = groups * kvHeads, NKvHeads = kvHeads, HeadDim = 2 * halfHeadDim,
                    DFf = dFf, QkvBias = bias, Architecture = bias ? Architecture.Qwen2 : Architecture.Llama, TiedEmbeddings = !bias, MaxPositions = 128,
                }),
            Gen.Int[1, 2].Select(labels => TestConfigs.TinyValueHead with { NumLabels = labels }),
            Gen.Const(TestConfigs.TinyProcessReward));

    /// <summary>(cached context p, new tokens n) per sequence of a batch.</summary>
    static readonly Gen<(int P, int N)[]> GenBatch = Gen.Select(Gen.Int[0, 20], Gen.Int[1, 9], (p, n) => (p, n)).Array[1, 5];

    /// <summary>
    /// Random models and batch compositions: every sequence is first prefilled to its context p (one forward per
    /// sequence), then all run together with their n new tokens. Prediction, ledger and the naive formula agree.
    /// </summary>
    [Fact]
    public void PredictionEqualsLedgerEqualsNaiveFormulaOverRandomBatches() =>
        Gen.Select(GenConfig, GenBatch, Gen.Int[0, 1000]).Sample((config, batch, seed) =>
        {
            using var backend = new CpuBackend(threads: 1);
            var tensors = RandomModel.Create(config, seed);
            bool headBias = config.Head == HeadKind.Value && seed % 2 == 0;
            if (headBias) tensors[TensorNames.ValueHeadBias] = new HostTensor([config.NumLabels]);
            using var model = new Transformer(backend, new HostTensorSource(config, tensors));
            Assert.Equal(headBias || config.Head == HeadKind.ProcessReward, model.HasHeadBias);
            var counter = FlopCounter.For(model);
            using var pool = new BlockPool(backend, config.ToKvLayout(4), 64);
            var sequences = new List<Sequence>();
            try
            {
                var layout = new BatchLayout(4);
                var rng = new Random(seed);
                foreach (var (p, _) in batch)
                {
                    var s = new Sequence(pool);
                    sequences.Add(s);
                    if (p == 0) continue;
                    s.Append([.. Enumerable.Range(0, p).Select(_ => rng.Next(config.Vocab))]);
                    layout.Clear();
                    layout.Add(0, p, s.BlockTable);
                    var before0 = backend.Flops.Snapshot();
                    model.Forward(layout, s.TokenSpan, pool.Storage, [p - 1], new float[config.HeadRows]);
                    Assert.Equal(counter.Chunk(p, 0, 1), FlopCounts.From(backend.Flops.Since(before0)));
                    Assert.Equal(NaiveFlops.Chunk(config, p, 0, 1, headBias), counter.Chunk(p, 0, 1).Total);
                    s.MarkComputed(p);
                }
                var sb = new SequenceBatch(4);
                var chunks = new List<ChunkWork>();
                long naive = 0;
                for (int i = 0; i < batch.Length; i++)
                {
                    var (p, n) = batch[i];
                    sequences[i].Append([.. Enumerable.Range(0, n).Select(_ => rng.Next(config.Vocab))]);
                    sb.Add(sequences[i]);
                    chunks.Add(new ChunkWork(n, p, 1));
                    naive += NaiveFlops.Chunk(config, n, p, 1, headBias);
                }
                var predicted = counter.Forward([.. chunks]);
                var before = backend.Flops.Snapshot();
                model.Forward(sb.Layout, sb.Tokens, pool.Storage, sb.OutputRows, new float[sb.OutputRows.Length * config.HeadRows]);
                Assert.Equal(predicted, FlopCounts.From(backend.Flops.Since(before)));
                Assert.Equal(naive, predicted.Total);
            }
            finally { foreach (var s in sequences) s.Dispose(); }
        }, iter: 25);

    /// <summary>
    /// Through the scheduler, with prefix-cache hits and random prefill chunk caps: each request's charged FLOPs equal
    /// the naive formula for exactly the tokens that were not served from the cache, and the sum over requests
    /// equals the backend's ledger. Saved FLOPs equal what the cached tokens would have cost.
    /// </summary>
    [Fact]
    public void SchedulerChargesExactlyWithPrefixHitsAndChunking() =>
        Gen.Select(Gen.Int[1, 12], Gen.Int[0, 40].Array[2, 5], Gen.Int[0, 1000]).Sample((cap, promptLengths, seed) =>
        {
            var config = SchedulingRig.PolicyConfig;
            using var rig = new SchedulingRig(options: new SchedulerOptions { MaxTokensPerForward = cap });
            var rng = new Random(seed);
            int[] document = [.. Enumerable.Range(0, 48).Select(_ => rng.Next(config.Vocab))];
            long charged = 0;
            var before = rig.Backend.Flops.Snapshot();
            foreach (int length in promptLengths)
            {
                int[] prompt = document[..(length + 1)];
                using var request = rig.Scheduler.CreateRequest();
                Sequence s;
                s = rig.Scheduler.CreateSequence(request, rig.Policy, prompt);
                int cached = s.ComputedLength;
                if (cached > 0) request.RecordReuse("policy", cached, rig.Policy.Counter.Prefill(cached));
                var result = rig.Scheduler.SubmitAsync(request, rig.Policy, s, [], new float[config.Vocab]).Result;
                Assert.True(result.Completed);
                var report = request.Report().Models.Single();
                Assert.Equal(NaiveFlops.Chunk(config, prompt.Length - cached, cached, 1), report.Flops.Total);
                Assert.Equal(prompt.Length - cached, report.TokensComputed);
                Assert.Equal(cached == 0 ? 0 : NaiveFlops.Chunk(config, cached, 0, 0), report.SavedFlops.Total);
                Assert.Equal((prompt.Length - cached + cap - 1) / cap, report.Forwards);
                charged += report.Flops.Total;
                rig.Scheduler.Release(s);
            }
            Assert.Equal(charged, rig.Backend.Flops.Since(before).Total);
            rig.AssertNoLeaks();
        }, iter: 15);

    [Fact]
    public void DecodeSumsChunksOfOneToken()
    {
        var counter = new FlopCounter(TestConfigs.TinyQwen2Bias);
        var sum = FlopCounts.Zero;
        for (int j = 0; j < 7; j++) sum += counter.Chunk(1, 5 + j, 1);
        Assert.Equal(sum, counter.Decode(5, 7));
        Assert.Equal(FlopCounts.Zero, counter.Decode(5, 0));
    }

    [Fact]
    public void ChunkingAPrefillCostsTheSameAsOnePiece()
    {
        var counter = new FlopCounter(TestConfigs.TinyUntied);
        var whole = counter.Chunk(37, 0, 1);
        var pieces = counter.Chunk(10, 0, 0) + counter.Chunk(20, 10, 0) + counter.Chunk(7, 30, 1);
        Assert.Equal(whole, pieces);
    }

    [Fact]
    public void PaperApproximations()
    {
        Assert.Equal(6L * 1000 * 50, PaperFlops.Pretraining(1000, 50));
        Assert.Equal(2L * 1000 * 50, PaperFlops.Inference(1000, 50));
        Assert.Equal(0.25, PaperFlops.Ratio(1, 4));
        // M + 3(M-1)/R: M = 14, R = 0.16 -> 14 + 39/0.16 = 257.75
        Assert.Equal(257.75, PaperFlops.TestTimeMultiplier(14, 0.16), 9);
        Assert.Equal(1, PaperFlops.TestTimeMultiplier(1, 22));
        Assert.Throws<ArgumentOutOfRangeException>(() => PaperFlops.TestTimeMultiplier(14, 0));
        var tiny = RandomModels.Preset("tiny");
        Assert.Equal(2 * tiny.NonEmbeddingParameters * 9, new FlopCounter(tiny).Approximate(9));
    }
}
