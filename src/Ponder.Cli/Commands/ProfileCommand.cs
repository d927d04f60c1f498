using System.CommandLine;
using System.Diagnostics;
using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Backends.Profiling;
using Ponder.Cache;
using Ponder.Kernels.Ilgpu;
using Ponder.Models;
using Spectre.Console;

namespace Ponder.Cli.Commands;

/// <summary>
/// <c>ponder profile</c>: runs B sequences through a prefill of N tokens and M batched decode steps on a backend
/// wrapped in <see cref="ProfilingBackend"/>, then prints a per-op table (time, GFLOP/s, GB/s, % of roofline) and
/// optionally writes a Chrome trace-event file.
/// </summary>
public static class ProfileCommand
{
    /// <summary>The command, to be added to the root command.</summary>
    public static Command Create()
    {
        var model = CliCommon.ModelOption();
        var backend = new Option<string>("--backend") { Description = "cpu | ilgpu (CUDA when present, else ILGPU's CPU accelerator, said in the header) | ilgpu-cuda (CUDA or an error) | ilgpu-cpu", DefaultValueFactory = _ => "cpu" };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prompt tokens per sequence (prefill)", DefaultValueFactory = _ => 64 };
        var decodeTokens = new Option<int>("--decode-tokens") { Description = "Decode steps", DefaultValueFactory = _ => 16 };
        var batch = new Option<int>("--batch") { Description = "Sequences run together", DefaultValueFactory = _ => 1 };
        var trace = new Option<string?>("--trace") { Description = "Write a Chrome trace-event JSON file (Perfetto, chrome://tracing)" };
        var peakGflops = new Option<double?>("--peak-gflops") { Description = "Roofline compute ceiling (default: measured on the CPU; none for GPUs)" };
        var peakGBps = new Option<double?>("--peak-gbps") { Description = "Roofline bandwidth ceiling in GB/s (default: measured on the CPU)" };
        var threads = new Option<int?>("--threads") { Description = "CPU backend threads (default: all cores)" };
        var seed = new Option<int>("--seed") { Description = "Seed of random weights and prompt tokens", DefaultValueFactory = _ => 1 };

        var cmd = new Command("profile", "Profile a forward pass op by op: time, FLOPs, bytes, roofline; summary table and Chrome trace");
        foreach (var o in new Option[] { model, backend, promptTokens, decodeTokens, batch, trace, peakGflops, peakGBps, threads, seed }) cmd.Options.Add(o);
        cmd.SetAction((ParseResult r, CancellationToken ct) => Task.FromResult(Run(new Settings(
            r.GetValue(model)!, r.GetValue(backend)!, r.GetValue(promptTokens), r.GetValue(decodeTokens), r.GetValue(batch),
            r.GetValue(trace), r.GetValue(peakGflops), r.GetValue(peakGBps), r.GetValue(threads), r.GetValue(seed)), ct)));
        return cmd;
    }

    /// <summary>What to profile (the command's options).</summary>
    public sealed record Settings(string Model, string Backend, int PromptTokens, int DecodeTokens, int Batch,
        string? Trace, double? PeakGflops, double? PeakGBps, int? Threads, int Seed);

    /// <summary>Runs the profile and prints it; returns the exit code.</summary>
    public static int Run(Settings s, CancellationToken ct)
    {
        if (s.PromptTokens < 1) throw new ArgumentException($"--prompt-tokens must be at least 1 (got {s.PromptTokens})");
        if (s.DecodeTokens < 0) throw new ArgumentException($"--decode-tokens must not be negative (got {s.DecodeTokens})");
        if (s.Batch < 1) throw new ArgumentException($"--batch must be at least 1 (got {s.Batch})");
        using var source = OpenModel(s.Model, s.Seed);
        var config = source.Config;
        if (s.PromptTokens + s.DecodeTokens > config.MaxPositions)
            throw new ArgumentException($"--prompt-tokens + --decode-tokens = {s.PromptTokens + s.DecodeTokens} exceeds the model's {config.MaxPositions} positions");
        IBackend inner = s.Backend.ToLowerInvariant() switch
        {
            "cpu" => new CpuBackend(s.Threads),
            "ilgpu" => IlgpuBackend.Create(preferCuda: true),
            "ilgpu-cuda" => IlgpuBackend.Create(requireCuda: true),
            "ilgpu-cpu" => IlgpuBackend.Create(preferCuda: false),
            _ => throw new ArgumentException($"--backend '{s.Backend}' is not one of cpu, ilgpu, ilgpu-cuda, ilgpu-cpu"),
        };
        using var profiler = new ProfilingBackend(inner);
        var roofline = Roofline(s, inner);
        AnsiConsole.MarkupLine($"[bold]{Markup.Escape(s.Model)}[/] on [bold]{profiler.Name}[/] ({Markup.Escape(DeviceOf(inner))}): dModel {config.DModel}, {config.NLayers} layers, {config.NHeads}/{config.NKvHeads} heads, dFf {config.DFf}, vocab {config.Vocab}");
        using var model = new Transformer(profiler, source, cancellationToken: ct);
        var layout = config.ToKvLayout(16);
        int perSequence = s.PromptTokens + s.DecodeTokens;
        using var pool = BlockPool.ForTokens(profiler, layout, (s.Batch + 1) * (perSequence + layout.BlockSize));
        var rng = new Random(s.Seed);

        // Warm-up (unrecorded): leaves tier-0 JIT and compiles lazily loaded device code, on a throwaway sequence.
        profiler.Enabled = false;
        // Tiered JIT promotes a method after ~30 calls plus a delay, so a few short rounds.
        for (int round = 0; round < 3; round++)
            RunGeneration(model, pool, 1, Math.Min(s.PromptTokens, 8), Math.Min(s.DecodeTokens, 4), rng, profiler, ct);
        profiler.Enabled = true;
        long flopsBefore = profiler.Flops.Total;
        var (prefillMs, decodeMs) = RunGeneration(model, pool, s.Batch, s.PromptTokens, s.DecodeTokens, rng, profiler, ct);

        var records = profiler.Records;
        Print(ProfileReport.Summarize(records, roofline), roofline);
        long flops = profiler.Flops.Total - flopsBefore;
        AnsiConsole.MarkupLine($"prefill: {s.Batch} x {s.PromptTokens} tokens in {prefillMs:F1} ms ({s.Batch * s.PromptTokens / (prefillMs / 1e3):F0} tok/s)");
        if (s.DecodeTokens > 0)
            AnsiConsole.MarkupLine($"decode: {s.DecodeTokens} steps x {s.Batch} sequences in {decodeMs:F1} ms ({s.Batch * s.DecodeTokens / (decodeMs / 1e3):F1} tok/s, {decodeMs / s.DecodeTokens:F2} ms/step)");
        AnsiConsole.MarkupLine($"FLOPs: {flops:N0} (ledger), {records.Sum(r => r.Flops):N0} (sum over ops); weights {model.WeightBytes / 1e6:F1} MB; times include a device sync per op; CPU ms is this process's CPU time (all threads, spinning workers included) during each op");
        if (s.Trace is { } path)
        {
            using (var file = File.Create(path)) ProfileReport.WriteChromeTrace(records, file, $"ponder {profiler.Name} {s.Model}");
            AnsiConsole.MarkupLine($"trace: {records.Count} events -> {Markup.Escape(path)}");
        }
        return 0;
    }

    /// <summary>What the backend runs on: the CPU's vector ISA and threads, or the ILGPU device (and whether CUDA fell back).</summary>
    static string DeviceOf(IBackend backend) => backend switch
    {
        CpuBackend cpu => $"{Backends.Profiling.Roofline.CpuVectorIsa.Name}, {cpu.Threads} threads",
        IlgpuBackend gpu => gpu.CudaFallback is { } why ? $"{gpu.Device}; {why}" : gpu.Device,
        _ => backend.Name,
    };

    static ITensorSource OpenModel(string model, int seed)
    {
        if (model.StartsWith("random:", StringComparison.OrdinalIgnoreCase))
            return RandomModels.Source(model["random:".Length..], (ulong)seed);
        return ModelFiles.Open(model);
    }

    static Roofline? Roofline(Settings s, IBackend backend)
    {
        if (s.PeakGflops is { } f && s.PeakGBps is { } b) return new Roofline(f, b, "given");
        if (backend is CpuBackend cpu)
        {
            var measured = Backends.Profiling.Roofline.MeasureCpu(cpu.Threads);
            return new Roofline(s.PeakGflops ?? measured.PeakGflops, s.PeakGBps ?? measured.PeakGBps, measured.Source);
        }
        return null; // a device's ceilings are not measured here; pass --peak-gflops and --peak-gbps
    }

    /// <summary>Prefill of <paramref name="prompt"/> random tokens for each of <paramref name="batch"/> sequences in one forward, then greedy batched decode.</summary>
    static (double PrefillMs, double DecodeMs) RunGeneration(Transformer model, BlockPool pool, int batch, int prompt, int decode,
        Random rng, ProfilingBackend profiler, CancellationToken ct)
    {
        int vocab = model.Config.Vocab, headRows = model.Config.HeadRows;
        var seqs = Enumerable.Range(0, batch).Select(_ => new Sequence(pool)).ToList();
        try
        {
            var layout = new BatchLayout(pool.BlockSize);
            var tokens = new List<int>();
            var outputRows = new int[batch];
            foreach (var q in seqs)
            {
                var t = Enumerable.Range(0, prompt).Select(_ => rng.Next(vocab)).ToArray();
                q.Append(t);
                layout.Add(0, prompt, q.BlockTable);
                tokens.AddRange(t);
            }
            for (int i = 0; i < batch; i++) outputRows[i] = (i + 1) * prompt - 1;
            var logits = new float[batch * headRows];
            profiler.Phase = "prefill";
            long start = Stopwatch.GetTimestamp();
            model.Forward(layout, tokens.ToArray(), pool.Storage, outputRows, logits);
            double prefillMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            foreach (var q in seqs) q.MarkComputed(q.Length);

            profiler.Phase = "decode";
            var next = new int[batch];
            var rows = Enumerable.Range(0, batch).ToArray();
            start = Stopwatch.GetTimestamp();
            for (int step = 0; step < decode; step++)
            {
                ct.ThrowIfCancellationRequested();
                layout.Clear();
                for (int i = 0; i < batch; i++)
                {
                    next[i] = ArgMax(logits.AsSpan(i * headRows, headRows));
                    seqs[i].Append([next[i]]);
                    layout.Add(seqs[i].ComputedLength, 1, seqs[i].BlockTable);
                }
                model.Forward(layout, next, pool.Storage, rows, logits);
                foreach (var q in seqs) q.MarkComputed(q.Length);
            }
            return (prefillMs, Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        }
        finally
        {
            foreach (var q in seqs) q.Dispose();
        }
    }

    static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }

    /// <summary>Three significant digits below 1 (the CPU accelerator runs at MFLOP/s), two decimals above.</summary>
    static string Rate(double v) => v < 1 ? v.ToString("G3") : v.ToString("F2");

    static void Print(IReadOnlyList<OpSummary> summary, Roofline? roofline)
    {
        // Redirected output has no console width; keep every column (and the op names) readable in a log.
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 160);
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("op").AddColumn(new TableColumn("calls").RightAligned()).AddColumn(new TableColumn("total ms").RightAligned())
            .AddColumn(new TableColumn("% time").RightAligned()).AddColumn(new TableColumn("GFLOP/s").RightAligned())
            .AddColumn(new TableColumn("GB/s").RightAligned()).AddColumn(new TableColumn("% roofline").RightAligned())
            .AddColumn(new TableColumn("CPU ms").RightAligned()).AddColumn(new TableColumn("GFLOP/CPU-s").RightAligned());
        foreach (var s in summary)
            table.AddRow(s.Op, s.Calls.ToString(), s.TotalMs.ToString("F2"), s.PercentTime.ToString("F1"), Rate(s.Gflops),
                Rate(s.GBps), double.IsNaN(s.RooflineFraction) ? "-" : (100 * s.RooflineFraction).ToString("F1"),
                double.IsNaN(s.CpuMs) ? "-" : s.CpuMs.ToString("F2"), double.IsNaN(s.GflopsPerCpuSecond) ? "-" : Rate(s.GflopsPerCpuSecond));
        var total = summary.Sum(s => s.TotalMs);
        double cpu = summary.Sum(s => s.CpuMs);
        table.AddRow("[bold]total[/]", summary.Sum(s => s.Calls).ToString(), total.ToString("F2"), "100.0",
            Rate(summary.Sum(s => s.Flops) / (total / 1e3) / 1e9), Rate(summary.Sum(s => s.Bytes) / (total / 1e3) / 1e9), "",
            double.IsNaN(cpu) ? "-" : cpu.ToString("F2"), double.IsNaN(cpu) || cpu <= 0 ? "-" : Rate(summary.Sum(s => s.Flops) / (cpu / 1e3) / 1e9));
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine(roofline is null
            ? "roofline: none (pass --peak-gflops and --peak-gbps for the device)"
            : $"roofline: {roofline.PeakGflops:F1} GFLOP/s, {roofline.PeakGBps:F1} GB/s ({Markup.Escape(roofline.Source)})");
    }
}
