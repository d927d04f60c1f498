using System.Reflection;
using ILGPU;
using ILGPU.Runtime.Cuda;
using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Kernels.Ilgpu;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Ponder.Kernels.Tests;

/// <summary>Backends under test, created once per process (compiling ILGPU kernels takes seconds); tests run one at a time.</summary>
public static class TestBackends
{
    static readonly Lazy<CpuBackend> s_cpu = new(() => new CpuBackend(2));
    static readonly Lazy<IlgpuBackend> s_ilgpuCpu = new(() => IlgpuBackend.CreateCpu());
    static readonly Lazy<IlgpuBackend> s_cuda = new(() => IlgpuBackend.Create(preferCuda: true));

    public static CpuBackend Cpu => s_cpu.Value;
    /// <summary>ILGPU's CPU accelerator (16 threads per group, so GEMM tiles of 4).</summary>
    public static IlgpuBackend IlgpuCpu => s_ilgpuCpu.Value;
    public static IlgpuBackend Cuda => s_cuda.Value;

    public static bool HasCuda { get; } = ProbeCuda();

    static bool ProbeCuda()
    {
        try
        {
            using var context = Context.Create(b => b.Cuda());
            return context.GetCudaDevices().Count > 0;
        }
        catch (Exception) { return false; } // no driver, no library: no device
    }
}

/// <summary>A fact that is skipped (reported as such, not passed) where no CUDA device is present.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    public CudaFactAttribute()
    {
        if (!TestBackends.HasCuda) Skip = "no CUDA device on this machine";
    }
}

/// <summary>A fact that is skipped (reported as such, not passed) where a CUDA device is present: it checks the fallback.</summary>
public sealed class NoCudaFactAttribute : FactAttribute
{
    public NoCudaFactAttribute()
    {
        if (TestBackends.HasCuda) Skip = "a CUDA device is present, so nothing falls back";
    }
}

/// <summary>Base of every per-op test class: the backend under test and shared checks.</summary>
public abstract class BackendTest
{
    protected abstract IBackend Backend { get; }

    /// <summary>A [rows, cols] tensor full of NaN, so an element the op forgets to write fails the comparison.</summary>
    protected DeviceTensor Poisoned(int rows, int cols)
    {
        var nan = new float[(long)rows * cols];
        Array.Fill(nan, float.NaN);
        return Backend.Upload(nan, rows, cols);
    }

    protected float[] Read(DeviceTensor t, int rows)
    {
        var data = new float[(long)rows * t.Cols];
        Backend.Download(t, data);
        return data;
    }

    protected static float[] Random(int count, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        var data = new float[count];
        for (int i = 0; i < count; i++) data[i] = scale * (2 * (float)rng.NextDouble() - 1);
        return data;
    }

    /// <summary>Runs every [Fact]/[Theory]-with-InlineData method of a test instance (the CUDA runner uses it).</summary>
    public static void RunAll(BackendTest instance)
    {
        foreach (var m in instance.GetType().GetMethods(BindingFlags.Public | BindingFlags.Instance))
        {
            if (m.GetCustomAttribute<FactAttribute>() is null) continue;
            var rows = m.GetCustomAttributes<InlineDataAttribute>().Select(a => a.GetData(m).Single()).ToList();
            if (rows.Count == 0) rows.Add([]);
            foreach (var args in rows)
            {
                try { m.Invoke(instance, args); }
                catch (TargetInvocationException e) { throw new Xunit.Sdk.XunitException($"{m.Name}({string.Join(", ", args)}): {e.InnerException?.Message}"); }
            }
        }
    }
}

/// <summary>Comparison against a float64 reference, naming the worst element.</summary>
public static class Compare
{
    /// <summary>Fails unless |actual - expected| ≤ tol · (1 + |expected|) everywhere (NaN fails).</summary>
    public static void Close(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double tol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        int worst = -1; double worstErr = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs(actual[i] - expected[i]) / (1 + Math.Abs(expected[i]));
            if (double.IsNaN(actual[i]) || double.IsNaN(err)) err = double.PositiveInfinity;
            if (err > worstErr) { worstErr = err; worst = i; }
        }
        if (worstErr > tol)
            Assert.Fail($"{what}: worst element {worst}: expected {expected[worst]:R}, actual {actual[worst]:R} (relative error {worstErr:E2} > {tol:E1})");
    }
}
