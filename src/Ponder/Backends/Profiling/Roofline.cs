using System.Diagnostics;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Ponder.Backends.Profiling;

/// <summary>A device's ceilings: peak arithmetic (GFLOP/s) and memory bandwidth (GB/s), and where they came from.</summary>
public sealed record Roofline(double PeakGflops, double PeakGBps, string Source)
{
    /// <summary>Seconds the op needs at least on this roofline: max(flops / peak, bytes / bandwidth).</summary>
    public double BoundSeconds(long flops, long bytes) => Math.Max(flops / (PeakGflops * 1e9), bytes / (PeakGBps * 1e9));

    /// <summary>
    /// The widest vector ISA this CPU accelerates, as the FMA probe uses it: "AVX-512" (16 f32 lanes), "AVX2" (8),
    /// "128-bit SIMD" (4: SSE or Neon) or "scalar" (1). <see cref="Vector{T}"/> stays 256 bits wide on AVX-512 CPUs, so
    /// a probe built on it would report half the peak there and rooflines above 100%.
    /// </summary>
    public static (string Name, int Lanes) CpuVectorIsa =>
        Vector512.IsHardwareAccelerated ? ("AVX-512", 16)
        : Vector256.IsHardwareAccelerated && Vector<float>.Count == 8 ? ("AVX2", 8)
        : Vector.IsHardwareAccelerated ? ($"{Vector<float>.Count * 32}-bit SIMD", Vector<float>.Count)
        : ("scalar", 1);

    /// <summary>
    /// Measures this CPU in about a quarter second: an FMA loop on <paramref name="threads"/> threads in the widest
    /// accelerated vector (<see cref="CpuVectorIsa"/>; 12 independent accumulators each, so latency does not bound it
    /// even with two FMA pipes of 4-cycle latency) and a parallel sum over a 256 MiB buffer (beyond caches).
    /// The source names the ISA measured.
    /// </summary>
    public static Roofline MeasureCpu(int? threads = null)
    {
        int t = threads ?? Environment.ProcessorCount;
        var (isa, lanes) = CpuVectorIsa;
        return new Roofline(MeasureFmaGflops(t, lanes), MeasureReadGBps(t), $"measured on this CPU ({t} threads, {isa} FMA ({lanes} f32 lanes), 256 MiB read)");
    }

    static double MeasureFmaGflops(int threads, int lanes)
    {
        const long iterations = 4_000_000;
        FmaLoop(lanes, 1000); // leave tier-0
        double best = 0;
        for (int rep = 0; rep < 2; rep++)
        {
            long start = Stopwatch.GetTimestamp();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => FmaLoop(lanes, iterations));
            double s = Stopwatch.GetElapsedTime(start).TotalSeconds;
            best = Math.Max(best, threads * iterations * 12.0 * lanes * 2 / s / 1e9);
        }
        return best;
    }

    /// <summary>
    /// 12 FMA chains in the given width: Vector512 for 16 lanes, otherwise <see cref="Vector{T}"/>, which is the widest
    /// accelerated vector below 512 bits (256 on AVX2, 128 on SSE and Neon). The benchmarks' FMA ceiling runs this too.
    /// </summary>
    internal static float FmaLoop(int lanes, long iterations) => lanes switch
    {
        16 => FmaLoop512(iterations),
        1 => FmaLoopScalar(iterations),
        _ => FmaLoopVector(iterations),
    };

    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    static float FmaLoop512(long iterations)
    {
        var m = Vector512.Create(0.999f); var c = Vector512.Create(0.001f);
        Vector512<float> a0 = Vector512<float>.One, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, m, c); a1 = Vector512.FusedMultiplyAdd(a1, m, c); a2 = Vector512.FusedMultiplyAdd(a2, m, c);
            a3 = Vector512.FusedMultiplyAdd(a3, m, c); a4 = Vector512.FusedMultiplyAdd(a4, m, c); a5 = Vector512.FusedMultiplyAdd(a5, m, c);
            a6 = Vector512.FusedMultiplyAdd(a6, m, c); a7 = Vector512.FusedMultiplyAdd(a7, m, c); a8 = Vector512.FusedMultiplyAdd(a8, m, c);
            a9 = Vector512.FusedMultiplyAdd(a9, m, c); a10 = Vector512.FusedMultiplyAdd(a10, m, c); a11 = Vector512.FusedMultiplyAdd(a11, m, c);
        }
        return Vector512.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    static float FmaLoopVector(long iterations)
    {
        var m = new Vector<float>(0.999f); var c = new Vector<float>(0.001f);
        Vector<float> a0 = Vector<float>.One, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector.FusedMultiplyAdd(a0, m, c); a1 = Vector.FusedMultiplyAdd(a1, m, c); a2 = Vector.FusedMultiplyAdd(a2, m, c);
            a3 = Vector.FusedMultiplyAdd(a3, m, c); a4 = Vector.FusedMultiplyAdd(a4, m, c); a5 = Vector.FusedMultiplyAdd(a5, m, c);
            a6 = Vector.FusedMultiplyAdd(a6, m, c); a7 = Vector.FusedMultiplyAdd(a7, m, c); a8 = Vector.FusedMultiplyAdd(a8, m, c);
            a9 = Vector.FusedMultiplyAdd(a9, m, c); a10 = Vector.FusedMultiplyAdd(a10, m, c); a11 = Vector.FusedMultiplyAdd(a11, m, c);
        }
        return Vector.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    static float FmaLoopScalar(long iterations)
    {
        float a0 = 1, a1 = 1, a2 = 1, a3 = 1, a4 = 1, a5 = 1, a6 = 1, a7 = 1, a8 = 1, a9 = 1, a10 = 1, a11 = 1;
        for (long i = 0; i < iterations; i++)
        {
            a0 = MathF.FusedMultiplyAdd(a0, 0.999f, 0.001f); a1 = MathF.FusedMultiplyAdd(a1, 0.999f, 0.001f); a2 = MathF.FusedMultiplyAdd(a2, 0.999f, 0.001f);
            a3 = MathF.FusedMultiplyAdd(a3, 0.999f, 0.001f); a4 = MathF.FusedMultiplyAdd(a4, 0.999f, 0.001f); a5 = MathF.FusedMultiplyAdd(a5, 0.999f, 0.001f);
            a6 = MathF.FusedMultiplyAdd(a6, 0.999f, 0.001f); a7 = MathF.FusedMultiplyAdd(a7, 0.999f, 0.001f); a8 = MathF.FusedMultiplyAdd(a8, 0.999f, 0.001f);
            a9 = MathF.FusedMultiplyAdd(a9, 0.999f, 0.001f); a10 = MathF.FusedMultiplyAdd(a10, 0.999f, 0.001f); a11 = MathF.FusedMultiplyAdd(a11, 0.999f, 0.001f);
        }
        return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    }

    static double MeasureReadGBps(int threads)
    {
        var data = new float[64 << 20]; // 256 MiB
        Array.Fill(data, 1f);
        int chunk = data.Length / threads;
        double best = 0;
        for (int rep = 0; rep < 3; rep++)
        {
            long start = Stopwatch.GetTimestamp();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, i =>
                TensorPrimitives.Sum(data.AsSpan(i * chunk, i == threads - 1 ? data.Length - i * chunk : chunk)));
            double s = Stopwatch.GetElapsedTime(start).TotalSeconds;
            best = Math.Max(best, data.Length * 4.0 / s / 1e9);
        }
        return best;
    }
}
