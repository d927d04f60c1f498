using BenchmarkDotNet.Running;

// --gemm-cputime: the GEMM kernels' single-thread efficiency in CPU time (see GemmCpuTime), robust to a loaded machine.
// --gemm-cputime decode: only the decode (one token) parts.
if (args.Contains("--gemm-cputime"))
{
    Ponder.Bench.GemmCpuTime.Run(decodeOnly: args.Contains("decode"));
    return;
}

// --perf [rounds] [filter]: the CPU performance table, Ponder and llama.cpp in alternating rounds (see PerfBench).
if (args.Length > 0 && args[0] == "--perf")
{
    Ponder.Bench.PerfBench.Run(args[1..]);
    return;
}

// --server-load [clients] [seconds] [n]: a bounded load test of `ponder serve` on loopback (see ServerLoad).
if (args.Length > 0 && args[0] == "--server-load")
{
    await Ponder.Bench.ServerLoad.RunAsync(args[1..]);
    return;
}

// Runs the suites chosen on the command line (BenchmarkDotNet's switcher: --filter, --list, ...).
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
