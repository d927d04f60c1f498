using BenchmarkDotNet.Running;

// Runs the suites chosen on the command line (BenchmarkDotNet's switcher: --filter, --list, ...).
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
