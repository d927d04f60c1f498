using System.Runtime.CompilerServices;
using Ponder.Tensors;

namespace Ponder.Backends.Cpu.Gemm;

/// <summary>
/// The blocked GEMM: C[m, n] = alpha * op(A) · op(B) + beta * C, split across threads, then blocked for the caches
/// (Goto / BLIS loop order): columns by NC, depth by KC (pack B block), rows by MC (pack A block), then NR x MR tiles.
/// op(B) is either packed per block from (B, ldb, transB) or read from a whole pre-packed weight (see <see cref="WeightPanels"/>);
/// a 16-bit or 8-bit weight is converted to f32 one micro-panel segment at a time into a small per-thread buffer, or, for
/// a single token, in registers by the fused row kernels of <see cref="WeightPanels"/>.
/// Callers validate arguments; this type trusts its pointers.
/// </summary>
internal sealed unsafe class GemmDriver : IParallelPart
{
    // Below this many FLOPs a second thread costs more (wake + cache traffic) than it saves.
    const long ParallelFlops = 1L << 17;

    [ThreadStatic] static GemmDriver? t_driver;
    [ThreadStatic] static float[]? t_aBuffer, t_bBuffer, t_panelBuffer;

    GemmShape _shape;
    int _m, _n, _k;
    float _alpha, _beta;
    float* _a, _b, _c, _scales;
    void* _weight;
    DType _weightType;
    nint _lda, _ldb, _ldc;
    bool _transA, _transB, _splitRows, _fuseRow;

    /// <summary>
    /// Runs the GEMM. <paramref name="weight"/>, when not null, is op(B) as whole micro-panels of k x NR (panel stride k*NR)
    /// with elements of <paramref name="weightType"/> (and Q8_0 <paramref name="scales"/>), and <paramref name="b"/> is ignored.
    /// Requires m, n, k &gt; 0.
    /// </summary>
    public static void Run(GemmShape shape, int threads, int m, int n, int k, float alpha,
        float* a, nint lda, bool transA, float* b, nint ldb, bool transB, float beta, float* c, nint ldc,
        void* weight = null, DType weightType = DType.F32, float* scales = null, bool fuseRow = false)
    {
        var d = t_driver ??= new GemmDriver();
        d._shape = shape; d._m = m; d._n = n; d._k = k; d._alpha = alpha; d._beta = beta;
        d._a = a; d._lda = lda; d._transA = transA; d._b = b; d._ldb = ldb; d._transB = transB;
        d._weight = weight; d._weightType = weightType; d._scales = scales; d._fuseRow = fuseRow;
        d._c = c; d._ldc = ldc;

        int mPanels = (m + shape.MR - 1) / shape.MR, nPanels = (n + shape.NR - 1) / shape.NR;
        // A pre-packed weight is split by columns so each thread streams only its share of it.
        d._splitRows = weight == null && nPanels < mPanels && nPanels < 4 * threads;
        int parts = 2L * m * n * k < ParallelFlops ? 1 : Math.Min(threads, d._splitRows ? mPanels : nPanels);
        var workers = GemmWorkers.Shared;
        parts = Math.Min(parts, workers.MaxParts);
        try
        {
            if (parts <= 1) d.Execute(0, 1);
            else workers.Run(d, parts);
        }
        finally
        {
            d._a = d._b = d._c = d._scales = null;
            d._weight = null;
        }
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
        if (_splitRows)
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

    static (int Lo, int Hi) Range(int part, int parts, int count) =>
        ((int)((long)part * count / parts), (int)((long)(part + 1) * count / parts));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void Blocked(int i0, int i1, int j0, int j1)
    {
        if (i0 >= i1 || j0 >= j1) return;
        var s = _shape;
        int mr = s.MR, nr = s.NR;
        bool prepacked = _weight != null, convert = prepacked && _weightType != DType.F32;
        // One token against a 16- or 8-bit weight: convert in registers (WeightPanels.CanFuseRow), no panel buffer.
        bool fused = convert && _fuseRow && i1 - i0 == 1;
        // The depth blocking must not depend on the number of rows: each depth block's partial sum is added to C,
        // so a different split would round differently, and a token's logits would depend on what else is in its
        // batch. The cache's bitwise-identity tests (fork vs prefix index vs scratch) rely on this.
        int kcMax = BalancedDepth(_k, s.KC);
        int mcMax = Math.Min(s.MC, i1 - i0), ncMax = Math.Min(s.NC, j1 - j0);
        float* aBuf = Buffer(ref t_aBuffer, (long)((mcMax + mr - 1) / mr) * mr * kcMax);
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
                    GemmPacking.PackA(_a, _lda, _transA, ic, mc, pc, kc, mr, aBuf);
                    for (int jr = 0; jr < nc; jr += nr)
                    {
                        int cols = Math.Min(nr, nc - jr);
                        float* bPanel = pb + jr / nr * panelStride;
                        if (fused)
                        {
                            FusedRow((jc + jr) / nr, pc, kc, aBuf, tile);
                            GemmKernels.Update(_c + ic * _ldc + jc + jr, _ldc, tile, nr, 1, cols, _alpha, beta);
                            continue;
                        }
                        if (convert)
                        {
                            WeightPanels.ToF32(_weightType, _weight, _scales, (jc + jr) / nr, _k, pc, kc, nr, panelBuf);
                            bPanel = panelBuf;
                        }
                        float* cTile = _c + ic * _ldc + jc + jr;
                        for (int ir = 0; ir < mc; ir += mr)
                            GemmKernels.Tile(s.Isa, Math.Min(mr, mc - ir), cols, kc, aBuf + (nint)ir * kc, bPanel, tile,
                                cTile + ir * _ldc, _ldc, _alpha, beta);
                    }
                }
            }
        }
    }

    /// <summary>One row of A times rows [k0, k0 + kc) of an F16, BF16 or Q8_0 weight panel, converted in registers, 16 columns at a time.</summary>
    void FusedRow(int panel, int k0, int kc, float* a, float* tile)
    {
        int nr = _shape.NR;
        nint start = (nint)panel * _k * nr + (nint)k0 * nr;
        float* scales = _scales + (nint)panel * (_k / DTypes.Q8BlockValues) * nr + (nint)(k0 / DTypes.Q8BlockValues) * nr;
        for (int j = 0; j < nr; j += 16)
        {
            switch (_weightType)
            {
                case DType.F16: WeightPanels.Row16<WeightPanels.F16Convert>((ushort*)_weight + start + j, nr, a, _shape.MR, kc, tile + j); break;
                case DType.BF16: WeightPanels.Row16<WeightPanels.Bf16Convert>((ushort*)_weight + start + j, nr, a, _shape.MR, kc, tile + j); break;
                default: WeightPanels.RowQ8((sbyte*)_weight + start + j, scales + j, nr, a, _shape.MR, kc, tile + j); break;
            }
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
