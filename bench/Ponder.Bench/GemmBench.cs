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

    CpuWeight _w = null!;
    float[] _x = null!, _y = null!;

    [GlobalSetup]
    public void Setup()
    {
        var (rows, cols) = GemmWork.ParseWeight(Weight);
        _w = CpuWeight.Create(GemmWork.Random((long)rows * cols, 1), rows, cols);
        _x = GemmWork.Random((long)Tokens * cols, 2);
        _y = new float[Tokens * rows];
    }

    [Benchmark]
    public void Multiply() => _w.Multiply(_x, Tokens, _y);
}

/// <summary>Sgemm (the trainer's backward) at a typical shape, all four transposes.</summary>
[Config(typeof(GemmBenchConfig))]
public class GemmSgemmBench
{
    /// <summary>m x n x k.</summary>
    [Params("1024x576x576", "576x576x1024")]
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

    internal static int Lanes => Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : 4;

    sealed class FmaPart : IParallelPart
    {
        public float Sink;

        public void Execute(int part, int parts) => Sink += Vector512.IsHardwareAccelerated ? Fma512(FmaTrips) : Fma256(FmaTrips);

        [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
        static float Fma256(long trips)
        {
            var m = Vector256.Create(0.999999f);
            var c = Vector256.Create(1e-7f);
            Vector256<float> a0 = m, a1 = m, a2 = m, a3 = m, a4 = m, a5 = m, a6 = m, a7 = m, a8 = m, a9 = m, a10 = m, a11 = m;
            for (long i = 0; i < trips; i++)
            {
                a0 = Vector256.FusedMultiplyAdd(a0, m, c); a1 = Vector256.FusedMultiplyAdd(a1, m, c); a2 = Vector256.FusedMultiplyAdd(a2, m, c);
                a3 = Vector256.FusedMultiplyAdd(a3, m, c); a4 = Vector256.FusedMultiplyAdd(a4, m, c); a5 = Vector256.FusedMultiplyAdd(a5, m, c);
                a6 = Vector256.FusedMultiplyAdd(a6, m, c); a7 = Vector256.FusedMultiplyAdd(a7, m, c); a8 = Vector256.FusedMultiplyAdd(a8, m, c);
                a9 = Vector256.FusedMultiplyAdd(a9, m, c); a10 = Vector256.FusedMultiplyAdd(a10, m, c); a11 = Vector256.FusedMultiplyAdd(a11, m, c);
            }
            return Vector256.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)));
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
        static float Fma512(long trips)
        {
            var m = Vector512.Create(0.999999f);
            var c = Vector512.Create(1e-7f);
            Vector512<float> a0 = m, a1 = m, a2 = m, a3 = m, a4 = m, a5 = m, a6 = m, a7 = m, a8 = m, a9 = m, a10 = m, a11 = m;
            for (long i = 0; i < trips; i++)
            {
                a0 = Vector512.FusedMultiplyAdd(a0, m, c); a1 = Vector512.FusedMultiplyAdd(a1, m, c); a2 = Vector512.FusedMultiplyAdd(a2, m, c);
                a3 = Vector512.FusedMultiplyAdd(a3, m, c); a4 = Vector512.FusedMultiplyAdd(a4, m, c); a5 = Vector512.FusedMultiplyAdd(a5, m, c);
                a6 = Vector512.FusedMultiplyAdd(a6, m, c); a7 = Vector512.FusedMultiplyAdd(a7, m, c); a8 = Vector512.FusedMultiplyAdd(a8, m, c);
                a9 = Vector512.FusedMultiplyAdd(a9, m, c); a10 = Vector512.FusedMultiplyAdd(a10, m, c); a11 = Vector512.FusedMultiplyAdd(a11, m, c);
            }
            return Vector512.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)));
        }
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
