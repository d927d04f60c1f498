using System.Text.Json;
using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Backends.Profiling;
using Ponder.Cache;
using Ponder.Models;

namespace Ponder.Kernels.Tests;

public sealed class ProfilerTests
{
    [Fact]
    public void RecordsEveryOpWithTheLedgersFlopsAndWritesAParsableTrace()
    {
        var config = ForwardTests.Config;
        using var source = new HostTensorSource(config, RandomModels.Create(config, 5UL));
        using var profiler = new ProfilingBackend(new CpuBackend(1));
        using var model = new Transformer(profiler, source);
        Assert.Empty(profiler.Records); // weight uploads are setup, not ops
        using var pool = new BlockPool(profiler, config.ToKvLayout(4), 8);
        using var seq = new Sequence(pool);
        seq.Append([1, 2, 3, 4, 5, 6]);
        var batch = new BatchLayout(4);
        batch.Add(0, 6, seq.BlockTable);
        var logits = new float[config.Vocab];
        profiler.Phase = "prefill";
        long before = profiler.Flops.Total;
        model.Forward(batch, [.. seq.Tokens], pool.Storage, [5], logits);
        seq.MarkComputed(6);
        seq.Append([7]);
        batch.Clear();
        batch.Add(6, 1, seq.BlockTable);
        profiler.Phase = "decode";
        model.Forward(batch, [7], pool.Storage, [0], logits);

        var records = profiler.Records;
        Assert.Equal(profiler.Flops.Total - before, records.Sum(r => r.Flops));
        // Per forward: embed, per layer 2 norms + 4 projection calls (Q|K|V and gate|up each one shared-input call, O,
        // down) + 2 rope + store + attention + 2 adds + swiglu + 3 biases, then gather, final norm, head, download.
        int perForward = 1 + config.NLayers * (2 + 4 + 2 + 1 + 1 + 2 + 1 + 3) + 4;
        Assert.Equal(2 * perForward, records.Count);
        Assert.Equal(2 * 2 * config.NLayers, records.Count(r => r.Op == "MatMul"));
        Assert.Equal(2 * config.NLayers, records.Count(r => r.Op == "MatMul x3"));
        Assert.Equal(2 * config.NLayers, records.Count(r => r.Op == "MatMul x2"));
        Assert.All(records, r => Assert.True(r.DurationUs >= 0 && r.Bytes > 0, $"{r.Op} {r.Shape}"));
        var qkv = records.First(r => r.Op == "MatMul x3");
        Assert.Equal(OpFlops.MatMul(6, config.QDim, config.DModel) + 2 * OpFlops.MatMul(6, config.KvDim, config.DModel), qkv.Flops);
        var output = records.First(r => r.Op == "MatMul");
        Assert.Equal(OpFlops.MatMul(6, config.DModel, config.QDim), output.Flops);

        var summary = ProfileReport.Summarize(records, new Roofline(100, 10, "test"));
        Assert.Equal(records.Count, summary.Sum(s => s.Calls));
        Assert.Equal(100, summary.Sum(s => s.PercentTime), 6);
        Assert.Equal(records.Sum(r => r.Flops), summary.Sum(s => s.Flops));

        using var stream = new MemoryStream();
        ProfileReport.WriteChromeTrace(records, stream, "test");
        using var json = JsonDocument.Parse(stream.ToArray());
        var events = json.RootElement.GetProperty("traceEvents");
        Assert.Equal(records.Count, events.GetArrayLength());
        var first = events[0];
        Assert.Equal("X", first.GetProperty("ph").GetString());
        Assert.Equal(records[0].Op, first.GetProperty("name").GetString());
        Assert.Equal(records[0].Flops, first.GetProperty("args").GetProperty("flops").GetInt64());
        Assert.Equal(2, events.EnumerateArray().Select(e => e.GetProperty("tid").GetInt32()).Distinct().Count());
    }

    /// <summary>
    /// A process reward head profiles as its own ops at the output rows only: score.0 and score.2 as PRM-head matmuls,
    /// score.0's bias and the ReLU between them (m·d FLOPs each), score.2's bias.
    /// </summary>
    [Fact]
    public void RecordsAProcessRewardHeadsReluAtTheOutputRowsOnly()
    {
        var config = ForwardTests.Config with { Architecture = Architecture.Qwen2, Head = HeadKind.ProcessReward, NumLabels = 2 };
        using var source = new HostTensorSource(config, RandomModels.Create(config, 6UL));
        using var profiler = new ProfilingBackend(new CpuBackend(1));
        using var model = new Transformer(profiler, source);
        using var pool = new BlockPool(profiler, config.ToKvLayout(4), 8);
        using var seq = new Sequence(pool);
        seq.Append([1, 2, 3, 4, 5, 6]);
        var batch = new BatchLayout(4);
        batch.Add(0, 6, seq.BlockTable);
        model.Forward(batch, [.. seq.Tokens], pool.Storage, [2, 5], new float[2 * 2]);
        var relu = Assert.Single(profiler.Records, r => r.Op == "Relu");
        Assert.Equal(OpFlops.Relu(2, config.DModel), relu.Flops);
        Assert.Equal($"n=2 d={config.DModel}", relu.Shape);
        var head = profiler.Records.Where(r => r.Op == "MatMul.PrmHead").ToList();
        Assert.Equal([OpFlops.MatMul(2, config.DModel, config.DModel), OpFlops.MatMul(2, 2, config.DModel)], head.Select(r => r.Flops));
        Assert.Equal(profiler.Flops.Total, profiler.Records.Sum(r => r.Flops));
    }

    [Fact]
    public void RooflineFractionIsBoundTimeOverElapsed()
    {
        // 1e9 FLOPs and 1e9 bytes in 1 s on a 2 GFLOP/s, 4 GB/s roofline: bound 0.5 s, so 50 %.
        var r = new OpRecord("MatMul", "", "", 0, 1e6, 1_000_000_000, 1_000_000_000);
        var s = Assert.Single(ProfileReport.Summarize([r], new Roofline(2, 4, "test")));
        Assert.Equal(0.5, s.RooflineFraction, 9);
        Assert.Equal(1, s.Gflops, 9);
        Assert.Equal(1, s.GBps, 9);
    }

    [Fact]
    public void SummaryChargesCpuTimeAndFlopsPerCpuSecond()
    {
        // 2e9 FLOPs over 2 records that used 1 s of CPU between them (in 4 s elapsed): 2 GFLOP per CPU-second.
        OpRecord[] records = [new("MatMul", "", "", 0, 2e6, 1_000_000_000, 0, 400_000), new("MatMul", "", "", 0, 2e6, 1_000_000_000, 0, 600_000)];
        var s = Assert.Single(ProfileReport.Summarize(records, null));
        Assert.Equal(1000, s.CpuMs, 9);
        Assert.Equal(2, s.GflopsPerCpuSecond, 9);
        Assert.Equal(0.5, s.Gflops, 9);
    }

    [Fact]
    public void ProfilerRecordsTheProcessCpuTimeOfEachOp()
    {
        using var profiler = new ProfilingBackend(new CpuBackend(1));
        var w = profiler.UploadWeight(new float[512 * 512], 512, 512);
        var x = profiler.Upload(new float[64 * 512], 64, 512);
        var y = profiler.Allocate(64, 512);
        for (int i = 0; i < 20; i++) profiler.MatMul(x, w, y, 64, FlopCategory.Projection);
        var records = profiler.Records;
        Assert.Equal(20, records.Count);
        Assert.All(records, r => Assert.True(r.CpuUs >= 0, $"CPU time {r.CpuUs} us"));
        // 20 x 33.5 MFLOP on one thread cannot take zero CPU time altogether.
        Assert.True(records.Sum(r => r.CpuUs) > 0);
    }

    [Fact]
    public void CpuRooflineUsesTheWidestAcceleratedVectorAndNamesIt()
    {
        // Vector<float> stays 8 lanes on AVX-512 CPUs: the probe must follow Vector512/256/128 instead, and say which.
        var (isa, lanes) = Roofline.CpuVectorIsa;
        int expected = System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? 16
            : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? 8
            : System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated ? 4 : 1;
        Assert.Equal(expected, lanes);
        var measured = Roofline.MeasureCpu(1);
        Assert.Contains($"{isa} FMA ({lanes} f32 lanes)", measured.Source);
        Assert.True(measured.PeakGflops > 0 && measured.PeakGBps > 0);
    }
}
