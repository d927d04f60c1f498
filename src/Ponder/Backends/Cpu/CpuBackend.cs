using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Ponder.Backends.Cpu.Attention;
using Ponder.Backends.Cpu.Gemm;
using Ponder.Tensors;

namespace Ponder.Backends.Cpu;

/// <summary>
/// The CPU backend: SIMD element-wise ops through System.Numerics.Tensors, projections through <see cref="CpuWeight"/>,
/// paged attention over native KV blocks, parallel across cores inside each op.
/// </summary>
public sealed unsafe class CpuBackend : IBackend, ITypedWeightUpload
{
    readonly PagedAttention _attention = new();

    /// <param name="threads">
    /// Threads per op, the caller's included (default: all cores): projections, attention and the other split ops of
    /// this backend use at most this many, whatever <see cref="Sgemm.MaxThreads"/> (the trainer's setting) says.
    /// </param>
    public CpuBackend(int? threads = null)
    {
        int t = threads ?? Environment.ProcessorCount;
        ArgumentOutOfRangeException.ThrowIfLessThan(t, 1, nameof(threads));
        Threads = t;
    }

    /// <inheritdoc/>
    public string Name => "cpu";
    /// <summary>Threads a projection's GEMM uses (the calling thread and persistent workers).</summary>
    public int Threads { get; }
    /// <inheritdoc/>
    public FlopLedger Flops { get; } = new();

    /// <inheritdoc/>
    public DeviceTensor Allocate(int rows, int cols) => new CpuTensor(rows, cols);

    /// <inheritdoc/>
    public DeviceTensor Upload(ReadOnlySpan<float> data, int rows, int cols)
    {
        if ((long)rows * cols != data.Length) throw new ArgumentException($"{data.Length} values do not make a [{rows}, {cols}] tensor", nameof(data));
        var t = new CpuTensor(rows, cols);
        data.CopyTo(t.Span);
        return t;
    }

    /// <inheritdoc/>
    public void Download(DeviceTensor tensor, Span<float> destination)
    {
        var t = Cast(tensor);
        if (destination.Length % Math.Max(1, t.Cols) != 0 || destination.Length > t.Length)
            throw new ArgumentException($"destination of {destination.Length} values is not whole rows of a [{t.Rows}, {t.Cols}] tensor", nameof(destination));
        t.Span[..destination.Length].CopyTo(destination);
    }

    /// <inheritdoc/>
    public DeviceWeight UploadWeight(ReadOnlySpan<float> data, int rows, int cols) => new CpuDeviceWeight(CpuWeight.Create(data, rows, cols));

    /// <inheritdoc />
    public bool CanKeep(DType type, int rows, int cols) =>
        cols % DTypes.BlockValues(type) == 0;

    /// <inheritdoc />
    public DeviceWeight UploadWeight(ReadOnlySpan<byte> data, DType type, int rows, int cols) => new CpuDeviceWeight(CpuWeight.Create(data, type, rows, cols));

    /// <inheritdoc/>
    public KvStorage AllocateKv(KvLayout layout, int blockCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockCount, 1);
        return new CpuKvStorage(layout, blockCount);
    }

    /// <inheritdoc/>
    public void CopyKvBlock(KvStorage kv, int source, int destination)
    {
        var s = CastKv(kv);
        CheckBlock(s, source); CheckBlock(s, destination);
        long n = s.Layout.FloatsPerBlock;
        Buffer.MemoryCopy(s.Pointer + source * n, s.Pointer + destination * n, n * sizeof(float), n * sizeof(float));
    }

    /// <inheritdoc/>
    public void Embed(DeviceTensor table, ReadOnlySpan<int> tokens, DeviceTensor x)
    {
        var tab = Cast(table); var o = Cast(x);
        for (int i = 0; i < tokens.Length; i++)
        {
            int id = tokens[i];
            if ((uint)id >= (uint)tab.Rows) throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {id} at batch row {i} is outside the vocabulary (0..{tab.Rows - 1})");
            tab.Row(id).CopyTo(o.Row(i));
        }
    }

    /// <inheritdoc/>
    public void RmsNorm(DeviceTensor x, DeviceTensor weight, float eps, DeviceTensor y, int n)
    {
        var xt = Cast(x); var wt = Cast(weight); var yt = Cast(y);
        int d = xt.Cols;
        if (wt.Length < d || yt.Cols != d) throw new ArgumentException($"rmsnorm shapes: x [{xt.Rows}, {d}], weight of {wt.Length}, y [{yt.Rows}, {yt.Cols}]");
        for (int i = 0; i < n; i++) NormRow(xt.Pointer + (long)i * d, wt.Pointer, eps, yt.Pointer + (long)i * d, d);
        Flops.Add(FlopCategory.Elementwise, OpFlops.RmsNorm(n, d));
    }

    /// <inheritdoc/>
    public void RmsNormHeads(DeviceTensor x, DeviceTensor weight, float eps, int headDim, int n)
    {
        var xt = Cast(x); var wt = Cast(weight);
        if (headDim <= 0 || xt.Cols % headDim != 0 || wt.Length < headDim)
            throw new ArgumentException($"per-head rmsnorm shapes: x [{xt.Rows}, {xt.Cols}] in heads of {headDim}, weight of {wt.Length}");
        // Heads are contiguous rows of headDim: the same row norm over n · heads rows, in place.
        long rows = (long)n * (xt.Cols / headDim);
        for (long r = 0; r < rows; r++) NormRow(xt.Pointer + r * headDim, wt.Pointer, eps, xt.Pointer + r * headDim, headDim);
        Flops.Add(FlopCategory.Elementwise, OpFlops.RmsNorm(rows, headDim));
    }

    /// <summary>y = x / sqrt(mean(x²) + eps) * w over d values (y may be x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void NormRow(float* xi, float* w, float eps, float* yi, int d)
    {
        var xs = new ReadOnlySpan<float>(xi, d);
        float inv = 1f / MathF.Sqrt(TensorPrimitives.Dot(xs, xs) / d + eps);
        // y = (x * inv) * w in one pass (the same two roundings as scaling then weighting).
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var iv = Vector256.Create(inv);
            for (; j + 8 <= d; j += 8) Vector256.Store(Vector256.Load(xi + j) * iv * Vector256.Load(w + j), yi + j);
        }
        for (; j < d; j++) yi[j] = xi[j] * inv * w[j];
    }

    /// <inheritdoc/>
    public void MatMul(DeviceTensor x, DeviceWeight w, DeviceTensor y, int n, FlopCategory category)
    {
        var xt = Cast(x); var yt = Cast(y); var cw = CheckMatMul(xt, w, yt, n);
        if (n == 0) return;
        cw.Multiply(xt.RowsSpan(n), n, yt.RowsSpan(n), Threads);
        Flops.Add(category, OpFlops.MatMul(n, cw.Rows, cw.Cols));
    }

    /// <summary>
    /// One token: all weights in one row dispatch (one hand-off to the workers). Several tokens: A packed once for all
    /// the weights (<see cref="GemmDriver.RunShared"/>). Otherwise one by one. Bitwise the same outputs either way.
    /// </summary>
    public void MatMul(DeviceTensor x, ReadOnlySpan<DeviceWeight> weights, ReadOnlySpan<DeviceTensor> outputs, int n, FlopCategory category)
    {
        if (weights.Length != outputs.Length) throw new ArgumentException($"{weights.Length} weights but {outputs.Length} outputs", nameof(outputs));
        var xt = Cast(x);
        bool shared = n > 0 && xt.Cols > 0 && weights.Length is > 0 and <= GemmDriver.MaxRowWeights;
        Span<RowWeight> targets = stackalloc RowWeight[GemmDriver.MaxRowWeights];
        GemmShape shape = default;
        for (int i = 0; i < weights.Length; i++)
        {
            var yt = Cast(outputs[i]);
            var cw = CheckMatMul(xt, weights[i], yt, n);
            if (i == 0) shape = cw.Shape;
            // One token needs every weight on the row path (a weight off it runs the blocked GEMM alone).
            shared &= (n > 1 || cw.RowPath) && cw.Rows > 0 && cw.Shape == shape;
            if (shared) targets[i] = cw.Target(yt.Pointer);
        }
        if (shared && n == 1) GemmDriver.RunRows(shape, Threads, xt.Cols, 1f, 0f, xt.Pointer, targets[..weights.Length]);
        else if (!shared || !GemmDriver.RunShared(shape, Threads, n, xt.Cols, xt.Pointer, targets[..weights.Length]))
        {
            for (int i = 0; i < weights.Length; i++) MatMul(x, weights[i], outputs[i], n, category);
            return;
        }
        foreach (var w in weights) Flops.Add(category, OpFlops.MatMul(n, w.Rows, w.Cols));
    }

    static CpuWeight CheckMatMul(CpuTensor x, DeviceWeight w, CpuTensor y, int n)
    {
        var cw = (w as CpuDeviceWeight ?? throw new ArgumentException("weight belongs to another backend", nameof(w))).Weight;
        if (x.Cols != cw.Cols || y.Cols != cw.Rows)
            throw new ArgumentException($"matmul shapes: x [{n}, {x.Cols}] · W[{cw.Rows}, {cw.Cols}]ᵀ -> y [{n}, {y.Cols}]");
        if (n > x.Rows || n > y.Rows) throw new ArgumentOutOfRangeException(nameof(n), $"{n} rows, but x has {x.Rows} and y {y.Rows}");
        return cw;
    }

    /// <inheritdoc/>
    public void AddBias(DeviceTensor y, DeviceTensor bias, int n)
    {
        var yt = Cast(y); var b = Cast(bias).Span;
        for (int i = 0; i < n; i++) TensorPrimitives.Add(yt.Row(i), b, yt.Row(i));
        Flops.Add(FlopCategory.Elementwise, OpFlops.Add(n, yt.Cols));
    }

    /// <summary>
    /// Rotates each head's pairs (j, j + headDim/2) by the position's angles: a' = a·cos − b·sin, b' = b·cos + a·sin,
    /// eight pairs a step (separate multiplies and adds, so the vector and scalar columns round alike and a row's
    /// result never depends on its batch).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Rope(DeviceTensor x, int nHeads, int headDim, DeviceTensor rope, BatchLayout batch)
    {
        var xt = Cast(x); var table = Cast(rope);
        int half = headDim / 2;
        var positions = batch.Positions;
        for (int i = 0; i < positions.Length; i++)
        {
            if (positions[i] >= table.Rows) throw new ArgumentOutOfRangeException(nameof(batch), $"position {positions[i]} is past the RoPE table ({table.Rows} positions)");
            float* cos = table.Pointer + (long)positions[i] * table.Cols, sin = cos + half;
            float* row = xt.Pointer + (long)i * xt.Cols;
            for (int h = 0; h < nHeads; h++)
            {
                float* lo = row + h * headDim, hi = lo + half;
                int j = 0;
                if (Vector256.IsHardwareAccelerated)
                    for (; j + 8 <= half; j += 8)
                    {
                        var a = Vector256.Load(lo + j); var b = Vector256.Load(hi + j);
                        var c = Vector256.Load(cos + j); var s = Vector256.Load(sin + j);
                        (a * c - b * s).Store(lo + j);
                        (b * c + a * s).Store(hi + j);
                    }
                for (; j < half; j++)
                {
                    float a = lo[j], b = hi[j];
                    lo[j] = a * cos[j] - b * sin[j];
                    hi[j] = b * cos[j] + a * sin[j];
                }
            }
        }
        Flops.Add(FlopCategory.Elementwise, OpFlops.Rope(positions.Length, nHeads, headDim));
    }

    /// <summary>Each token's K and V rows into its cache slot: two row copies per token (K and V are separate planes of a block).</summary>
    public void StoreKv(KvStorage kv, int layer, DeviceTensor k, DeviceTensor v, BatchLayout batch)
    {
        var s = CastKv(kv); var kt = Cast(k); var vt = Cast(v);
        var layout = s.Layout;
        int bs = layout.BlockSize, kvDim = layout.KvDim;
        if (kt.Cols != kvDim || vt.Cols != kvDim) throw new ArgumentException($"StoreKv: k [{kt.Rows}, {kt.Cols}] and v [{vt.Rows}, {vt.Cols}] must have kvDim = {kvDim} columns");
        var slots = batch.Slots;
        long bytes = (long)kvDim * sizeof(float);
        for (int i = 0; i < slots.Length; i++)
        {
            int block = slots[i] / bs, slot = slots[i] % bs;
            CheckBlock(s, block);
            float* dst = s.Pointer + layout.PlaneOffset(block, layer, 0) + (long)slot * kvDim;
            Buffer.MemoryCopy(kt.Pointer + (long)i * kvDim, dst, bytes, bytes);
            Buffer.MemoryCopy(vt.Pointer + (long)i * kvDim, dst + layout.FloatsPerPlane, bytes, bytes);
        }
    }

    /// <inheritdoc/>
    public void Attention(DeviceTensor q, KvStorage kv, int layer, int nHeads, BatchLayout batch, DeviceTensor output)
    {
        var qt = Cast(q); var s = CastKv(kv); var ot = Cast(output);
        var layout = s.Layout;
        if (nHeads % layout.NKvHeads != 0 || qt.Cols < nHeads * layout.HeadDim || ot.Cols < nHeads * layout.HeadDim)
            throw new ArgumentException($"attention shapes: {nHeads} query heads over {layout.NKvHeads} KV heads of {layout.HeadDim}, q [{qt.Rows}, {qt.Cols}], output [{ot.Rows}, {ot.Cols}]");
        foreach (int block in batch.BlockIds) CheckBlock(s, block);
        _attention.Run(qt, s, layer, nHeads, batch, ot, Threads);
        Flops.Add(FlopCategory.Attention, OpFlops.Attention(nHeads, layout.HeadDim, batch.CausalKeys));
        Flops.Add(FlopCategory.Elementwise, OpFlops.Softmax(nHeads, batch.CausalKeys));
    }

    /// <summary>
    /// gate = silu(gate) * up = g / (1 + exp(−g)) * u in one pass, row by row, eight columns a step; the tail columns take
    /// the scalar form, by column index, so a row's result never depends on the batch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void SwiGlu(DeviceTensor gate, DeviceTensor up, int n)
    {
        var gt = Cast(gate); var ut = Cast(up);
        int cols = gt.Cols;
        if (ut.Cols != cols) throw new ArgumentException($"SwiGlu: gate [{gt.Rows}, {cols}] and up [{ut.Rows}, {ut.Cols}] differ in columns");
        var one = Vector256<float>.One;
        for (int i = 0; i < n; i++)
        {
            float* g = gt.Pointer + (long)i * cols, u = ut.Pointer + (long)i * cols;
            int c = 0;
            if (Vector256.IsHardwareAccelerated)
                for (; c + 8 <= cols; c += 8)
                {
                    var x = Vector256.Load(g + c);
                    (x / (one + Vector256.Exp(-x)) * Vector256.Load(u + c)).Store(g + c);
                }
            for (; c < cols; c++) g[c] = g[c] / (1f + MathF.Exp(-g[c])) * u[c];
        }
        Flops.Add(FlopCategory.Elementwise, OpFlops.SwiGlu(n, cols));
    }

    /// <inheritdoc/>
    public void Relu(DeviceTensor x, int n)
    {
        if ((uint)n > (uint)x.Rows) throw new ArgumentOutOfRangeException(nameof(n), $"Relu over {n} rows of a [{x.Rows}, {x.Cols}] tensor");
        var xs = Cast(x).RowsSpan(n);
        TensorPrimitives.Max(xs, 0f, xs);
        Flops.Add(FlopCategory.Elementwise, OpFlops.Relu(n, x.Cols));
    }

    /// <inheritdoc/>
    public void Add(DeviceTensor x, DeviceTensor y, int n)
    {
        var xs = Cast(x).RowsSpan(n);
        TensorPrimitives.Add(xs, Cast(y).RowsSpan(n), xs);
        Flops.Add(FlopCategory.Elementwise, OpFlops.Add(n, x.Cols));
    }

    /// <inheritdoc/>
    public void GatherRows(DeviceTensor x, ReadOnlySpan<int> rows, DeviceTensor y)
    {
        var xt = Cast(x); var yt = Cast(y);
        for (int j = 0; j < rows.Length; j++) xt.Row(rows[j]).CopyTo(yt.Row(j));
    }

    /// <inheritdoc/>
    public void Dispose() { }

    static CpuTensor Cast(DeviceTensor t) => t as CpuTensor ?? throw new ArgumentException($"tensor belongs to another backend ({t.GetType().Name})");
    static CpuKvStorage CastKv(KvStorage kv) => kv as CpuKvStorage ?? throw new ArgumentException($"KV storage belongs to another backend ({kv.GetType().Name})");
    static void CheckBlock(CpuKvStorage s, int block)
    {
        if ((uint)block >= (uint)s.BlockCount) throw new ArgumentOutOfRangeException(nameof(block), $"KV block {block} is outside the storage (0..{s.BlockCount - 1})");
    }
}
