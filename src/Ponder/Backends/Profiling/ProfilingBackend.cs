using System.Diagnostics;

namespace Ponder.Backends.Profiling;

/// <summary>One op launch as <see cref="ProfilingBackend"/> saw it.</summary>
/// <param name="Op">The <see cref="IBackend"/> method ("MatMul", "Attention", ...).</param>
/// <param name="Shape">The launch's shape in words ("n=4 W[576, 1536]").</param>
/// <param name="Phase">What the caller said it was doing (<see cref="ProfilingBackend.Phase"/>), e.g. "prefill".</param>
/// <param name="StartUs">Start, microseconds since the profiler was created.</param>
/// <param name="DurationUs">Elapsed microseconds, including a device synchronization for asynchronous backends.</param>
/// <param name="Flops">FLOPs the wrapped backend charged to its ledger during the op.</param>
/// <param name="Bytes">Bytes the op must move at least (<see cref="OpBytes"/>).</param>
/// <param name="CpuUs">
/// CPU microseconds this process used during the op (every thread: the caller and the backend's workers), or NaN when
/// unknown. On a machine shared with other jobs it measures the op's own work, where elapsed time measures the load.
/// </param>
public readonly record struct OpRecord(string Op, string Shape, string Phase, double StartUs, double DurationUs, long Flops, long Bytes, double CpuUs = double.NaN);

/// <summary>
/// Wraps any <see cref="IBackend"/> and records every forward-pass op: name, shape, elapsed time, FLOPs (the wrapped
/// backend's ledger delta) and bytes moved. Setup calls (Allocate, Upload, UploadWeight, AllocateKv) pass through
/// unrecorded. When the wrapped backend is an <see cref="ISynchronizingBackend"/>, each op is bracketed by
/// synchronizations, which serializes the device: the profile shows per-op cost, not overlapped throughput.
/// </summary>
public sealed class ProfilingBackend : IBackend, ISynchronizingBackend, ITypedWeightUpload
{
    readonly IBackend _inner;
    readonly ISynchronizingBackend? _sync;
    readonly List<OpRecord> _records = [];
    readonly long _origin = Stopwatch.GetTimestamp();

    /// <summary>Wraps <paramref name="inner"/>: every op runs on it unchanged, timed and recorded here.</summary>
    public ProfilingBackend(IBackend inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        _inner = inner;
        _sync = inner as ISynchronizingBackend;
    }

    /// <summary>The wrapped backend.</summary>
    public IBackend Inner => _inner;
    /// <inheritdoc/>
    public string Name => _inner.Name;
    /// <summary>The wrapped backend's ledger (so FLOP accounting is unchanged by profiling).</summary>
    public FlopLedger Flops => _inner.Flops;
    /// <summary>Records so far, in launch order.</summary>
    public IReadOnlyList<OpRecord> Records => _records;
    /// <summary>When false, ops run unrecorded (warm-up).</summary>
    public bool Enabled { get; set; } = true;
    /// <summary>Label stored with each record ("prefill", "decode").</summary>
    public string Phase { get; set; } = "";

    /// <summary>Forgets every record.</summary>
    public void Clear() => _records.Clear();

    /// <inheritdoc/>
    public void Synchronize() => _sync?.Synchronize();

    /// <inheritdoc/>
    public DeviceTensor Allocate(int rows, int cols) => _inner.Allocate(rows, cols);
    /// <inheritdoc/>
    public DeviceTensor Upload(ReadOnlySpan<float> data, int rows, int cols) => _inner.Upload(data, rows, cols);
    /// <inheritdoc/>
    public DeviceWeight UploadWeight(ReadOnlySpan<float> data, int rows, int cols) => _inner.UploadWeight(data, rows, cols);

    /// <summary>Typed weights pass through when the wrapped backend keeps them (so a profile measures what runs).</summary>
    public bool CanKeep(Tensors.DType type, int rows, int cols) => _inner is ITypedWeightUpload t && t.CanKeep(type, rows, cols);

    /// <inheritdoc/>
    public DeviceWeight UploadWeight(ReadOnlySpan<byte> data, Tensors.DType type, int rows, int cols) =>
        (_inner as ITypedWeightUpload ?? throw new NotSupportedException($"{_inner.Name} does not keep {type} weights")).UploadWeight(data, type, rows, cols);
    /// <inheritdoc/>
    public KvStorage AllocateKv(KvLayout layout, int blockCount) => _inner.AllocateKv(layout, blockCount);

    /// <inheritdoc/>
    public void Download(DeviceTensor tensor, Span<float> destination)
    {
        var s = Begin();
        _inner.Download(tensor, destination);
        End(s, "Download", $"{destination.Length / Math.Max(1, tensor.Cols)}x{tensor.Cols}", OpBytes.Copy(destination.Length));
    }

    /// <inheritdoc/>
    public void CopyKvBlock(KvStorage kv, int source, int destination)
    {
        var s = Begin();
        _inner.CopyKvBlock(kv, source, destination);
        End(s, "CopyKvBlock", $"block {kv.Layout.BytesPerBlock} B", 2 * kv.Layout.BytesPerBlock);
    }

    /// <inheritdoc/>
    public void Embed(DeviceTensor table, ReadOnlySpan<int> tokens, DeviceTensor x)
    {
        var s = Begin();
        _inner.Embed(table, tokens, x);
        End(s, "Embed", $"n={tokens.Length} d={table.Cols}", OpBytes.Copy((long)tokens.Length * table.Cols) + 4L * tokens.Length);
    }

    /// <inheritdoc/>
    public void RmsNorm(DeviceTensor x, DeviceTensor weight, float eps, DeviceTensor y, int n)
    {
        var s = Begin();
        _inner.RmsNorm(x, weight, eps, y, n);
        End(s, "RmsNorm", $"n={n} d={x.Cols}", OpBytes.RmsNorm(n, x.Cols));
    }

    /// <inheritdoc/>
    public void RmsNormHeads(DeviceTensor x, DeviceTensor weight, float eps, int headDim, int n)
    {
        var s = Begin();
        _inner.RmsNormHeads(x, weight, eps, headDim, n);
        End(s, "RmsNormHeads", $"n={n} d={x.Cols} headDim={headDim}", OpBytes.RmsNorm(n, x.Cols));
    }

    /// <inheritdoc/>
    public void MatMul(DeviceTensor x, DeviceWeight w, DeviceTensor y, int n, FlopCategory category)
    {
        var s = Begin();
        _inner.MatMul(x, w, y, n, category);
        End(s, category == FlopCategory.Projection ? "MatMul" : "MatMul." + category, $"n={n} W[{w.Rows}, {w.Cols}]", OpBytes.MatMul(n, w));
    }

    /// <inheritdoc/>
    public void MatMul(DeviceTensor x, ReadOnlySpan<DeviceWeight> weights, ReadOnlySpan<DeviceTensor> outputs, int n, FlopCategory category)
    {
        var s = Begin();
        _inner.MatMul(x, weights, outputs, n, category);
        long bytes = 0, rows = 0;
        foreach (var w in weights) { bytes += OpBytes.MatMul(n, w); rows += w.Rows; }
        End(s, (category == FlopCategory.Projection ? "MatMul" : "MatMul." + category) + $" x{weights.Length}", $"n={n} W[{rows}, {x.Cols}] in {weights.Length}", bytes);
    }

    /// <inheritdoc/>
    public void AddBias(DeviceTensor y, DeviceTensor bias, int n)
    {
        var s = Begin();
        _inner.AddBias(y, bias, n);
        End(s, "AddBias", $"n={n} d={y.Cols}", OpBytes.Elementwise(n * (long)y.Cols, 2, 1) + 4L * y.Cols);
    }

    /// <inheritdoc/>
    public void Rope(DeviceTensor x, int nHeads, int headDim, DeviceTensor rope, BatchLayout batch)
    {
        var s = Begin();
        _inner.Rope(x, nHeads, headDim, rope, batch);
        End(s, "Rope", $"n={batch.TokenCount} heads={nHeads} headDim={headDim}", OpBytes.Rope(batch.TokenCount, nHeads, headDim));
    }

    /// <inheritdoc/>
    public void StoreKv(KvStorage kv, int layer, DeviceTensor k, DeviceTensor v, BatchLayout batch)
    {
        var s = Begin();
        _inner.StoreKv(kv, layer, k, v, batch);
        End(s, "StoreKv", $"n={batch.TokenCount} kvDim={kv.Layout.KvDim}", OpBytes.StoreKv(batch.TokenCount, kv.Layout.KvDim));
    }

    /// <inheritdoc/>
    public void Attention(DeviceTensor q, KvStorage kv, int layer, int nHeads, BatchLayout batch, DeviceTensor output)
    {
        var s = Begin();
        _inner.Attention(q, kv, layer, nHeads, batch, output);
        End(s, "Attention", $"n={batch.TokenCount} seqs={batch.SequenceCount} keys={batch.CausalKeys} maxCtx={batch.MaxContext}", OpBytes.Attention(batch, nHeads, kv.Layout));
    }

    /// <inheritdoc/>
    public void SwiGlu(DeviceTensor gate, DeviceTensor up, int n)
    {
        var s = Begin();
        _inner.SwiGlu(gate, up, n);
        End(s, "SwiGlu", $"n={n} dFf={gate.Cols}", OpBytes.Elementwise(n * (long)gate.Cols, 2, 1));
    }

    /// <inheritdoc/>
    public void Relu(DeviceTensor x, int n)
    {
        var s = Begin();
        _inner.Relu(x, n);
        End(s, "Relu", $"n={n} d={x.Cols}", OpBytes.Elementwise(n * (long)x.Cols, 1, 1));
    }

    /// <inheritdoc/>
    public void Add(DeviceTensor x, DeviceTensor y, int n)
    {
        var s = Begin();
        _inner.Add(x, y, n);
        End(s, "Add", $"n={n} d={x.Cols}", OpBytes.Elementwise(n * (long)x.Cols, 2, 1));
    }

    /// <inheritdoc/>
    public void GatherRows(DeviceTensor x, ReadOnlySpan<int> rows, DeviceTensor y)
    {
        var s = Begin();
        _inner.GatherRows(x, rows, y);
        End(s, "GatherRows", $"m={rows.Length} d={x.Cols}", OpBytes.Copy((long)rows.Length * x.Cols));
    }

    /// <inheritdoc/>
    public void Dispose() => _inner.Dispose();

    readonly record struct Start(long Timestamp, long Flops, TimeSpan Cpu);

    Start Begin()
    {
        if (!Enabled) return default;
        _sync?.Synchronize(); // earlier queued work must not be charged to this op
        return new Start(Stopwatch.GetTimestamp(), _inner.Flops.Total, Environment.CpuUsage.TotalTime);
    }

    void End(Start start, string op, string shape, long bytes)
    {
        if (!Enabled) return;
        _sync?.Synchronize();
        long now = Stopwatch.GetTimestamp();
        double cpuUs = (Environment.CpuUsage.TotalTime - start.Cpu).TotalMicroseconds;
        double startUs = Stopwatch.GetElapsedTime(_origin, start.Timestamp).TotalMicroseconds;
        double durUs = Stopwatch.GetElapsedTime(start.Timestamp, now).TotalMicroseconds;
        _records.Add(new OpRecord(op, shape, Phase, startUs, durUs, _inner.Flops.Total - start.Flops, bytes, cpuUs));
    }
}
