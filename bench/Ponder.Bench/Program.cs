using BenchmarkDotNet.Running;

// --gemm-cputime: the GEMM kernels' single-thread efficiency in CPU time (see GemmCpuTime), robust to a loaded machine.
if (args.Contains("--gemm-cputime"))
{
    Ponder.Bench.GemmCpuTime.Run();
    return;
}

// Runs the suites chosen on the command line (BenchmarkDotNet's switcher: --filter, --list, ...).
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
