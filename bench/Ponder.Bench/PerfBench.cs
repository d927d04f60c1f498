using System.Diagnostics;
using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Backends.Cpu.Gemm;
using Ponder.Cache;
using Ponder.Models;
using Ponder.Models.Gguf;
using Ponder.Tensors;

namespace Ponder.Bench;

/// <summary>
/// The CPU performance table: every workload run by Ponder and by llama.cpp (LLamaSharp 0.30, same GGUF, 2
/// threads) in alternating rounds of one process, with the machine's ceilings measured in the same run. On a shared,
/// loaded machine a round's wall time is mostly other people's work, so each side reports its best round (the least
/// disturbed) and the CPU time it used per token (this process only), and the ratio divides the best rounds.
/// Run: <c>./build.sh bench --perf [rounds] [filter]</c> (filter: substrings of the workload names, comma-separated,
/// e.g. "decode" or "decode F,decode Q" for the single-stream decode rows).
/// </summary>
public static partial class PerfBench
{
    const int Threads = 2;

    /// <summary>One side of a workload: <see cref="Prepare"/> (untimed) then <see cref="Run"/> (timed) processes <see cref="Tokens"/> tokens.</summary>
    interface ISide
    {
        int Tokens { get; }
        void Prepare();
        void Run();
    }

    /// <param name="FlopsPerToken">Exact FLOPs per token of <see cref="ISide.Tokens"/> (Ponder's counter), for a GFLOP/s column; 0 when not given.</param>
    sealed record Workload(string Name, Func<ISide> Ponder, Func<ISide>? Llama, Func<Ceilings, double> CeilingTokPerS, string CeilingNote, double FlopsPerToken = 0);

    /// <summary>FMA peak (GFLOP/s) and read bandwidth (GB/s) on <see cref="Threads"/> worker threads, best of a few tries.</summary>
    public sealed record Ceilings(double Gflops, double GBps);

    public static void Run(string[] args)
    {
        int rounds = args.Length > 0 && int.TryParse(args[0], out int r) ? r : 5;
        string[] filters = args.Length > 1 ? args[1].Split(',') : [""];
        Sgemm.MaxThreads = Threads;
        var ceilings = MeasureCeilings();
        Console.WriteLine($"ceilings ({Threads} threads): FMA {ceilings.Gflops:F0} GFLOP/s, read {ceilings.GBps:F1} GB/s; load average {LoadAverage()}");

        var smol = RandomModels.Preset("smollm2-135m");
        var tiny = RandomModels.Preset("tiny");
        var rows = new List<string>();
        foreach (var w in Workloads(smol, tiny))
        {
            if (!filters.Any(f => w.Name.Contains(f, StringComparison.OrdinalIgnoreCase))) continue;
            var (ponder, llama) = Measure(w, rounds);
            double ceiling = w.CeilingTokPerS(ceilings);
            string ratio = llama is { } l ? $"{ponder.TokPerS / l.TokPerS:F2}x" : "";
            string Gflops(double tokPerS) => w.FlopsPerToken > 0 ? $", {tokPerS * w.FlopsPerToken / 1e9:F1} GFLOP/s" : "";
            string row = $"| {w.Name} | {ponder.TokPerS:F1} ({ponder.CpuMsPerToken:F2} CPU-ms/tok{Gflops(ponder.TokPerS)}) | "
                + (llama is { } l2 ? $"{l2.TokPerS:F1} ({l2.CpuMsPerToken:F2} CPU-ms/tok{Gflops(l2.TokPerS)})" : "n/a") + $" | {ratio} | {ceiling:F0} ({w.CeilingNote}) | {100 * ponder.TokPerS / ceiling:F0}% |";
            Console.WriteLine(row);
            rows.Add(row);
        }
        Console.WriteLine();
        Console.WriteLine($"| workload | Ponder tok/s (best round) | llama.cpp tok/s (best round) | ratio | ceiling tok/s | Ponder of ceiling |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (var row in rows) Console.WriteLine(row);
        Console.WriteLine($"load average at the end: {LoadAverage()}");
    }

    static IEnumerable<Workload> Workloads(ModelConfig smol, ModelConfig tiny)
    {
        const int Prompt = 256, DecodePrompt = 16, Decode = 32, SharedPrompt = 128, Steps = 4;
        double layerFlops = 2.0 * LayerWeights(smol);           // per token, projections (attention is small at these lengths)
        double headFlops = 2.0 * smol.Vocab * smol.DModel;
        foreach (var type in new[] { DType.F32, DType.F16 })
            yield return new($"prefill-{Prompt} {type}", () => new PonderPrefill(Models.Get(smol, type), Prompt), () => new LlamaPrefill(Models.Llama(smol, type, 1), Prompt),
                c => c.Gflops * 1e9 / layerFlops, "FMA peak");
        foreach (var type in new[] { DType.F32, DType.F16, DType.Q8_0 })
        {
            double bytes = StreamedBytes(smol, type);
            yield return new($"decode {type}", () => new PonderDecode(Models.Get(smol, type), DecodePrompt, Decode), () => new LlamaDecode(Models.Llama(smol, type, 1), DecodePrompt, Decode),
                c => c.GBps * 1e9 / bytes, $"read BW / {bytes / 1e6:F0} MB");
        }
        // llama.cpp's Q4_K_M of the same random weights. SmolLM2's rows (576) are not multiples of 256, so its Q4_K_M is
        // mostly the fallbacks Q5_0 and Q8_0 (as a real SmolLM2 Q4_K_M file is); Qwen3-0.6B's layers (1024, 3072) take
        // Q4_K and Q6_K, here with 4 of its 28 layers and a 16384-token vocabulary to keep the file small.
        var qwen3 = RandomModels.Preset("qwen3-0.6b") with { NLayers = 4, Vocab = 16384, EosTokenIds = [] };
        foreach (var (label, config) in new[] { ("smollm2", smol), ("qwen3-0.6b 4 layers", qwen3) })
        {
            string path = Models.Quantized(config, "Q4_K_M");
            yield return new($"decode Q4_K_M {label}", () => new PonderDecode(Models.Get(path, config), DecodePrompt, Decode),
                () => new LlamaDecode(new LlamaCpp(path, contextSize: 4096, sequences: 1, threads: Threads), DecodePrompt, Decode, config.Vocab),
                c => c.GBps * 1e9 / DecodeBytes(path, config), $"read BW / Ponder's {DecodeBytes(path, config) / 1e6:F0} MB");
        }
        foreach (int n in new[] { 16, 64 })
            yield return new($"batched decode {n} seqs F32", () => new PonderBatched(Models.Get(smol, DType.F32), n, SharedPrompt, Steps),
                () => new LlamaBatched(Models.Llama(smol, DType.F32, n), n, SharedPrompt, Steps),
                c => c.Gflops * 1e9 / (layerFlops + headFlops), "FMA peak");
        // A beam-search step (policy decode of every beam, then the value-head PRM scoring each beam's new step): the
        // ceiling is the FMA peak over the exact FLOPs per generated token, both models included.
        foreach (int n in new[] { 16, 64 })
        {
            double flopsPerToken = BeamStepFlops(smol, PrmConfig(smol), n, SharedPrompt).Total / (double)(n * BeamStepTokens);
            yield return new($"beam step {n} beams F32 + PRM", () => new PonderBeamStep(Models.Get(smol, DType.F32), Prm(smol), n, SharedPrompt),
                () => new LlamaBeamStep(Models.Llama(smol, DType.F32, n), new LlamaCpp(Models.Gguf(smol, DType.F32), contextSize: 4096, sequences: n, threads: Threads),
                    n, SharedPrompt, smol.Vocab),
                c => c.Gflops * 1e9 / flopsPerToken, "FMA peak", flopsPerToken);
        }
        foreach (int n in new[] { 1, 64 })
            yield return new($"tiny decode {n} seqs F32", () => new PonderBatched(Models.Get(tiny, DType.F32), n, 32, 16),
                () => new LlamaBatched(Models.Llama(tiny, DType.F32, n), n, 32, 16),
                c => c.GBps * 1e9 / Math.Max(1, StreamedBytes(tiny, DType.F32) / n), "read BW");
    }

    /// <summary>Bytes of a loaded model's weights one decode step reads: all but the f32 embedding table (one row of it is read).</summary>
    static double DecodeBytes(string path, ModelConfig c) => Models.Get(path, c).Model.WeightBytes - (double)c.Vocab * c.DModel * sizeof(float);

    static long LayerWeights(ModelConfig c) => (long)c.NLayers * c.DModel * (c.QDim + 2 * c.KvDim + c.QDim + 3 * c.DFf);

    /// <summary>Bytes of weights one decode step reads: every layer's projections and the head, in their format.</summary>
    static double StreamedBytes(ModelConfig c, DType type) =>
        DTypes.ByteSize(type, LayerWeights(c) + (long)c.Vocab * c.DModel) * (type == DType.Q8_0 ? 36.0 / 34 : 1); // Ponder keeps f32 Q8_0 scales

    static ((double TokPerS, double CpuMsPerToken) Ponder, (double TokPerS, double CpuMsPerToken)? Llama) Measure(Workload w, int rounds)
    {
        var ponder = w.Ponder();
        var llama = w.Llama?.Invoke();
        // Warm-up: tier-1 JIT for Ponder, page faults and thread start-up for both.
        for (int i = 0; i < 2; i++) { ponder.Prepare(); ponder.Run(); llama?.Prepare(); llama?.Run(); }
        var pBest = double.MaxValue; var lBest = double.MaxValue;
        var pCpu = new List<double>(); var lCpu = new List<double>();
        for (int i = 0; i < rounds; i++)
        {
            Time(ponder, ref pBest, pCpu);
            if (llama != null) Time(llama, ref lBest, lCpu);
        }
        (llama as IDisposable)?.Dispose();
        return ((ponder.Tokens / pBest, Median(pCpu) * 1e3 / ponder.Tokens),
            llama == null ? null : (llama.Tokens / lBest, Median(lCpu) * 1e3 / llama.Tokens));
    }

    static void Time(ISide side, ref double best, List<double> cpu)
    {
        side.Prepare();
        var proc = Process.GetCurrentProcess();
        var cpu0 = proc.TotalProcessorTime;
        long t0 = Stopwatch.GetTimestamp();
        side.Run();
        double wall = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        proc.Refresh();
        cpu.Add((proc.TotalProcessorTime - cpu0).TotalSeconds);
        best = Math.Min(best, wall);
    }

    static double Median(List<double> xs) { xs.Sort(); return xs.Count == 0 ? double.NaN : xs[xs.Count / 2]; }

    static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Split(' ')[0]; } catch (IOException) { return "?"; }
    }

    static Ceilings MeasureCeilings()
    {
        var bench = new GemmCeilingBench();
        bench.Setup();
        double fmaFlops = (double)GemmCeilingBench.FmaTrips * GemmCeilingBench.FmaChains * 2 * GemmCeilingBench.Lanes * GemmCeilingBench.Threads;
        double gflops = 0, gbps = 0;
        for (int i = 0; i < 5; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            bench.FmaPeak();
            gflops = Math.Max(gflops, fmaFlops / Stopwatch.GetElapsedTime(t0).TotalSeconds / 1e9);
            t0 = Stopwatch.GetTimestamp();
            bench.ReadBandwidth();
            gbps = Math.Max(gbps, GemmCeilingBench.ReadFloats * 4.0 / Stopwatch.GetElapsedTime(t0).TotalSeconds / 1e9);
        }
        return new Ceilings(gflops, gbps);
    }

    /// <summary>Loaded models and their GGUF files, one per (shape, dtype), kept for the whole run.</summary>
    static class Models
    {
        static readonly Dictionary<string, (Transformer Model, BlockPool Pool)> s_ponder = [];

        public static string Gguf(ModelConfig config, DType type)
        {
            if (config.DModel == 576) return LlamaCpp.SmolLm2Gguf(type);
            string path = Path.Combine(Path.GetTempPath(), $"ponder-perf-tiny-{type}.gguf".ToLowerInvariant());
            if (!File.Exists(path)) GgufWriter.Write(path, config, RandomModels.Create(config, 1), type);
            return path;
        }

        public static (Transformer Model, BlockPool Pool) Get(ModelConfig config, DType type) => Get(Gguf(config, type), config);

        /// <summary>The model in <paramref name="path"/> loaded on the CPU backend (weights kept in the file's formats).</summary>
        public static (Transformer Model, BlockPool Pool) Get(string path, ModelConfig config)
        {
            if (!s_ponder.TryGetValue(path, out var m))
            {
                var backend = new CpuBackend(Threads);
                Transformer model;
                using (var source = ModelFiles.Open(path)) model = new Transformer(backend, source);
                m = (model, BlockPool.ForTokens(backend, config.ToKvLayout(), 64 * 64 + 2048));
                s_ponder[path] = m;
            }
            return m;
        }

        /// <summary>llama.cpp's quantization (<paramref name="ftype"/>, e.g. "Q4_K_M") of the f32 random model, made once.</summary>
        public static string Quantized(ModelConfig config, string ftype)
        {
            string path = Path.Combine(Path.GetTempPath(), $"ponder-perf-{config.Architecture}-{config.DModel}-{config.NLayers}-{config.Vocab}-{ftype}.gguf".ToLowerInvariant());
            if (File.Exists(path)) return path;
            string f32 = path + ".f32", tmp = path + ".tmp";
            GgufWriter.Write(f32, config, RandomModels.Create(config, 1), DType.F32);
            LLama.Native.NativeApi.llama_empty_call();
            if (!LLama.LLamaQuantizer.Quantize(f32, tmp, ftype, nthread: Threads, allowRequantize: false, quantizeOutputTensor: true))
                throw new InvalidOperationException($"llama.cpp could not quantize {f32} to {ftype}");
            File.Delete(f32);
            File.Move(tmp, path, overwrite: true);
            return path;
        }

        public static LlamaCpp Llama(ModelConfig config, DType type, int sequences) => new(Gguf(config, type), contextSize: 4096, sequences: sequences, threads: Threads);
    }

    static int[] Tokens(int count, int vocab, int seed) { var rng = new Random(seed); return [.. Enumerable.Range(0, count).Select(_ => rng.Next(vocab))]; }

    sealed class PonderPrefill((Transformer Model, BlockPool Pool) m, int prompt) : ISide
    {
        readonly int[] _tokens = Tokens(prompt, m.Model.Config.Vocab, 1);
        readonly float[] _logits = new float[m.Model.Config.HeadRows];
        readonly BatchLayout _batch = new(m.Pool.BlockSize);
        Sequence? _seq;
        public int Tokens => prompt;
        public void Prepare() { _seq?.Dispose(); _seq = new Sequence(m.Pool); _seq.Append(_tokens); _batch.Clear(); _batch.Add(0, prompt, _seq.BlockTable); }
        public void Run() => m.Model.Forward(_batch, _tokens, m.Pool.Storage, [prompt - 1], _logits);
    }

    sealed class PonderDecode((Transformer Model, BlockPool Pool) m, int prompt, int decode) : ISide
    {
        readonly int[] _tokens = Tokens(prompt + decode, m.Model.Config.Vocab, 2);
        readonly float[] _logits = new float[m.Model.Config.HeadRows];
        readonly BatchLayout _batch = new(m.Pool.BlockSize);
        Sequence? _seq;
        public int Tokens => decode;
        public void Prepare()
        {
            _seq?.Dispose(); _seq = new Sequence(m.Pool);
            Step(_tokens.AsSpan(0, prompt));
        }
        public void Run() { for (int i = 0; i < decode; i++) Step(_tokens.AsSpan(prompt + i, 1)); }
        void Step(ReadOnlySpan<int> tokens)
        {
            int p = _seq!.Length;
            _seq.Append(tokens);
            _batch.Clear(); _batch.Add(p, tokens.Length, _seq.BlockTable);
            m.Model.Forward(_batch, tokens, m.Pool.Storage, [tokens.Length - 1], _logits);
            _seq.MarkComputed(_seq.Length);
        }
    }

    /// <summary>N sequences forked from one computed prompt (shared blocks), then <c>steps</c> batched decode steps.</summary>
    sealed class PonderBatched((Transformer Model, BlockPool Pool) m, int n, int prompt, int steps) : ISide
    {
        readonly int _vocab = m.Model.Config.Vocab;
        readonly List<Sequence> _beams = [];
        readonly SequenceBatch _batch = new(m.Pool.BlockSize);
        readonly float[] _logits = new float[n * m.Model.Config.HeadRows];
        Sequence? _prompt;
        public int Tokens => n * steps;
        public void Prepare()
        {
            foreach (var b in _beams) b.Dispose();
            _beams.Clear();
            if (_prompt == null)
            {
                _prompt = new Sequence(m.Pool);
                _prompt.Append(PerfBench.Tokens(prompt, _vocab, 3));
                Forward();
            }
            for (int i = 0; i < n; i++) { var b = _prompt.Fork(); b.Append((i * 31 + 7) % _vocab); _beams.Add(b); }
        }
        public void Run()
        {
            for (int s = 0; s < steps; s++)
            {
                Forward();
                if (s + 1 < steps) for (int i = 0; i < n; i++) _beams[i].Append((i * 17 + s * 5 + 3) % _vocab);
            }
        }
        void Forward()
        {
            _batch.Clear();
            if (_beams.Count == 0) _batch.Add(_prompt!); else foreach (var b in _beams) _batch.Add(b);
            m.Model.Forward(_batch.Layout, _batch.Tokens, m.Pool.Storage, _batch.OutputRows, _logits.AsSpan(0, _batch.OutputRows.Length * m.Model.Config.HeadRows));
            _batch.MarkComputed();
        }
    }

    sealed class LlamaPrefill(LlamaCpp llama, int prompt) : ISide, IDisposable
    {
        readonly int[] _tokens = Tokens(prompt, 49152, 1);
        public int Tokens => prompt;
        public void Prepare() => llama.Clear();
        public void Run() => llama.Run(_tokens, 0);
        public void Dispose() => llama.Dispose();
    }

    sealed class LlamaDecode(LlamaCpp llama, int prompt, int decode, int vocab = 49152) : ISide, IDisposable
    {
        readonly int[] _tokens = Tokens(prompt + decode, vocab, 2);
        public int Tokens => decode;
        public void Prepare() { llama.Clear(); llama.Run(_tokens.AsSpan(0, prompt), 0); }
        public void Run() { for (int i = 0; i < decode; i++) llama.Run(_tokens.AsSpan(prompt + i, 1), prompt + i); }
        public void Dispose() => llama.Dispose();
    }

    sealed class LlamaBatched(LlamaCpp llama, int n, int prompt, int steps) : ISide, IDisposable
    {
        public int Tokens => n * steps;
        public void Prepare() { llama.Clear(); llama.Run(PerfBench.Tokens(prompt, 200, 3), 0); llama.CopyPrompt(n, prompt); }
        public void Run() { for (int s = 0; s < steps; s++) llama.DecodeStep(n, prompt + s, i => (i * 31 + 7 + s) % 200); }
        public void Dispose() => llama.Dispose();
    }
}
