using System.Runtime.CompilerServices;
using Ponder.Tensors;

namespace Ponder.Backends.Cpu.Gemm;

/// <summary>
/// The blocked GEMM: C[m, n] = alpha * op(A) · op(B) + beta * C, split across threads, then blocked for the caches
/// (Goto / BLIS loop order): columns by NC, depth by KC (pack B block), rows by MC (pack A block), then NR x MR tiles.
/// op(B) is either packed per block from (B, ldb, transB) or read from a whole pre-packed weight (see <see cref="WeightPanels"/>);
/// a 16-bit or 8-bit weight is converted to f32 one micro-panel segment at a time into a small per-thread buffer.
/// Weights that share one input (Q, K and V; gate and up) can share one packing of A (<see cref="RunShared"/>).
/// A single token (decode) skips the blocking: the row kernels of <see cref="WeightPanels"/> read A in place and the
/// weight's panels (converted in registers), a few panels per work item, items claimed dynamically by the threads.
/// Callers validate arguments; this type trusts its pointers.
/// </summary>
internal sealed unsafe class GemmDriver : IParallelPart
{
    // Below this many FLOPs a second thread costs more (wake + cache traffic) than it saves.
    const long ParallelFlops = 1L << 17;
    // Most floats of A packed once for all threads (16 MiB); a larger A is packed block by block by each thread.
    const long SharedPackFloats = 1L << 22;
    // Most weight panels the row path (one token) multiplies together: 4 x 2 FMA chains hide the FMA latency.
    const int RowGroup = 4;
    /// <summary>Most weights one <see cref="RunRows"/> dispatch takes.</summary>
    public const int MaxRowWeights = 4;

    [ThreadStatic] static GemmDriver? t_driver;
    [ThreadStatic] static int t_lastParts;

    /// <summary>Parts (threads, the caller's included) the last GEMM dispatched from this thread was split into, so tests can see a thread count honoured.</summary>
    internal static int LastParts => t_lastParts;
    [ThreadStatic] static float[]? t_aBuffer, t_bBuffer, t_panelBuffer;

    GemmShape _shape;
    int _m, _n, _k;
    float _alpha, _beta;
    float* _a, _b, _c, _scales, _offsets;
    void* _weight;
    DType _weightType;
    nint _lda, _ldb, _ldc;
    bool _transA, _transB, _splitRows, _rowPath, _packPhase;
    // A packed once for every thread (null: each thread packs its own blocks): depth block b's row panels start at
    // _sharedA + b * _sharedBlock, the panel of rows from r at + r * kc.
    float* _sharedA;
    nint _sharedBlock;
    float[]? _sharedABuffer;
    // Row path: the weights, the end of each one's work items (cumulative), panels per item, items, next unclaimed item.
    readonly RowWeight[] _rowWeights = new RowWeight[MaxRowWeights];
    readonly int[] _groupEnd = new int[MaxRowWeights];
    int _groupPanels, _groups, _nextGroup;

    /// <summary>
    /// Runs the GEMM. <paramref name="weight"/>, when not null, is op(B) as whole micro-panels of k x NR (panel stride k*NR)
    /// with elements of <paramref name="weightType"/> (and a quantized type's <paramref name="scales"/> and
    /// <paramref name="offsets"/>), and <paramref name="b"/> is ignored. Requires m, n, k &gt; 0.
    /// </summary>
    public static void Run(GemmShape shape, int threads, int m, int n, int k, float alpha,
        float* a, nint lda, bool transA, float* b, nint ldb, bool transB, float beta, float* c, nint ldc,
        void* weight = null, DType weightType = DType.F32, float* scales = null, bool fuseRow = false, float* offsets = null)
    {
        var d = t_driver ??= new GemmDriver();
        d._shape = shape; d._m = m; d._n = n; d._k = k; d._alpha = alpha; d._beta = beta;
        d._a = a; d._lda = lda; d._transA = transA; d._b = b; d._ldb = ldb; d._transB = transB;
        d._weight = weight; d._weightType = weightType; d._scales = scales; d._offsets = offsets;
        d._c = c; d._ldc = ldc;

        // One token against a pre-packed weight (decode): the row path (RunRows).
        if (weight != null && m == 1 && !transA && fuseRow)
        {
            var target = new RowWeight(weight, weightType, scales, offsets, n, c);
            RunRows(shape, threads, k, alpha, beta, a, new ReadOnlySpan<RowWeight>(in target));
            return;
        }
        d._rowPath = false;
        int mPanels = (m + shape.MR - 1) / shape.MR, nPanels = (n + shape.NR - 1) / shape.NR;
        // A pre-packed weight is split by columns so each thread streams only its share of it.
        d._splitRows = weight == null && nPanels < mPanels && nPanels < 4 * threads;
        int parts = 2L * m * n * k < ParallelFlops ? 1 : Math.Min(threads, d._splitRows ? mPanels : nPanels);
        parts = Math.Min(parts, GemmWorkers.Shared.MaxParts);
        d._sharedA = null;
        if (parts > 1 && !d._splitRows && (long)mPanels * shape.MR * k <= SharedPackFloats)
        {
            // Split by columns, every part multiplies all of A: each would pack all of it, so the parts pack their
            // share of A's row panels once into one buffer first (a copy: the products are unchanged), then multiply.
            try { PackWhole(d, mPanels, parts); }
            catch { Clear(d); throw; }
        }
        Dispatch(d, parts);
    }

    /// <summary>Packs all of A (d's m x k, every depth block) into the shared buffer, each of <paramref name="parts"/> packing its share of the row panels.</summary>
    static void PackWhole(GemmDriver d, int mPanels, int parts)
    {
        int kcMax = BalancedDepth(d._k, d._shape.KC);
        d._sharedBlock = (nint)mPanels * d._shape.MR * kcMax;
        d._sharedA = Buffer(ref d._sharedABuffer, d._sharedBlock * ((d._k + kcMax - 1) / kcMax));
        d._packPhase = true;
        try { RunParts(d, parts); }
        finally { d._packPhase = false; }
    }

    /// <summary>
    /// Several tokens times several pre-packed weights of depth k that share them (Q, K and V; gate and up):
    /// c_i[m, n_i] = a[m, k] · W_iᵀ (c_i overwritten, leading dimension n_i). A is packed once, every depth block,
    /// into one buffer (each part packing its share of the row panels), then every weight's micro-panels run over it,
    /// split by columns as <see cref="Run"/> splits them. Each tile sees the same packed values, depth blocks and
    /// kernel calls as a separate <see cref="Run"/> per weight, so the outputs are bitwise those of the unshared path.
    /// Returns false (nothing done) when A is too large to pack whole; the caller then runs the weights one by one.
    /// Requires m, k &gt; 0 and every n_i &gt; 0.
    /// </summary>
    public static bool RunShared(GemmShape shape, int threads, int m, int k, float* a, ReadOnlySpan<RowWeight> weights)
    {
        int mPanels = (m + shape.MR - 1) / shape.MR;
        if ((long)mPanels * shape.MR * k > SharedPackFloats) return false;
        var d = t_driver ??= new GemmDriver();
        d._shape = shape; d._m = m; d._k = k; d._alpha = 1f; d._beta = 0f;
        d._a = a; d._lda = k; d._transA = false; d._b = null; d._ldb = 0; d._transB = true;
        d._rowPath = false; d._splitRows = false;
        long flops = 0;
        foreach (var w in weights) flops += 2L * m * w.N * k;
        try
        {
            PackWhole(d, mPanels, flops < ParallelFlops ? 1 : Math.Min(threads, mPanels));
            foreach (var w in weights)
            {
                d._n = w.N; d._c = w.C; d._ldc = w.N;
                d._weight = w.Values; d._weightType = w.Type; d._scales = w.Scales; d._offsets = w.Offsets;
                // The parts each weight splits into, as Run would split it alone.
                int nPanels = (w.N + shape.NR - 1) / shape.NR;
                RunParts(d, 2L * m * w.N * k < ParallelFlops ? 1 : Math.Min(threads, nPanels));
            }
        }
        finally { Clear(d); }
        return true;
    }

    /// <summary>
    /// One token (decode) times several pre-packed weights of depth k that share it (Q, K and V; gate and up), as one
    /// dispatch: c_i[0..n_i) = alpha * a[0..k) · W_iᵀ + beta * c_i. The row kernels read A in place (no packing) and the
    /// weights' panels (converted in registers), a few panels per work item; items are claimed from a shared counter,
    /// so a core that starts late (woken late, or busy with another process) takes fewer of them instead of holding the
    /// other at the end. Every weight needs <see cref="WeightPanels.CanFuseRow"/>; at most <see cref="MaxRowWeights"/>.
    /// </summary>
    public static void RunRows(GemmShape shape, int threads, int k, float alpha, float beta, float* a, ReadOnlySpan<RowWeight> weights)
    {
        if (weights.Length > MaxRowWeights) throw new ArgumentOutOfRangeException(nameof(weights), $"{weights.Length} weights in one row dispatch, at most {MaxRowWeights}");
        var d = t_driver ??= new GemmDriver();
        d._shape = shape; d._k = k; d._alpha = alpha; d._beta = beta; d._a = a; d._rowPath = true;
        int nr = shape.NR, totalPanels = 0;
        long flops = 0;
        foreach (var w in weights) { totalPanels += (w.N + nr - 1) / nr; flops += 2L * w.N * k; }
        var workers = GemmWorkers.Shared;
        int parts = flops < ParallelFlops ? 1 : Math.Min(Math.Min(threads, workers.MaxParts), totalPanels);
        // Up to RowGroup panels per item (eight FMA chains), fewer when that would leave too few items to balance.
        int groupPanels = Math.Clamp(totalPanels / (2 * parts), 1, RowGroup), groups = 0;
        for (int i = 0; i < weights.Length; i++)
        {
            d._rowWeights[i] = weights[i];
            groups += (weights[i].N + nr * groupPanels - 1) / (nr * groupPanels);
            d._groupEnd[i] = groups;
        }
        d._groupPanels = groupPanels; d._groups = groups; d._nextGroup = 0;
        try { Dispatch(d, parts); }
        finally { Array.Clear(d._rowWeights, 0, weights.Length); }
    }

    static void Dispatch(GemmDriver d, int parts)
    {
        try { RunParts(d, parts); }
        finally { Clear(d); }
    }

    static void RunParts(GemmDriver d, int parts)
    {
        var workers = GemmWorkers.Shared;
        parts = Math.Min(parts, workers.MaxParts);
        t_lastParts = parts;
        if (parts <= 1) d.Execute(0, 1);
        else workers.Run(d, parts);
    }

    static void Clear(GemmDriver d)
    {
        d._a = d._b = d._c = d._scales = d._offsets = d._sharedA = null;
        d._weight = null;
    }

    /// <summary>C = beta * C (what a GEMM with k = 0 or alpha = 0 leaves); beta = 0 writes zeros without reading C.</summary>
    public static void Scale(int m, int n, float beta, Span<float> c, int ldc)
    {
        for (int i = 0; i < m; i++)
        {
            var row = c.Slice(i * ldc, n);
            if (beta == 0) row.Clear();
            else if (beta != 1) System.Numerics.Tensors.TensorPrimitives.Multiply(row, beta, row);
        }
    }

    /// <inheritdoc />
    public void Execute(int part, int parts)
    {
        if (_rowPath) RowGroups();
        else if (_packPhase) PackShared(part, parts);
        else if (_splitRows)
        {
            var (lo, hi) = Range(part, parts, (_m + _shape.MR - 1) / _shape.MR);
            Blocked(lo * _shape.MR, Math.Min(_m, hi * _shape.MR), 0, _n);
        }
        else
        {
            var (lo, hi) = Range(part, parts, (_n + _shape.NR - 1) / _shape.NR);
            Blocked(0, _m, lo * _shape.NR, Math.Min(_n, hi * _shape.NR));
        }
    }

    /// <summary>Packs this part's share of A's row panels, every depth block, into the shared buffer.</summary>
    void PackShared(int part, int parts)
    {
        int mr = _shape.MR, kcMax = BalancedDepth(_k, _shape.KC);
        var (lo, hi) = Range(part, parts, (_m + mr - 1) / mr);
        if (lo >= hi) return;
        int r0 = lo * mr, rows = Math.Min(_m, hi * mr) - r0;
        for (int pc = 0, block = 0; pc < _k; pc += kcMax, block++)
        {
            int kc = Math.Min(kcMax, _k - pc);
            GemmPacking.PackA(_a, _lda, _transA, r0, rows, pc, kc, mr, _sharedA + block * _sharedBlock + (nint)r0 * kc);
        }
    }

    static (int Lo, int Hi) Range(int part, int parts, int count) =>
        ((int)((long)part * count / parts), (int)((long)(part + 1) * count / parts));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void Blocked(int i0, int i1, int j0, int j1)
    {
        if (i0 >= i1 || j0 >= j1) return;
        var s = _shape;
        int mr = s.MR, nr = s.NR;
        bool prepacked = _weight != null, convert = prepacked && _weightType != DType.F32;
        // The depth blocking must not depend on the number of rows: each depth block's partial sum is added to C,
        // so a different split would round differently, and a token's logits would depend on what else is in its
        // batch. The cache's bitwise-identity tests (fork vs prefix index vs scratch) rely on this.
        int kcMax = BalancedDepth(_k, s.KC);
        int mcMax = Math.Min(s.MC, i1 - i0), ncMax = Math.Min(s.NC, j1 - j0);
        float* aBuf = _sharedA != null ? null : Buffer(ref t_aBuffer, (long)((mcMax + mr - 1) / mr) * mr * kcMax);
        float* bBuf = prepacked ? null : Buffer(ref t_bBuffer, (long)((ncMax + nr - 1) / nr) * nr * kcMax);
        float* panelBuf = convert ? Buffer(ref t_panelBuffer, (long)kcMax * nr) : null;
        float* tile = stackalloc float[mr * nr];

        for (int jc = j0; jc < j1; jc += s.NC)
        {
            int nc = Math.Min(s.NC, j1 - jc);
            for (int pc = 0; pc < _k; pc += kcMax)
            {
                int kc = Math.Min(kcMax, _k - pc);
                float* pb;
                nint panelStride;
                if (prepacked)
                {
                    panelStride = (nint)_k * nr;
                    pb = convert ? null : (float*)_weight + jc / nr * panelStride + (nint)pc * nr;
                }
                else
                {
                    panelStride = (nint)kc * nr;
                    pb = bBuf;
                    GemmPacking.PackB(_b, _ldb, _transB, pc, kc, jc, nc, nr, bBuf, panelStride);
                }
                // Later depth blocks accumulate onto what the first one wrote.
                float beta = pc == 0 ? _beta : 1f;
                for (int ic = i0; ic < i1; ic += s.MC)
                {
                    int mc = Math.Min(s.MC, i1 - ic);
                    float* aBlock = aBuf;
                    if (_sharedA != null) aBlock = _sharedA + pc / kcMax * _sharedBlock + (nint)ic * kc;
                    else GemmPacking.PackA(_a, _lda, _transA, ic, mc, pc, kc, mr, aBuf);
                    for (int jr = 0; jr < nc; jr += nr)
                    {
                        int cols = Math.Min(nr, nc - jr);
                        float* bPanel = pb + jr / nr * panelStride;
                        if (convert)
                        {
                            WeightPanels.ToF32(_weightType, _weight, _scales, _offsets, (jc + jr) / nr, _k, pc, kc, nr, panelBuf);
                            bPanel = panelBuf;
                        }
                        float* cTile = _c + ic * _ldc + jc + jr;
                        for (int ir = 0; ir < mc; ir += mr)
                            GemmKernels.Tile(s.Isa, Math.Min(mr, mc - ir), cols, kc, aBlock + (nint)ir * kc, bPanel, tile,
                                cTile + ir * _ldc, _ldc, _alpha, beta);
                    }
                }
            }
        }
    }

    /// <summary>
    /// The row path (m = 1): claims groups of panels until none is left; for each, every depth block in order through
    /// the row kernels, merged into C exactly as the tile path merges its depth blocks (same blocks, same order).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void RowGroups()
    {
        int nr = _shape.NR;
        int kcMax = BalancedDepth(_k, _shape.KC);
        float* tile = stackalloc float[RowGroup * nr];
        int g;
        while ((g = Interlocked.Increment(ref _nextGroup) - 1) < _groups)
        {
            int i = 0;
            while (g >= _groupEnd[i]) i++;
            ref readonly var w = ref _rowWeights[i];
            int p0 = (g - (i == 0 ? 0 : _groupEnd[i - 1])) * _groupPanels;
            int count = Math.Min(_groupPanels, (w.N + nr - 1) / nr - p0);
            for (int pc = 0; pc < _k; pc += kcMax)
            {
                int kc = Math.Min(kcMax, _k - pc);
                for (int j = 0; j < nr; j += 16) RowPanels(w, p0, count, pc, kc, j, tile + j);
                float beta = pc == 0 ? _beta : 1f;
                for (int p = 0; p < count; p++)
                {
                    int col = (p0 + p) * nr;
                    GemmKernels.Update(w.C + col, w.N, tile + p * nr, nr, 1, Math.Min(nr, w.N - col), _alpha, beta);
                }
            }
        }
    }

    /// <summary>Columns j..j+16 of <paramref name="count"/> panels of w from <paramref name="panel"/>, depth rows [k0, k0 + kc), into t (stride NR per panel).</summary>
    void RowPanels(in RowWeight w, int panel, int count, int k0, int kc, int j, float* t)
    {
        int nr = _shape.NR;
        nint panelStride = (nint)_k * nr, start = panel * panelStride + (nint)k0 * nr + j;
        float* a = _a + k0;
        switch (w.Type)
        {
            case DType.F32: Rows<WeightPanels.F32Load, float>(count, (float*)w.Values + start, panelStride, nr, a, kc, t); break;
            case DType.F16: Rows<WeightPanels.F16Convert, ushort>(count, (ushort*)w.Values + start, panelStride, nr, a, kc, t); break;
            case DType.BF16: Rows<WeightPanels.Bf16Convert, ushort>(count, (ushort*)w.Values + start, panelStride, nr, a, kc, t); break;
            case var type4 when WeightPanels.Is4Bit(type4):
            {
                int group = DTypes.GroupValues(type4);
                nint scaleStride = (nint)(_k / group) * nr, at = panel * scaleStride + (nint)(k0 / group) * nr + j;
                nint byteStride = (nint)(_k / 2) * nr;
                byte* q = (byte*)w.Values + panel * byteStride + (nint)(k0 / 2) * nr + j;
                int bias = WeightPanels.NibbleBias(type4);
                if (w.Offsets == null) RowsQuant4<WeightPanels.NoOffset>(count, q, byteStride, w.Scales + at, null, scaleStride, group, bias, nr, a, kc, t);
                else RowsQuant4<WeightPanels.Offset>(count, q, byteStride, w.Scales + at, w.Offsets + at, scaleStride, group, bias, nr, a, kc, t);
                break;
            }
            default:
            {
                int group = DTypes.GroupValues(w.Type);
                nint scaleStride = (nint)(_k / group) * nr, at = panel * scaleStride + (nint)(k0 / group) * nr + j;
                sbyte* q = (sbyte*)w.Values + start;
                if (w.Offsets == null) RowsQuant<WeightPanels.NoOffset>(count, q, panelStride, w.Scales + at, null, scaleStride, group, nr, a, kc, t);
                else RowsQuant<WeightPanels.Offset>(count, q, panelStride, w.Scales + at, w.Offsets + at, scaleStride, group, nr, a, kc, t);
                break;
            }
        }
    }

    static void RowsQuant4<TO>(int count, byte* q, nint panelStride, float* scales, float* offsets, nint scaleStride, int group, int bias, int nr, float* a, int kc, float* t)
        where TO : struct, WeightPanels.IOffset
    {
        switch (count)
        {
            case 1: WeightPanels.RowsQuant4<R1, TO>(q, panelStride, scales, offsets, scaleStride, group, bias, nr, a, kc, t); break;
            case 2: WeightPanels.RowsQuant4<R2, TO>(q, panelStride, scales, offsets, scaleStride, group, bias, nr, a, kc, t); break;
            case 3: WeightPanels.RowsQuant4<R3, TO>(q, panelStride, scales, offsets, scaleStride, group, bias, nr, a, kc, t); break;
            default: WeightPanels.RowsQuant4<R4, TO>(q, panelStride, scales, offsets, scaleStride, group, bias, nr, a, kc, t); break;
        }
    }

    static void RowsQuant<TO>(int count, sbyte* q, nint panelStride, float* scales, float* offsets, nint scaleStride, int group, int nr, float* a, int kc, float* t)
        where TO : struct, WeightPanels.IOffset
    {
        switch (count)
        {
            case 1: WeightPanels.RowsQuant<R1, TO>(q, panelStride, scales, offsets, scaleStride, group, nr, a, kc, t); break;
            case 2: WeightPanels.RowsQuant<R2, TO>(q, panelStride, scales, offsets, scaleStride, group, nr, a, kc, t); break;
            case 3: WeightPanels.RowsQuant<R3, TO>(q, panelStride, scales, offsets, scaleStride, group, nr, a, kc, t); break;
            default: WeightPanels.RowsQuant<R4, TO>(q, panelStride, scales, offsets, scaleStride, group, nr, a, kc, t); break;
        }
    }

    static void Rows<TLoad, T>(int count, T* w, nint panelStride, int nr, float* a, int kc, float* t)
        where TLoad : struct, WeightPanels.IRowLoad<T> where T : unmanaged
    {
        switch (count)
        {
            case 1: WeightPanels.Rows<R1, TLoad, T>(w, panelStride, nr, a, kc, t); break;
            case 2: WeightPanels.Rows<R2, TLoad, T>(w, panelStride, nr, a, kc, t); break;
            case 3: WeightPanels.Rows<R3, TLoad, T>(w, panelStride, nr, a, kc, t); break;
            default: WeightPanels.Rows<R4, TLoad, T>(w, panelStride, nr, a, kc, t); break;
        }
    }

    /// <summary>
    /// Depth per block: k split into equal blocks of about <paramref name="kcTarget"/>, rounded up to a multiple of 32
    /// (a Q8_0 scale block), so no block is a thin remainder.
    /// </summary>
    static int BalancedDepth(int k, int kcTarget)
    {
        int blocks = (k + kcTarget - 1) / kcTarget;
        int kc = (k + blocks - 1) / blocks;
        return Math.Min(k, (kc + 31) / 32 * 32);
    }

    /// <summary>A per-thread pinned scratch buffer of at least <paramref name="length"/> floats, kept for the next call.</summary>
    static float* Buffer(ref float[]? buffer, long length)
    {
        if (buffer == null || buffer.Length < length)
            buffer = GC.AllocateUninitializedArray<float>(checked((int)Math.Max(length, 1)), pinned: true);
        return (float*)Unsafe.AsPointer(ref buffer[0]);
    }
}

/// <summary>
/// One weight of a shared-input dispatch (<see cref="GemmDriver.RunRows"/>, <see cref="GemmDriver.RunShared"/>): its pre-packed panels (<see cref="WeightPanels"/>
/// layout) of its element type, a quantized type's scales and offsets, output count N (the weight's rows) and where the
/// N outputs go.
/// </summary>
internal readonly unsafe struct RowWeight(void* values, DType type, float* scales, float* offsets, int n, float* c)
{
    public void* Values { get; } = values;
    public DType Type { get; } = type;
    public float* Scales { get; } = scales;
    public float* Offsets { get; } = offsets;
    public int N { get; } = n;
    public float* C { get; } = c;
}
