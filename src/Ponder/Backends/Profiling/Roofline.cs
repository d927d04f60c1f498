using System.Diagnostics;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace Ponder.Backends.Profiling;

/// <summary>A device's ceilings: peak arithmetic (GFLOP/s) and memory bandwidth (GB/s), and where they came from.</summary>
public sealed record Roofline(double PeakGflops, double PeakGBps, string Source)
{
    /// <summary>Seconds the op needs at least on this roofline: max(flops / peak, bytes / bandwidth).</summary>
    public double BoundSeconds(long flops, long bytes) => Math.Max(flops / (PeakGflops * 1e9), bytes / (PeakGBps * 1e9));

    /// <summary>
    /// Measures this CPU in about a quarter second: an FMA loop on <paramref name="threads"/> threads (8 independent
    /// vector accumulators each, so latency does not bound it) and a parallel sum over a 256 MiB buffer (beyond caches).
    /// </summary>
    public static Roofline MeasureCpu(int? threads = null)
    {
        int t = threads ?? Environment.ProcessorCount;
        return new Roofline(MeasureFmaGflops(t), MeasureReadGBps(t), $"measured on this CPU ({t} threads, {Vector<float>.Count}-wide FMA, 256 MiB read)");
    }

    static double MeasureFmaGflops(int threads)
    {
        const long iterations = 4_000_000;
        FmaLoop(1000); // leave tier-0
        double best = 0;
        for (int rep = 0; rep < 2; rep++)
        {
            long start = Stopwatch.GetTimestamp();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => FmaLoop(iterations));
            double s = Stopwatch.GetElapsedTime(start).TotalSeconds;
            best = Math.Max(best, threads * iterations * 8.0 * Vector<float>.Count * 2 / s / 1e9);
        }
        return best;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    static float FmaLoop(long iterations)
    {
        var m = new Vector<float>(0.999f); var c = new Vector<float>(0.001f);
        Vector<float> a0 = Vector<float>.One, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector.FusedMultiplyAdd(a0, m, c); a1 = Vector.FusedMultiplyAdd(a1, m, c);
            a2 = Vector.FusedMultiplyAdd(a2, m, c); a3 = Vector.FusedMultiplyAdd(a3, m, c);
            a4 = Vector.FusedMultiplyAdd(a4, m, c); a5 = Vector.FusedMultiplyAdd(a5, m, c);
            a6 = Vector.FusedMultiplyAdd(a6, m, c); a7 = Vector.FusedMultiplyAdd(a7, m, c);
        }
        return Vector.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7);
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
