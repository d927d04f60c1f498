using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Cache;
using Ponder.Models;

namespace Ponder.Bench;

/// <summary>
/// The paged KV cache under a beam-search-shaped workload (a shared 128-token prompt, N beams, every 16-32 tokens
/// the best N/4 are kept and each forked 4 ways):
/// <list type="bullet">
/// <item>memory and tokens computed with sharing (forks, copy-on-write) vs without (every beam its own full copy),
/// printed once per N by <see cref="Setup"/> (bookkeeping only, so it is exact, not timed);</item>
/// <item><see cref="DecodeStep"/>: one batched decode forward over N beams (N tokens, each reading its own blocks)
/// on a SmolLM2-135M-shaped random model; aggregate tok/s = N / mean.</item>
/// </list>
/// <item><see cref="LlamaDecodeStep"/>: llama.cpp on the same model (same GGUF the Ponder side loads), N sequences
/// sharing the prompt through <c>MemorySequenceCopy</c> in its unified cache, one token each in one batch. The Ratio
/// column is Ponder's time over llama.cpp's (below 1 = Ponder faster).</item>
/// </summary>
[Config(typeof(ShortInProcess))]
public class KvCacheBench
{
    /// <summary>A short in-process job: one forward per iteration (each needs fresh beams), 2 warmups, 5 measured.</summary>
    sealed class ShortInProcess : ManualConfig
    {
        public ShortInProcess() => AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance)
            .WithLaunchCount(1).WithWarmupCount(2).WithIterationCount(5).WithInvocationCount(1).WithUnrollFactor(1));
    }

    const int PromptTokens = 128, Rounds = 8, Width = 4, BlockSize = 16;

    /// <summary>SmolLM2-135M's shape (dModel 576, 30 layers, 9 heads, 3 KV heads, dFf 1536, vocab 49152, tied).</summary>
    public static ModelConfig SmolLm2Shape => RandomModels.Preset("smollm2-135m");

    /// <summary>Beams in the search.</summary>
    [Params(16, 64)]
    public int N { get; set; }

    Transformer? _model;
    BlockPool? _pool;
    Sequence? _prompt;
    readonly List<Sequence> _beams = [];
    readonly SequenceBatch _batch = new(BlockSize);
    float[] _logits = [];
    int[] _promptTokens = [];
    LlamaCpp? _llama;

    /// <summary>Prints the memory comparison, builds the random model and computes the shared prompt.</summary>
    [GlobalSetup]
    public void Setup()
    {
        var layout = SmolLm2Shape.ToKvLayout(BlockSize);
        var shared = RunBeamSearch(N, share: true);
        var copied = RunBeamSearch(N, share: false);
        double mib = layout.BytesPerBlock / 1048576.0;
        Console.WriteLine($"// KV memory, beam search N={N} (prompt {PromptTokens}, {Rounds} rounds of 16-32 tokens, keep N/{Width} x {Width} forks, SmolLM2-135M KV {layout.BytesPerBlock / 1024} KiB/block of {BlockSize}):");
        Console.WriteLine($"//   sharing: peak {shared.PeakBlocks * mib:F1} MiB ({shared.PeakBlocks} blocks), tokens computed {shared.TokensComputed}, copy-on-write copies {shared.BlockCopies}");
        Console.WriteLine($"//   no sharing (own copies): peak {copied.PeakBlocks * mib:F1} MiB ({copied.PeakBlocks} blocks), tokens computed {copied.TokensComputed}, block copies at forks {copied.BlockCopies}");
        Console.WriteLine($"//   memory saved by sharing: {100.0 * (copied.PeakBlocks - shared.PeakBlocks) / copied.PeakBlocks:F1}%, tokens computed saved: {100.0 * (copied.TokensComputed - shared.TokensComputed) / copied.TokensComputed:F1}%");

        string gguf = LlamaCpp.SmolLm2Gguf();
        using (var source = ModelFiles.Open(gguf)) _model = new Transformer(new CpuBackend(), source);
        _llama = new LlamaCpp(gguf, contextSize: PromptTokens + 4 * N + 64, sequences: N);
        _pool = new BlockPool(_model.Backend, layout, (PromptTokens / BlockSize + 4) * N + 16);
        _prompt = new Sequence(_pool);
        _promptTokens = [.. Enumerable.Range(0, PromptTokens).Select(i => (i * 7919) % SmolLm2Shape.Vocab)];
        _prompt.Append(_promptTokens);
        _batch.Clear();
        _batch.Add(_prompt);
        _logits = new float[N * SmolLm2Shape.Vocab];
        _model.Forward(_batch.Layout, _batch.Tokens, _pool.Storage, _batch.OutputRows, _logits.AsSpan(0, SmolLm2Shape.Vocab));
        _batch.MarkComputed();

        var watch = new Stopwatch();
        for (int i = 0; i < 3; i++) { ForkBeams(); watch.Restart(); DecodeStep(); watch.Stop(); }
        Console.WriteLine($"// decode N={N}: {N / watch.Elapsed.TotalSeconds:F1} tok/s aggregate (one warm step, Stopwatch), {_model.Backend.Name} backend, {Environment.ProcessorCount} cores");
    }

    /// <summary>Fresh beams forked from the prompt, each with one pending token.</summary>
    [IterationSetup(Target = nameof(DecodeStep))]
    public void ForkBeams()
    {
        foreach (var b in _beams) b.Dispose();
        _beams.Clear();
        for (int i = 0; i < N; i++)
        {
            var beam = _prompt!.Fork();
            beam.Append((i * 31 + 7) % SmolLm2Shape.Vocab);
            _beams.Add(beam);
        }
    }

    /// <summary>llama.cpp: the prompt decoded once in sequence 0 and shared with the other N - 1.</summary>
    [IterationSetup(Target = nameof(LlamaDecodeStep))]
    public void LlamaShareprompt()
    {
        _llama!.Clear();
        _llama.Run(_promptTokens, 0);
        _llama.CopyPrompt(N, PromptTokens);
    }

    /// <summary>llama.cpp: one decode token for each of the N sequences, in one batch.</summary>
    [Benchmark(Baseline = true)]
    public void LlamaDecodeStep() => _llama!.DecodeStep(N, PromptTokens, s => (s * 31 + 7) % SmolLm2Shape.Vocab);

    /// <summary>One decode token for each of the N beams, batched into one forward.</summary>
    [Benchmark]
    public void DecodeStep()
    {
        _batch.Clear();
        foreach (var b in _beams) _batch.Add(b);
        _model!.Forward(_batch.Layout, _batch.Tokens, _pool!.Storage, _batch.OutputRows, _logits);
        _batch.MarkComputed();
    }

    /// <summary>Releases the model and cache.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var b in _beams) b.Dispose();
        _prompt?.Dispose();
        _pool?.Dispose();
        _model?.Dispose();
        _llama?.Dispose();
    }

    /// <summary>Peak blocks held, tokens whose K/V were computed, and blocks copied, for one beam search.</summary>
    public readonly record struct BeamRun(int PeakBlocks, long TokensComputed, long BlockCopies);

    /// <summary>
    /// Runs the beam-search cache workload (no model math: the cache's bookkeeping and block copies are real, K/V
    /// values are not). With <paramref name="share"/>, beams fork (shared blocks, copy-on-write) from one computed
    /// prompt; without, each beam prefills its own prompt and a fork copies every block of its parent.
    /// Both modes draw the same tree. A small block shape stands in for the model's (memory is counted in blocks).
    /// </summary>
    public static BeamRun RunBeamSearch(int n, bool share, int seed = 7)
    {
        var random = new Random(seed);
        using var backend = new CpuBackend(threads: 1);
        int maxTokens = PromptTokens + Rounds * 32;
        using var pool = new BlockPool(backend, new KvLayout(1, 1, 2, BlockSize), n * ((maxTokens + BlockSize - 1) / BlockSize + 1));
        long computed = 0, copies = 0;
        int[] prompt = [.. Enumerable.Range(0, PromptTokens)];

        Sequence Copy(Sequence parent)
        {
            var child = new Sequence(pool);
            child.Append(parent.TokenSpan);
            for (int i = 0; i < child.Blocks.Count; i++) backend.CopyKvBlock(pool.Storage, parent.Blocks[i], child.Blocks[i]);
            child.MarkComputed(parent.ComputedLength);
            copies += child.Blocks.Count;
            return child;
        }

        Sequence Prefill()
        {
            var s = new Sequence(pool);
            s.Append(prompt);
            s.MarkComputed(PromptTokens);
            computed += PromptTokens;
            return s;
        }

        var beams = new List<Sequence>();
        if (share)
        {
            using var root = Prefill();
            for (int i = 0; i < n; i++) beams.Add(root.Fork());
        }
        else for (int i = 0; i < n; i++) beams.Add(Prefill());

        for (int round = 0; round < Rounds; round++)
        {
            int stepTokens = random.Next(16, 33);
            for (int t = 0; t < stepTokens; t++)
                for (int b = 0; b < beams.Count; b++)
                {
                    beams[b].Append(random.Next(1000));
                    beams[b].MarkComputed(beams[b].Length);
                    computed++;
                }
            if (round == Rounds - 1) break;
            // Keep the best N/Width (random scores stand in for the PRM's) and fork each Width ways.
            var order = beams.OrderBy(_ => random.Next()).ToList();
            var kept = order.Take(n / Width).ToList();
            foreach (var dropped in order.Skip(n / Width)) dropped.Dispose();
            beams.Clear();
            foreach (var survivor in kept)
            {
                beams.Add(survivor);
                for (int f = 1; f < Width; f++) beams.Add(share ? survivor.Fork() : Copy(survivor));
            }
        }
        var run = new BeamRun(pool.PeakUsedBlocks, computed, share ? pool.CopyOnWriteCopies : copies);
        foreach (var b in beams) b.Dispose();
        pool.ValidateInvariants();
        return run;
    }
}
