using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using Microsoft.Extensions.Logging;
using Ponder.Backends;
using Ponder.Backends.Profiling;
using Half = ILGPU.Half;

namespace Ponder.Kernels.Ilgpu;

/// <summary>Storage type of projection weights on the device.</summary>
public enum WeightPrecision
{
    /// <summary>f32 as given.</summary>
    F32,
    /// <summary>f16 (ILGPU <see cref="Half"/>), converted on the device and widened to f32 inside the GEMM.</summary>
    F16,
}

/// <summary>
/// <see cref="IBackend"/> on ILGPU kernels (<see cref="Kernels"/>): CUDA when present, ILGPU's CPU accelerator otherwise
/// (slow: it exists so CI can run the kernels). Kernels are compiled once in the constructor. Projections use cuBLAS
/// Sgemm on CUDA when it loads (<see cref="CuBlasGemm"/>), the tiled GEMM kernel otherwise, and a GEMV kernel for one
/// token. Every op is queued on the accelerator's default stream; <see cref="Synchronize"/> waits for them.
/// </summary>
public sealed class IlgpuBackend : IBackend, ISynchronizingBackend
{
    readonly Context? _ownedContext;
    readonly Accelerator _acc;
    readonly AcceleratorStream _stream;
    readonly WeightPrecision _defaultPrecision; // kernels launch on the default stream (the *StreamKernel loaders bind it)
    readonly int _tile, _rowGroup, _attentionGroup;

    readonly Action<Index2D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int> _embed;
    readonly Action<Index2D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int> _gather;
    readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _add;
    readonly Action<Index2D, ArrayView<float>, ArrayView<float>, int> _addBias;
    readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _swiGlu;
    readonly Action<Index1D, ArrayView<float>> _relu;
    readonly Action<Index1D, ArrayView<float>, ArrayView<Half>> _toHalf;
    readonly Action<Index2D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int> _rope;
    readonly Action<Index2D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int> _storeKv;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float> _rmsNorm;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int> _gemmF32;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<Half>, ArrayView<float>, int, int, int> _gemmF16;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _gemvF32;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<Half>, ArrayView<float>, int> _gemvF16;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionParams> _attention;
    readonly Action<KernelConfig, ArrayView<float>, int, int> _softmax;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, int> _argmax;

    // Scratch, grown on demand: host ints of one op (tokens, rows), the packed batch layout, attention scores.
    MemoryBuffer1D<int, Stride1D.Dense> _ints;
    MemoryBuffer1D<int, Stride1D.Dense> _layout;
    MemoryBuffer1D<float, Stride1D.Dense> _scores;
    int[] _layoutHost = new int[256];
    BatchLayout? _layoutOf;
    long _layoutVersion = -1;
    LayoutSections _sections;
    CuBlasGemm? _cuBlas;
    bool _cuBlasTried;

    /// <summary>
    /// Picks CUDA device 0 when <paramref name="preferCuda"/> and one exists, else ILGPU's CPU accelerator (slow: it is
    /// there so CI can run the kernels). Falling back is not silent: <paramref name="logger"/> gets a warning and
    /// <see cref="CudaFallback"/> says why. A host that must not run on the CPU accelerator passes
    /// <paramref name="requireCuda"/>: then no CUDA device is an <see cref="InvalidOperationException"/>.
    /// </summary>
    public static IlgpuBackend Create(bool preferCuda = true, WeightPrecision weights = WeightPrecision.F32, bool requireCuda = false, ILogger? logger = null)
    {
        preferCuda |= requireCuda;
        // CPUDevice.Default (16 threads per group): the simulated-GPU presets run 1024-thread groups as OS threads.
        var context = Context.Create(b => (preferCuda ? b.Cuda().CPU(CPUDevice.Default) : b.CPU(CPUDevice.Default)).EnableAlgorithms());
        try
        {
            bool cuda = preferCuda && context.GetCudaDevices().Count > 0;
            string? fallback = null;
            if (preferCuda && !cuda)
            {
                fallback = "CUDA was requested but ILGPU found no CUDA device (no NVIDIA GPU, or no driver: libcuda not loadable); running on ILGPU's CPU accelerator, which is far slower than the CPU backend";
                if (requireCuda)
                    throw new InvalidOperationException($"IlgpuBackend.Create(requireCuda: true): ILGPU found no CUDA device (no NVIDIA GPU visible, or the driver's libcuda is not loadable); refusing to fall back to ILGPU's CPU accelerator");
                logger?.LogWarning("{Reason}", fallback);
            }
            var acc = cuda ? (Accelerator)context.CreateCudaAccelerator(0) : context.CreateCPUAccelerator(0);
            var backend = new IlgpuBackend(acc, weights, context) { CudaFallback = fallback };
            logger?.LogInformation("ILGPU backend on {Accelerator} ({Type})", acc.Name, acc.AcceleratorType);
            return backend;
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>A backend on ILGPU's CPU accelerator simulating <paramref name="device"/> (default: 16 threads per group).</summary>
    public static IlgpuBackend CreateCpu(CPUDevice? device = null, WeightPrecision weights = WeightPrecision.F32)
    {
        var context = Context.Create(b => b.CPU(device ?? CPUDevice.Default).EnableAlgorithms());
        return new IlgpuBackend(context.CreateCPUAccelerator(0), weights, context);
    }

    /// <summary>
    /// Runs on <paramref name="accelerator"/>, whose context must have ILGPU.Algorithms enabled
    /// (<c>Context.Create(b => b.Cuda().EnableAlgorithms())</c>): the reductions come from it.
    /// The backend disposes the accelerator (and <paramref name="ownedContext"/>, when given).
    /// </summary>
    public IlgpuBackend(Accelerator accelerator, WeightPrecision weights = WeightPrecision.F32, Context? ownedContext = null)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        _acc = accelerator;
        _ownedContext = ownedContext;
        _stream = accelerator.DefaultStream;
        _defaultPrecision = weights;
        int maxGroup = accelerator.MaxNumThreadsPerGroup;
        _tile = Kernels.MaxTile;
        while (_tile * _tile > maxGroup) _tile /= 2;
        _rowGroup = Math.Min(Kernels.MaxGroup, maxGroup);
        _attentionGroup = Math.Min(128, maxGroup);

        _embed = _acc.LoadAutoGroupedStreamKernel<Index2D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int>(Kernels.Embed);
        _gather = _acc.LoadAutoGroupedStreamKernel<Index2D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int>(Kernels.GatherRows);
        _add = _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(Kernels.Add);
        _addBias = _acc.LoadAutoGroupedStreamKernel<Index2D, ArrayView<float>, ArrayView<float>, int>(Kernels.AddBias);
        _swiGlu = _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(Kernels.SwiGlu);
        _relu = _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>>(Kernels.Relu);
        _toHalf = _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<Half>>(Kernels.ToHalf);
        _rope = _acc.LoadAutoGroupedStreamKernel<Index2D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>(Kernels.Rope);
        _storeKv = _acc.LoadAutoGroupedStreamKernel<Index2D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int>(Kernels.StoreKv);
        _rmsNorm = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(Kernels.RmsNorm);
        _gemmF32 = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(Kernels.Gemm<float, F32Element>);
        _gemmF16 = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<Half>, ArrayView<float>, int, int, int>(Kernels.Gemm<Half, F16Element>);
        _gemvF32 = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(Kernels.Gemv<float, F32Element>);
        _gemvF16 = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<Half>, ArrayView<float>, int>(Kernels.Gemv<Half, F16Element>);
        _attention = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionParams>(Kernels.Attention);
        _softmax = _acc.LoadStreamKernel<ArrayView<float>, int, int>(Kernels.SoftmaxRows);
        _argmax = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>, int>(Kernels.ArgmaxRows);

        _ints = _acc.Allocate1D<int>(256);
        _layout = _acc.Allocate1D<int>(256);
        _scores = _acc.Allocate1D<float>(1024);
    }

    /// <summary>"ilgpu-cuda", "ilgpu-cpu", ...</summary>
    public string Name => "ilgpu-" + _acc.AcceleratorType.ToString().ToLowerInvariant();
    /// <inheritdoc/>
    public FlopLedger Flops { get; } = new();
    /// <summary>The accelerator the kernels run on.</summary>
    public Accelerator Accelerator => _acc;
    /// <summary>Why CUDA was asked for but the CPU accelerator runs (see <see cref="Create"/>); null when nothing fell back.</summary>
    public string? CudaFallback { get; private init; }
    /// <summary>The device in words, for headers and logs: accelerator type and name, and the fallback when there was one.</summary>
    public string Device => $"{_acc.AcceleratorType}: {_acc.Name}" + (CudaFallback is null ? "" : " (CUDA requested, none found: CPU fallback)");
    /// <summary>GEMM tile edge in use (16 on CUDA; smaller where groups are smaller).</summary>
    public int Tile => _tile;
    /// <summary>Whether projections of more than one token go to cuBLAS (CUDA only; default true). Set false to time our GEMM kernel.</summary>
    public bool UseCuBlas { get; set; } = true;
    /// <summary>True once cuBLAS has loaded and serves projections.</summary>
    public bool CuBlasActive => _cuBlas is not null;

    /// <summary>Waits for every queued kernel and copy.</summary>
    public void Synchronize() => _stream.Synchronize();

    /// <inheritdoc/>
    public DeviceTensor Allocate(int rows, int cols) => new IlgpuTensor(_acc, rows, cols);

    /// <inheritdoc/>
    public DeviceTensor Upload(ReadOnlySpan<float> data, int rows, int cols)
    {
        if ((long)rows * cols != data.Length) throw new ArgumentException($"{data.Length} values do not make a [{rows}, {cols}] tensor", nameof(data));
        var t = new IlgpuTensor(_acc, rows, cols);
        if (data.Length > 0) t.View.SubView(0, data.Length).CopyFromCPU(_stream, ref MemoryMarshal.GetReference(data), data.Length);
        return t;
    }

    /// <inheritdoc/>
    public void Download(DeviceTensor tensor, Span<float> destination)
    {
        var t = Cast(tensor);
        if (destination.Length % Math.Max(1, t.Cols) != 0 || destination.Length > t.Length)
            throw new ArgumentException($"destination of {destination.Length} values is not whole rows of a [{t.Rows}, {t.Cols}] tensor", nameof(destination));
        if (destination.Length == 0) return;
        t.View.SubView(0, destination.Length).CopyToCPU(_stream, ref MemoryMarshal.GetReference(destination), destination.Length);
        _stream.Synchronize();
    }

    /// <inheritdoc/>
    public DeviceWeight UploadWeight(ReadOnlySpan<float> data, int rows, int cols) => UploadWeight(data, rows, cols, _defaultPrecision);

    /// <summary>
    /// Uploads W [rows, cols] in <paramref name="precision"/>. F16: the f32 values go to a staging buffer and the
    /// <see cref="Kernels.ToHalf"/> kernel rounds them to half on the device (no host-side conversion pass).
    /// </summary>
    public DeviceWeight UploadWeight(ReadOnlySpan<float> data, int rows, int cols, WeightPrecision precision)
    {
        if ((long)rows * cols != data.Length) throw new ArgumentException($"{data.Length} values do not make a [{rows}, {cols}] weight", nameof(data));
        long len = Math.Max(1, data.Length);
        var f32 = _acc.Allocate1D<float>(len);
        if (data.Length > 0) f32.View.SubView(0, data.Length).CopyFromCPU(_stream, ref MemoryMarshal.GetReference(data), data.Length);
        if (precision == WeightPrecision.F32) return new IlgpuWeight(rows, cols, f32, null);
        try
        {
            var f16 = _acc.Allocate1D<Half>(len);
            _toHalf((int)len, f32.View, f16.View);
            _stream.Synchronize();
            return new IlgpuWeight(rows, cols, null, f16);
        }
        finally { f32.Dispose(); }
    }

    /// <summary>Uploads f16 weights as they are (bit copy: System.Half and ILGPU.Half share the IEEE binary16 layout).</summary>
    public DeviceWeight UploadWeight(ReadOnlySpan<System.Half> data, int rows, int cols)
    {
        if ((long)rows * cols != data.Length) throw new ArgumentException($"{data.Length} values do not make a [{rows}, {cols}] weight", nameof(data));
        var f16 = _acc.Allocate1D<Half>(Math.Max(1, data.Length));
        var bits = MemoryMarshal.Cast<System.Half, Half>(data);
        if (bits.Length > 0) f16.View.SubView(0, bits.Length).CopyFromCPU(_stream, ref MemoryMarshal.GetReference(bits), bits.Length);
        return new IlgpuWeight(rows, cols, null, f16);
    }

    /// <inheritdoc/>
    public KvStorage AllocateKv(KvLayout layout, int blockCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockCount, 1);
        return new IlgpuKvStorage(_acc, layout, blockCount);
    }

    /// <inheritdoc/>
    public void CopyKvBlock(KvStorage kv, int source, int destination)
    {
        var s = CastKv(kv);
        CheckBlock(s, source); CheckBlock(s, destination);
        long n = s.Layout.FloatsPerBlock;
        s.View.SubView(source * n, n).CopyTo(_stream, s.View.SubView(destination * n, n));
    }

    /// <inheritdoc/>
    public void Embed(DeviceTensor table, ReadOnlySpan<int> tokens, DeviceTensor x)
    {
        var tab = Cast(table); var o = Cast(x);
        for (int i = 0; i < tokens.Length; i++)
            if ((uint)tokens[i] >= (uint)tab.Rows) throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {tokens[i]} at batch row {i} is outside the vocabulary (0..{tab.Rows - 1})");
        if (tokens.Length == 0) return;
        var ids = UploadInts(tokens);
        _embed(new Index2D(tokens.Length, tab.Cols), tab.View, ids, o.View, tab.Cols);
    }

    /// <inheritdoc/>
    public void RmsNorm(DeviceTensor x, DeviceTensor weight, float eps, DeviceTensor y, int n)
    {
        var xt = Cast(x);
        if (n > 0) _rmsNorm(new KernelConfig(n, _rowGroup), xt.View, Cast(weight).View, Cast(y).View, xt.Cols, eps);
        Flops.Add(FlopCategory.Elementwise, OpFlops.RmsNorm(n, xt.Cols));
    }

    /// <inheritdoc/>
    public void RmsNormHeads(DeviceTensor x, DeviceTensor weight, float eps, int headDim, int n)
    {
        var xt = Cast(x);
        if (headDim <= 0 || xt.Cols % headDim != 0)
            throw new ArgumentException($"per-head rmsnorm shapes: x [{xt.Rows}, {xt.Cols}] in heads of {headDim}");
        // Heads are contiguous rows of headDim: the row kernel over n · heads rows, in place.
        int rows = n * (xt.Cols / headDim);
        if (rows > 0) _rmsNorm(new KernelConfig(rows, _rowGroup), xt.View, Cast(weight).View, xt.View, headDim, eps);
        Flops.Add(FlopCategory.Elementwise, OpFlops.RmsNorm(rows, headDim));
    }

    /// <inheritdoc/>
    public void MatMul(DeviceTensor x, DeviceWeight w, DeviceTensor y, int n, FlopCategory category)
    {
        var xt = Cast(x); var yt = Cast(y);
        var cw = w as IlgpuWeight ?? throw new ArgumentException("weight belongs to another backend", nameof(w));
        if (xt.Cols != cw.Cols || yt.Cols != cw.Rows)
            throw new ArgumentException($"matmul shapes: x [{n}, {xt.Cols}] · W[{cw.Rows}, {cw.Cols}]ᵀ -> y [{n}, {yt.Cols}]");
        if (n == 0) return;
        int rows = cw.Rows, cols = cw.Cols;
        if (n == 1)
        {
            var config = new KernelConfig(rows, _rowGroup);
            if (cw.F32 is { } f) _gemvF32(config, xt.View, f.View, yt.View, cols);
            else _gemvF16(config, xt.View, cw.F16!.View, yt.View, cols);
        }
        else if (cw.F32 is { } f32 && CuBlas() is { } blas)
        {
            blas.Multiply(xt.View, f32.View, yt.View, n, rows, cols);
        }
        else
        {
            var config = new KernelConfig(new Index2D((rows + _tile - 1) / _tile, (n + _tile - 1) / _tile), new Index2D(_tile, _tile));
            if (cw.F32 is { } f) _gemmF32(config, xt.View, f.View, yt.View, n, rows, cols);
            else _gemmF16(config, xt.View, cw.F16!.View, yt.View, n, rows, cols);
        }
        Flops.Add(category, OpFlops.MatMul(n, rows, cols));
    }

    /// <inheritdoc/>
    public void AddBias(DeviceTensor y, DeviceTensor bias, int n)
    {
        var yt = Cast(y);
        if (n > 0) _addBias(new Index2D(n, yt.Cols), yt.View, Cast(bias).View, yt.Cols);
        Flops.Add(FlopCategory.Elementwise, OpFlops.Add(n, yt.Cols));
    }

    /// <inheritdoc/>
    public void Rope(DeviceTensor x, int nHeads, int headDim, DeviceTensor rope, BatchLayout batch)
    {
        var xt = Cast(x); var table = Cast(rope);
        foreach (int p in batch.Positions)
            if (p >= table.Rows) throw new ArgumentOutOfRangeException(nameof(batch), $"position {p} is past the RoPE table ({table.Rows} positions)");
        int n = batch.TokenCount;
        if (n > 0)
        {
            var layout = EnsureLayout(batch);
            _rope(new Index2D(n, nHeads * (headDim / 2)), xt.View, table.View, layout.SubView(_sections.Positions, n), xt.Cols, headDim);
        }
        Flops.Add(FlopCategory.Elementwise, OpFlops.Rope(n, nHeads, headDim));
    }

    /// <inheritdoc/>
    public void StoreKv(KvStorage kv, int layer, DeviceTensor k, DeviceTensor v, BatchLayout batch)
    {
        var s = CastKv(kv);
        var L = s.Layout;
        foreach (int slot in batch.Slots) CheckBlock(s, slot / L.BlockSize);
        int n = batch.TokenCount;
        if (n == 0) return;
        var layout = EnsureLayout(batch);
        _storeKv(new Index2D(n, L.KvDim), Cast(k).View, Cast(v).View, s.View, layout.SubView(_sections.Slots, n), layer, L.NLayers, L.BlockSize, L.KvDim);
    }

    /// <inheritdoc/>
    public void Attention(DeviceTensor q, KvStorage kv, int layer, int nHeads, BatchLayout batch, DeviceTensor output)
    {
        var qt = Cast(q); var s = CastKv(kv); var ot = Cast(output);
        var L = s.Layout;
        foreach (int b in batch.BlockIds) CheckBlock(s, b);
        int n = batch.TokenCount;
        if (n > 0)
        {
            var layout = EnsureLayout(batch);
            long need = (long)n * nHeads * batch.MaxContext;
            if (_scores.Length < need) { _scores.Dispose(); _scores = _acc.Allocate1D<float>(Math.Max(need, _scores.Length * 2)); }
            var p = new AttentionParams
            {
                NHeads = nHeads, HeadDim = L.HeadDim, GroupSize = nHeads / L.NKvHeads, NLayers = L.NLayers, Layer = layer,
                BlockSize = L.BlockSize, KvDim = L.KvDim, ScoreStride = batch.MaxContext, Scale = 1f / MathF.Sqrt(L.HeadDim),
                PositionsAt = _sections.Positions, SequenceOfAt = _sections.SequenceOf, TableStartAt = _sections.TableStart, BlockIdsAt = _sections.BlockIds,
            };
            _attention(new KernelConfig(n * nHeads, _attentionGroup), qt.View, s.View, ot.View, _scores.View, layout, p);
        }
        Flops.Add(FlopCategory.Attention, OpFlops.Attention(nHeads, L.HeadDim, batch.CausalKeys));
        Flops.Add(FlopCategory.Elementwise, OpFlops.Softmax(nHeads, batch.CausalKeys));
    }

    /// <inheritdoc/>
    public void SwiGlu(DeviceTensor gate, DeviceTensor up, int n)
    {
        var g = Cast(gate);
        long len = (long)n * g.Cols;
        if (len > 0) _swiGlu((int)len, g.View.SubView(0, len), Cast(up).View.SubView(0, len));
        Flops.Add(FlopCategory.Elementwise, OpFlops.SwiGlu(n, g.Cols));
    }

    /// <inheritdoc/>
    public void Relu(DeviceTensor x, int n)
    {
        var xt = Cast(x);
        long len = (long)n * xt.Cols;
        if (len > 0) _relu((int)len, xt.View.SubView(0, len));
        Flops.Add(FlopCategory.Elementwise, OpFlops.Relu(n, xt.Cols));
    }

    /// <inheritdoc/>
    public void Add(DeviceTensor x, DeviceTensor y, int n)
    {
        var xt = Cast(x);
        long len = (long)n * xt.Cols;
        if (len > 0) _add((int)len, xt.View.SubView(0, len), Cast(y).View.SubView(0, len));
        Flops.Add(FlopCategory.Elementwise, OpFlops.Add(n, xt.Cols));
    }

    /// <inheritdoc/>
    public void GatherRows(DeviceTensor x, ReadOnlySpan<int> rows, DeviceTensor y)
    {
        var xt = Cast(x); var yt = Cast(y);
        for (int j = 0; j < rows.Length; j++)
            if ((uint)rows[j] >= (uint)xt.Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"row {rows[j]} at position {j} is outside the tensor (0..{xt.Rows - 1})");
        if (rows.Length == 0) return;
        _gather(new Index2D(rows.Length, xt.Cols), xt.View, UploadInts(rows), yt.View, xt.Cols);
    }

    /// <summary>Softmax of the first <paramref name="n"/> rows of <paramref name="logits"/>, in place (max-subtracted). FLOPs: not charged (sampling).</summary>
    public void Softmax(DeviceTensor logits, int n) => SoftmaxRows(logits, n, log: false);

    /// <summary>Log-softmax of the first <paramref name="n"/> rows, in place: x - max - log Σ exp(x - max).</summary>
    public void LogSoftmax(DeviceTensor logits, int n) => SoftmaxRows(logits, n, log: true);

    void SoftmaxRows(DeviceTensor logits, int n, bool log)
    {
        var t = Cast(logits);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(n, t.Rows);
        if (n > 0) _softmax(new KernelConfig(n, _rowGroup), t.View, t.Cols, log ? 1 : 0);
    }

    /// <summary>Index of the largest value of each of the first result.Length rows (lowest index on ties).</summary>
    public void Argmax(DeviceTensor logits, Span<int> result)
    {
        var t = Cast(logits);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(result.Length, t.Rows);
        if (result.Length == 0) return;
        EnsureInts(result.Length);
        var view = _ints.View.SubView(0, result.Length);
        _argmax(new KernelConfig(result.Length, _rowGroup), t.View, view, t.Cols);
        view.CopyToCPU(_stream, ref MemoryMarshal.GetReference(result), result.Length);
        _stream.Synchronize();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _cuBlas?.Dispose();
        _ints.Dispose(); _layout.Dispose(); _scores.Dispose();
        _acc.Dispose();
        _ownedContext?.Dispose();
    }

    CuBlasGemm? CuBlas()
    {
        if (!UseCuBlas || _acc is not CudaAccelerator cuda) return null;
        if (!_cuBlasTried) { _cuBlasTried = true; _cuBlas = CuBlasGemm.TryCreate(cuda); }
        return _cuBlas;
    }

    void EnsureInts(int count)
    {
        if (_ints.Length >= count) return;
        _ints.Dispose();
        _ints = _acc.Allocate1D<int>(Math.Max(count, _ints.Length * 2));
    }

    ArrayView<int> UploadInts(ReadOnlySpan<int> values)
    {
        // The previous op may still read the scratch on the device; the stream orders the copy after it.
        EnsureInts(values.Length);
        var view = _ints.View.SubView(0, values.Length);
        view.CopyFromCPU(_stream, ref MemoryMarshal.GetReference(values), values.Length);
        return view;
    }

    /// <summary>Uploads the batch's integers once per layout version (every layer's Rope/StoreKv/Attention reuse them).</summary>
    ArrayView<int> EnsureLayout(BatchLayout batch)
    {
        if (ReferenceEquals(batch, _layoutOf) && batch.Version == _layoutVersion) return _layout.View;
        int n = batch.TokenCount, s = batch.SequenceCount, b = batch.BlockIds.Length;
        int total = 3 * n + s + 1 + b;
        if (_layoutHost.Length < total) _layoutHost = new int[Math.Max(total, _layoutHost.Length * 2)];
        _sections = new LayoutSections(0, n, 2 * n, 3 * n, 3 * n + s + 1);
        batch.Positions.CopyTo(_layoutHost.AsSpan(_sections.Positions));
        batch.Slots.CopyTo(_layoutHost.AsSpan(_sections.Slots));
        batch.SequenceOf.CopyTo(_layoutHost.AsSpan(_sections.SequenceOf));
        batch.BlockTableStart.CopyTo(_layoutHost.AsSpan(_sections.TableStart));
        batch.BlockIds.CopyTo(_layoutHost.AsSpan(_sections.BlockIds));
        if (_layout.Length < total) { _layout.Dispose(); _layout = _acc.Allocate1D<int>(Math.Max(total, _layout.Length * 2)); }
        _layout.View.SubView(0, total).CopyFromCPU(_stream, ref _layoutHost[0], total);
        _layoutOf = batch; _layoutVersion = batch.Version;
        return _layout.View;
    }

    readonly record struct LayoutSections(int Positions, int Slots, int SequenceOf, int TableStart, int BlockIds);

    static IlgpuTensor Cast(DeviceTensor t) => t as IlgpuTensor ?? throw new ArgumentException($"tensor belongs to another backend ({t.GetType().Name})");
    static IlgpuKvStorage CastKv(KvStorage kv) => kv as IlgpuKvStorage ?? throw new ArgumentException($"KV storage belongs to another backend ({kv.GetType().Name})");
    static void CheckBlock(IlgpuKvStorage s, int block)
    {
        if ((uint)block >= (uint)s.BlockCount) throw new ArgumentOutOfRangeException(nameof(block), $"KV block {block} is outside the storage (0..{s.BlockCount - 1})");
    }
}

/// <summary>An f32 tensor in accelerator memory.</summary>
internal sealed class IlgpuTensor : DeviceTensor
{
    MemoryBuffer1D<float, Stride1D.Dense>? _buffer;

    internal IlgpuTensor(Accelerator acc, int rows, int cols) : base(rows, cols) => _buffer = acc.Allocate1D<float>(Math.Max(1, Length));

    /// <summary>The whole buffer (at least one element, even for an empty tensor).</summary>
    public ArrayView<float> View => (_buffer ?? throw new ObjectDisposedException(nameof(IlgpuTensor))).View;

    /// <inheritdoc/>
    public override void Dispose() { _buffer?.Dispose(); _buffer = null; }
}

/// <summary>A projection weight on the accelerator, f32 or f16.</summary>
internal sealed class IlgpuWeight : DeviceWeight
{
    internal IlgpuWeight(int rows, int cols, MemoryBuffer1D<float, Stride1D.Dense>? f32, MemoryBuffer1D<Half, Stride1D.Dense>? f16) : base(rows, cols)
    {
        F32 = f32; F16 = f16;
    }

    internal MemoryBuffer1D<float, Stride1D.Dense>? F32 { get; private set; }
    internal MemoryBuffer1D<Half, Stride1D.Dense>? F16 { get; private set; }
    /// <summary>The storage type.</summary>
    public WeightPrecision Precision => F32 is not null ? WeightPrecision.F32 : WeightPrecision.F16;
    /// <inheritdoc/>
    public override long Bytes => (long)Rows * Cols * (F32 is not null ? 4 : 2);

    /// <inheritdoc/>
    public override void Dispose()
    {
        F32?.Dispose(); F16?.Dispose();
        F32 = null; F16 = null;
    }
}

/// <summary>KV blocks in one accelerator buffer, laid out as <see cref="KvLayout"/> says.</summary>
internal sealed class IlgpuKvStorage : KvStorage
{
    MemoryBuffer1D<float, Stride1D.Dense>? _buffer;

    internal IlgpuKvStorage(Accelerator acc, KvLayout layout, int blockCount) : base(layout, blockCount) =>
        _buffer = acc.Allocate1D<float>(layout.FloatsPerBlock * blockCount);

    public ArrayView<float> View => (_buffer ?? throw new ObjectDisposedException(nameof(IlgpuKvStorage))).View;

    /// <summary>Copies one layer's K (kOrV = 0) or V (1) rows of a block to the host ([blockSize, kvDim]); for tests.</summary>
    public float[] ReadPlane(int block, int layer, int kOrV)
    {
        var data = new float[Layout.FloatsPerPlane];
        View.SubView(Layout.PlaneOffset(block, layer, kOrV), data.Length).CopyToCPU(data);
        return data;
    }

    /// <inheritdoc/>
    public override void Dispose() { _buffer?.Dispose(); _buffer = null; }
}
