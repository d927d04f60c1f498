using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Cache;
using Ponder.Models;
using Ponder.Tensors;

namespace Ponder.Bench;

/// <summary>
/// Prefill and single-stream decode on a random model shaped like SmolLM2-135M (dModel 576, 30 layers, 9 heads,
/// 3 KV heads, dFf 1536, vocab 49152, tied), written by the bench as GGUF and run by Ponder and by llama.cpp
/// (LLamaSharp 0.30, 2 threads) in the same run. Times are per token (OperationsPerInvoke); the Ratio column is
/// Ponder's time over llama.cpp's (below 1 = Ponder faster).
/// Run: <c>./build.sh bench --filter '*ForwardBench*'</c> (add <c>--envVars PONDER_BENCH_DTYPE:F16</c> for f16 weights).
/// </summary>
[Config(typeof(Config))]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory), CategoriesColumn]
public class ForwardBench
{
    sealed class Config : ManualConfig
    {
        public Config() => AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance)
            .WithWarmupCount(2).WithIterationCount(5).WithLaunchCount(1).WithUnrollFactor(1).WithInvocationCount(1));
    }

    public const int PromptTokens = 256, DecodeTokens = 32, DecodePrompt = 16;
    string _path = "";
    int[] _tokens = [];
    CpuBackend _backend = null!;
    Transformer _model = null!;
    BlockPool _pool = null!;
    BatchLayout _batch = null!;
    Sequence? _sequence;
    float[] _logits = [];
    LlamaCpp _llama = null!;

    [GlobalSetup]
    public void Setup()
    {
        var config = RandomModels.Preset("smollm2-135m");
        _path = LlamaCpp.SmolLm2Gguf(Enum.Parse<DType>(Environment.GetEnvironmentVariable("PONDER_BENCH_DTYPE") ?? "F32"));
        var rng = new Sampling.Rng(7);
        _tokens = Enumerable.Range(0, PromptTokens + DecodeTokens).Select(_ => rng.NextInt(config.Vocab)).ToArray();

        _backend = new CpuBackend(2);
        using (var source = ModelFiles.Open(_path)) _model = new Transformer(_backend, source);
        _pool = BlockPool.ForTokens(_backend, config.ToKvLayout(), 1024);
        _batch = new BatchLayout(_pool.BlockSize);
        _logits = new float[config.Vocab];

        _llama = new LlamaCpp(_path, contextSize: 1024);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _sequence?.Dispose();
        _llama.Dispose();
        _pool.Dispose(); _model.Dispose(); _backend.Dispose();
    }

    void PonderRun(ReadOnlySpan<int> tokens)
    {
        int p = _sequence!.Length;
        _sequence.Append(tokens);
        _batch.Clear();
        _batch.Add(p, tokens.Length, _sequence.BlockTable);
        Span<int> last = [tokens.Length - 1];
        _model.Forward(_batch, tokens, _pool.Storage, last, _logits);
        _sequence.MarkComputed(_sequence.Length);
    }

    void LlamaRun(ReadOnlySpan<int> tokens, int start) => _llama.Run(tokens, start);

    [IterationSetup(Targets = [nameof(PonderPrefill)])]
    public void FreshPonder() { _sequence?.Dispose(); _sequence = new Sequence(_pool); }

    [IterationSetup(Targets = [nameof(LlamaPrefill)])]
    public void FreshLlama() => _llama.Clear();

    [IterationSetup(Targets = [nameof(PonderDecode)])]
    public void PonderDecodeSetup() { FreshPonder(); PonderRun(_tokens.AsSpan(0, DecodePrompt)); }

    [IterationSetup(Targets = [nameof(LlamaDecode)])]
    public void LlamaDecodeSetup() { FreshLlama(); LlamaRun(_tokens.AsSpan(0, DecodePrompt), 0); }

    [Benchmark(OperationsPerInvoke = PromptTokens), BenchmarkCategory("prefill-256")]
    public void PonderPrefill() => PonderRun(_tokens.AsSpan(0, PromptTokens));

    [Benchmark(Baseline = true, OperationsPerInvoke = PromptTokens), BenchmarkCategory("prefill-256")]
    public void LlamaPrefill() => LlamaRun(_tokens.AsSpan(0, PromptTokens), 0);

    [Benchmark(OperationsPerInvoke = DecodeTokens), BenchmarkCategory("decode")]
    public void PonderDecode()
    {
        for (int i = 0; i < DecodeTokens; i++) PonderRun(_tokens.AsSpan(DecodePrompt + i, 1));
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = DecodeTokens), BenchmarkCategory("decode")]
    public void LlamaDecode()
    {
        for (int i = 0; i < DecodeTokens; i++) LlamaRun(_tokens.AsSpan(DecodePrompt + i, 1), DecodePrompt + i);
    }
}
