using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Ponder.Backends.Cpu;
using Ponder.Backends.Cpu.Gemm;
using Ponder.Backends.Profiling;
using Ponder.Tensors;

namespace Ponder.Bench;

// Run: dotnet run -c Release --project bench/Ponder.Bench -- --filter '*Gemm*'
// Every suite below shares one config whose columns turn times into GFLOP/s and GB/s and divide them by the machine
// ceilings measured in the same run (GemmCeilingBench), so a loaded machine shows in both numbers.

/// <summary>CpuWeight (the forward's linear layers): y[tokens, rows] = x[tokens, cols] · Wᵀ at the model's shapes.</summary>
[Config(typeof(GemmBenchConfig))]
public class GemmWeightBench
{
    /// <summary>W as rows x cols (out x in): attention 576², MLP up/down, the 49152-token vocabulary head.</summary>
    [Params("576x576", "1536x576", "576x1536", "49152x576")]
    public string Weight { get; set; } = "576x576";

    /// <summary>1 = single-token decode (memory bound), 64 = batched decode, 256 = prefill.</summary>
    [Params(1, 64, 256)]
    public int Tokens { get; set; }

    WeightCase _case = null!;

    [GlobalSetup]
    public void Setup() => _case = new WeightCase(Weight, DType.F32, Tokens);

    [Benchmark]
    public void Multiply() => _case.Run();
}

/// <summary>CpuWeight kept as F16 or Q8_0 (converted per panel during the multiply): decode and prefill.</summary>
[Config(typeof(GemmBenchConfig))]
public class GemmTypedWeightBench
{
    [Params("1536x576", "49152x576")]
    public string Weight { get; set; } = "1536x576";

    [Params(DType.F16, DType.Q8_0)]
    public DType Type { get; set; }

    [Params(1, 256)]
    public int Tokens { get; set; }

    WeightCase _case = null!;

    [GlobalSetup]
    public void Setup() => _case = new WeightCase(Weight, Type, Tokens);

    [Benchmark]
    public void Multiply() => _case.Run();
}

/// <summary>Sgemm (the trainer's backward) at a typical shape, all four transposes.</summary>
[Config(typeof(GemmBenchConfig))]
public class GemmSgemmBench
{
    /// <summary>m x n x k: an activation gradient (tokens x dModel x dModel) and a weight gradient (k = 4096 tokens).</summary>
    [Params("1024x576x576", "576x1536x4096")]
    public string Shape { get; set; } = "1024x576x576";

    [Params("NN", "NT", "TN", "TT")]
    public string Transpose { get; set; } = "NN";

    int _m, _n, _k;
    float[] _a = null!, _b = null!, _c = null!;

    [GlobalSetup]
    public void Setup()
    {
        (_m, _n, _k) = GemmWork.ParseShape(Shape);
        _a = GemmWork.Random((long)_m * _k, 1);
        _b = GemmWork.Random((long)_k * _n, 2);
        _c = new float[_m * _n];
    }

    [Benchmark]
    public void Multiply()
    {
        bool ta = Transpose[0] == 'T', tb = Transpose[1] == 'T';
        Sgemm.Multiply(ta, tb, _m, _n, _k, 1f, _a, ta ? _m : _k, _b, tb ? _k : _n, 0f, _c, _n);
    }
}

/// <summary>
/// The machine's ceilings, on the same threads the GEMMs use: FMA peak (independent FMA chains in registers, the widest
/// accelerated vector) and read bandwidth (summing a buffer far larger than the last-level cache).
/// </summary>
[Config(typeof(GemmBenchConfig))]
public class GemmCeilingBench
{
    /// <summary>FMA loop trips per thread; each trip is <see cref="FmaChains"/> vector FMAs.</summary>
    public const long FmaTrips = 2_000_000;
    public const int FmaChains = 12;
    /// <summary>Floats read by the bandwidth probe (256 MiB, 8x a 32 MiB L3).</summary>
    public const long ReadFloats = 64L << 20;

    float[] _buffer = null!;
    readonly FmaPart _fma = new();
    readonly ReadPart _read = new();

    [GlobalSetup]
    public void Setup()
    {
        _buffer = GC.AllocateUninitializedArray<float>((int)ReadFloats, pinned: true);
        _buffer.AsSpan().Fill(1f);
        _read.Buffer = _buffer;
    }

    /// <summary>FLOPs: <see cref="FmaTrips"/> * <see cref="FmaChains"/> * 2 * lanes * threads.</summary>
    [Benchmark]
    public float FmaPeak()
    {
        GemmWorkers.Shared.Run(_fma, Threads);
        return _fma.Sink;
    }

    /// <summary>Bytes: <see cref="ReadFloats"/> * 4.</summary>
    [Benchmark]
    public float ReadBandwidth()
    {
        GemmWorkers.Shared.Run(_read, Threads);
        return _read.Sink;
    }

    internal static int Threads => Math.Min(Sgemm.MaxThreads, GemmWorkers.Shared.MaxParts);

    internal static int Lanes => Roofline.CpuVectorIsa.Lanes;

    /// <summary>The profiler's FMA probe (12 chains in the widest accelerated vector) on each worker.</summary>
    internal sealed class FmaPart : IParallelPart
    {
        public float Sink;

        public void Execute(int part, int parts) => Sink += Roofline.FmaLoop(Lanes, FmaTrips);
    }

    sealed class ReadPart : IParallelPart
    {
        public float[] Buffer = [];
        public float Sink;

        public unsafe void Execute(int part, int parts)
        {
            long lo = Buffer.LongLength * part / parts, hi = Buffer.LongLength * (part + 1) / parts;
            fixed (float* p = Buffer) Sink += Sum(p + lo, hi - lo);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
        static unsafe float Sum(float* p, long count)
        {
            Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
            long i = 0;
            for (; i + 32 <= count; i += 32)
            {
                s0 += Vector256.Load(p + i); s1 += Vector256.Load(p + i + 8);
                s2 += Vector256.Load(p + i + 16); s3 += Vector256.Load(p + i + 24);
            }
            float tail = 0;
            for (; i < count; i++) tail += p[i];
            return Vector256.Sum((s0 + s1) + (s2 + s3)) + tail;
        }
    }
}

/// <summary>
/// A load-independent companion to the BenchmarkDotNet suites: one thread's GFLOP per CPU-second at the compute-bound
/// shapes, divided by the FMA peak per CPU-second measured the same way. On a shared machine wall-clock rates move with
/// other people's builds; CPU time charges only this process, so the ratio shows the kernels' own efficiency
/// (cache sharing with the neighbours still shows). Decode is memory bound, so it is reported instead as wall-clock GB/s
/// against the read-bandwidth probe, interleaved round by round so that both see the same load (best of 5 each).
/// Run: dotnet run -c Release --project bench/Ponder.Bench -- --gemm-cputime
/// </summary>
internal static class GemmCpuTime
{
    public static void Run(bool decodeOnly = false)
    {
        int saved = Sgemm.MaxThreads;
        Sgemm.MaxThreads = 1;
        try
        {
            // Decode kernels alone: one token against a weight that stays in L2/L3, so the row kernel's own cost shows
            // (memory-bound decode needs about bandwidth / bytes-per-weight / 2 cores of it: ~13 G weights/s per core for F16 at 54 GB/s).
            Console.WriteLine("| decode n=1, 1536x576, one thread | G weights per CPU-s |");
            Console.WriteLine("|---|---|");
            foreach (var type in new[] { DType.F32, DType.F16, DType.BF16, DType.Q8_0 })
                Console.WriteLine($"| {type} | {Best(new WeightCase("1536x576", type, 1).Run, 1536.0 * 576):F1} |");
            if (!decodeOnly) Compute();
        }
        finally
        {
            Sgemm.MaxThreads = saved;
        }
        Decode();
    }

    /// <summary>Prefill, batched decode and trainer shapes, one thread, against the FMA peak.</summary>
    static void Compute()
    {
        {
            var fma = new GemmCeilingBench.FmaPart();
            double peak = Best(() => fma.Execute(0, 1), GemmCeilingBench.FmaTrips * GemmCeilingBench.FmaChains * 2.0 * GemmCeilingBench.Lanes);
            Console.WriteLine($"FMA peak, one thread: {peak:F1} GFLOP per CPU-second ({GemmShape.Best.Isa} kernel)");
            Console.WriteLine("| case | GFLOP per CPU-s | of FMA peak |");
            Console.WriteLine("|---|---|---|");
            KernelAlone(peak);
            foreach (string weight in new[] { "576x576", "1536x576", "576x1536", "49152x576" })
                foreach (int tokens in new[] { 64, 256 })
                {
                    var (rows, cols) = GemmWork.ParseWeight(weight);
                    var c = new WeightCase(weight, DType.F32, tokens);
                    Report($"CpuWeight {weight} tokens={tokens}", Best(c.Run, 2.0 * tokens * rows * cols), peak);
                }
            // Trainer shapes: a square activation gradient, a small batch (packing weighs most), a vocabulary-sized n.
            foreach (var (m, n, k) in new[] { (1024, 576, 576), (64, 576, 576), (4096, 300, 576) })
            {
                var a = GemmWork.Random(m * k, 1);
                var b = GemmWork.Random(k * n, 2);
                var y = new float[m * n];
                foreach (string t in new[] { "NN", "NT", "TN", "TT" })
                {
                    bool ta = t[0] == 'T', tb = t[1] == 'T';
                    Report($"Sgemm {m}x{n}x{k} {t}", Best(() => Sgemm.Multiply(ta, tb, m, n, k, 1f, a, ta ? m : k, b, tb ? k : n, 0f, y, n), 2.0 * m * n * k), peak);
                }
            }
        }
    }

    /// <summary>
    /// The micro-kernel alone: one full MR x NR tile at the depth block a 576-deep weight uses, its panels in L1 and its
    /// C tile in L1, called back to back (kernel plus the C update, no packing, no cache misses). What the blocked
    /// GEMM loses beyond this is in the memory hierarchy and the loops around the kernel.
    /// </summary>
    static unsafe void KernelAlone(double peak)
    {
        var shape = GemmShape.Best;
        const int kc = 192;
        var a = GemmWork.Random(kc * shape.MR, 1);
        var b = GemmWork.Random(kc * shape.NR, 2);
        var c = new float[shape.MR * shape.NR];
        var tile = new float[shape.MR * shape.NR];
        const int calls = 64;
        fixed (float* pa = a, pb = b, pc = c, pt = tile)
        {
            float* xa = pa, xb = pb, xc = pc, xt = pt;
            Report($"kernel alone {shape.MR}x{shape.NR}, depth {kc} (L1)", Best(() =>
            {
                for (int i = 0; i < calls; i++) GemmKernels.Tile(shape.Isa, shape.MR, shape.NR, kc, xa, xb, xt, xc, shape.NR, 1f, 1f);
            }, 2.0 * calls * kc * shape.MR * shape.NR), peak);
        }
    }

    /// <summary>n = 1 against the 49152 x 576 head (113 MiB in f32, far beyond L3) on all threads, vs. the read probe.</summary>
    static void Decode()
    {
        var ceiling = new GemmCeilingBench();
        ceiling.Setup();
        var cases = new[] { DType.F32, DType.F16, DType.Q8_0 }.Select(t => (Type: t, Case: new WeightCase("49152x576", t, 1))).ToArray();
        double read = 0;
        var best = new double[cases.Length];
        for (int round = 0; round < 5; round++)
        {
            read = Math.Max(read, GemmCeilingBench.ReadFloats * 4.0 / WallSeconds(() => ceiling.ReadBandwidth()) / 1e9);
            for (int i = 0; i < cases.Length; i++)
                best[i] = Math.Max(best[i], DTypes.ByteSize(cases[i].Type, 49152L * 576) / WallSeconds(cases[i].Case.Run) / 1e9);
        }
        Console.WriteLine($"read bandwidth, {GemmCeilingBench.Threads} threads: {read:F1} GB/s");
        Console.WriteLine("| decode n=1, 49152x576 | GB/s of its own format | of read bandwidth |");
        Console.WriteLine("|---|---|---|");
        for (int i = 0; i < cases.Length; i++) Console.WriteLine($"| {cases[i].Type} | {best[i]:F1} | {best[i] / read:P0} |");
    }

    static double WallSeconds(Action f)
    {
        f();
        var wall = System.Diagnostics.Stopwatch.StartNew();
        int calls = 0;
        while (wall.ElapsedMilliseconds < 300) { f(); calls++; }
        return wall.Elapsed.TotalSeconds / calls;
    }

    static void Report(string name, double rate, double peak) =>
        Console.WriteLine($"| {name} | {rate:F1} | {rate / peak:P0} |");

    /// <summary>Best of 5 rounds of GFLOP per CPU-second, each round at least 200 ms.</summary>
    static double Best(Action f, double flops)
    {
        var process = System.Diagnostics.Process.GetCurrentProcess();
        for (int i = 0; i < 3; i++) f();
        double best = 0;
        for (int round = 0; round < 5; round++)
        {
            process.Refresh();
            var cpu0 = process.TotalProcessorTime;
            var wall = System.Diagnostics.Stopwatch.StartNew();
            int calls = 0;
            while (wall.ElapsedMilliseconds < 200) { f(); calls++; }
            process.Refresh();
            best = Math.Max(best, flops * calls / (process.TotalProcessorTime - cpu0).TotalSeconds / 1e9);
        }
        return best;
    }
}

/// <summary>A random weight ("rows x cols") of the given type and a random batch of tokens to multiply by it.</summary>
internal sealed class WeightCase
{
    readonly CpuWeight _w;
    readonly float[] _x, _y;
    readonly int _tokens;

    public WeightCase(string weight, DType type, int tokens)
    {
        var (rows, cols) = GemmWork.ParseWeight(weight);
        var values = GemmWork.Random((long)rows * cols, 1);
        _w = type == DType.F32 ? CpuWeight.Create(values, rows, cols) : CpuWeight.Create(DTypes.FromF32(type, values), type, rows, cols);
        _x = GemmWork.Random((long)tokens * cols, 2);
        _y = new float[tokens * rows];
        _tokens = tokens;
    }

    public void Run() => _w.Multiply(_x, _tokens, _y);
}

/// <summary>FLOPs and bytes of each benchmark case, and the shape parsing the suites share.</summary>
internal static class GemmWork
{
    public static (int Rows, int Cols) ParseWeight(string s)
    {
        var p = s.Split('x');
        return (int.Parse(p[0], CultureInfo.InvariantCulture), int.Parse(p[1], CultureInfo.InvariantCulture));
    }

    public static (int M, int N, int K) ParseShape(string s)
    {
        var p = s.Split('x');
        return (int.Parse(p[0], CultureInfo.InvariantCulture), int.Parse(p[1], CultureInfo.InvariantCulture), int.Parse(p[2], CultureInfo.InvariantCulture));
    }

    public static float[] Random(long count, int seed)
    {
        var rng = new Random(seed);
        var x = GC.AllocateUninitializedArray<float>(checked((int)count));
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    static object? Param(BenchmarkCase c, string name) => c.Parameters.Items.FirstOrDefault(p => p.Name == name)?.Value;

    /// <summary>(FLOPs, bytes read from memory) of one invocation; 0 where a figure does not apply.</summary>
    public static (double Flops, double Bytes) Of(BenchmarkCase c)
    {
        var type = c.Descriptor.Type;
        if (type == typeof(GemmWeightBench))
        {
            var (rows, cols) = ParseWeight((string)Param(c, nameof(GemmWeightBench.Weight))!);
            int tokens = (int)Param(c, nameof(GemmWeightBench.Tokens))!;
            // The packed weight is read once per call; x and y are small next to it.
            return (2.0 * tokens * rows * cols, 4.0 * rows * cols);
        }
        if (type == typeof(GemmTypedWeightBench))
        {
            var (rows, cols) = ParseWeight((string)Param(c, nameof(GemmTypedWeightBench.Weight))!);
            int tokens = (int)Param(c, nameof(GemmTypedWeightBench.Tokens))!;
            var dtype = (DType)Param(c, nameof(GemmTypedWeightBench.Type))!;
            return (2.0 * tokens * rows * cols, DTypes.ByteSize(dtype, (long)rows * cols));
        }
        if (type == typeof(GemmSgemmBench))
        {
            var (m, n, k) = ParseShape((string)Param(c, nameof(GemmSgemmBench.Shape))!);
            return (2.0 * m * n * k, 0);
        }
        if (type == typeof(GemmCeilingBench))
            return c.Descriptor.WorkloadMethod.Name == nameof(GemmCeilingBench.FmaPeak)
                ? ((double)GemmCeilingBench.FmaTrips * GemmCeilingBench.FmaChains * 2 * GemmCeilingBench.Lanes * GemmCeilingBench.Threads, 0)
                : (0, GemmCeilingBench.ReadFloats * 4.0);
        return (0, 0);
    }

    /// <summary>Mean seconds of a case in this run, or null when it did not run.</summary>
    public static double? Seconds(Summary summary, BenchmarkCase c) =>
        summary[c]?.ResultStatistics?.Mean is double ns ? ns * 1e-9 : null;

    /// <summary>The ceiling measured in this run by the named GemmCeilingBench method (GFLOP/s or GB/s).</summary>
    public static double? Ceiling(Summary summary, string method)
    {
        var c = summary.BenchmarksCases.FirstOrDefault(b => b.Descriptor.Type == typeof(GemmCeilingBench) && b.Descriptor.WorkloadMethod.Name == method);
        if (c == null || Seconds(summary, c) is not double s) return null;
        var (flops, bytes) = Of(c);
        return (flops > 0 ? flops : bytes) / s / 1e9;
    }
}

/// <summary>A rate column (GFLOP/s or GB/s) with its share of the ceiling measured in the same run.</summary>
internal sealed class GemmRateColumn(bool flops) : IColumn
{
    public string Id => flops ? "Gemm.GFLOPs" : "Gemm.GBs";
    public string ColumnName => flops ? "GFLOP/s (of FMA peak)" : "GB/s (of read BW)";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => flops ? 0 : 1;
    public bool IsNumeric => false;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => flops
        ? "FLOPs per second, and the ratio to GemmCeilingBench.FmaPeak of this run"
        : "bytes of weight (or buffer) read per second, and the ratio to GemmCeilingBench.ReadBandwidth of this run";
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var (f, b) = GemmWork.Of(benchmarkCase);
        double work = flops ? f : b;
        if (work == 0 || GemmWork.Seconds(summary, benchmarkCase) is not double s) return "-";
        double rate = work / s / 1e9;
        string text = rate.ToString("F1", CultureInfo.InvariantCulture);
        return GemmWork.Ceiling(summary, flops ? nameof(GemmCeilingBench.FmaPeak) : nameof(GemmCeilingBench.ReadBandwidth)) is double ceiling
            ? $"{text} ({rate / ceiling:P0})"
            : text;
    }
}

/// <summary>A short job (a few iterations: the machine is shared, so long runs buy little) plus the rate columns.</summary>
internal sealed class GemmBenchConfig : ManualConfig
{
    public GemmBenchConfig()
    {
        AddJob(Job.ShortRun.WithWarmupCount(2).WithIterationCount(5).WithLaunchCount(1));
        AddColumn(new GemmRateColumn(flops: true), new GemmRateColumn(flops: false));
        Options |= ConfigOptions.JoinSummary;
    }
}
