using System.Reflection;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Ponder.Kernels.Ilgpu;

namespace Ponder.Kernels.Tests;

/// <summary>Every kernel compiles to PTX for sm_90 without a GPU, so a kernel that cannot run on CUDA fails here.</summary>
public sealed class PtxCompileTests
{
    /// <summary>Every public static kernel of <see cref="Kernels"/>, generic ones closed over each weight type the backend loads.</summary>
    public static TheoryData<string> KernelNames()
    {
        var data = new TheoryData<string>();
        foreach (var m in Kernels()) data.Add(m.Name + (m.IsGenericMethod ? "<" + string.Join(",", m.GetGenericArguments().Select(a => a.Name)) + ">" : ""));
        return data;
    }

    static IEnumerable<MethodInfo> Kernels()
    {
        foreach (var m in typeof(Ilgpu.Kernels).GetMethods(BindingFlags.Public | BindingFlags.Static))
        {
            if (m.ReturnType != typeof(void)) continue; // helpers such as HalfBits, not entry points
            if (!m.IsGenericMethodDefinition) { yield return m; continue; }
            yield return m.MakeGenericMethod(typeof(float), typeof(F32Element));
            yield return m.MakeGenericMethod(typeof(ILGPU.Half), typeof(F16Element));
        }
    }

    [Theory]
    [MemberData(nameof(KernelNames))]
    public void CompilesToPtx(string name)
    {
        var method = Kernels().Single(m => m.Name + (m.IsGenericMethod ? "<" + string.Join(",", m.GetGenericArguments().Select(a => a.Name)) + ">" : "") == name);
        using var context = Context.Create(b => b.EnableAlgorithms());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_83, null);
        bool implicitlyGrouped = method.GetParameters().FirstOrDefault()?.ParameterType is { } t && (t == typeof(Index1D) || t == typeof(Index2D) || t == typeof(Index3D));
        var entry = implicitlyGrouped ? EntryPointDescription.FromImplicitlyGroupedKernel(method) : EntryPointDescription.FromExplicitlyGroupedKernel(method);
        var kernel = (PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
        Assert.True(kernel.PTXAssembly.Contains(".entry"), kernel.PTXAssembly[..Math.Min(600, kernel.PTXAssembly.Length)]);
        // ILGPU 1.5.3 caps the emitted target at sm_80 even for an SM_90 capability context; the driver JIT-compiles
        // sm_80 PTX for Hopper, so what matters is that code generation for the CUDA backend succeeded.
        Assert.Matches(@"\.target sm_[0-9]+", kernel.PTXAssembly);
    }

    [Fact]
    public void EveryKernelIsCovered() => Assert.True(Kernels().Count() >= 16 && Kernels().All(m => m.ReturnType == typeof(void)), $"only {Kernels().Count()} kernels found");
}
