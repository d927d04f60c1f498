using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Ponder.Backends.Cpu.Gemm;

namespace Ponder.Backends.Cpu.Attention;

/// <summary>
/// Causal grouped-query attention over the paged KV cache, tiled flash-style with the query vectors in the SIMD lanes:
/// <code>
///   work item = (lane set, kvHead), claimed dynamically by the workers. A lane set is up to 32 query vectors that read
///   the same K/V head: the query heads of that KV head for a chunk of one sequence's rows (prefill), or for several
///   decode sequences (one row each), so sequences sharing prompt blocks (beams, best-of-N) share their loads.
///   Qt[d][lane] = q_lane[d]                                   (queries transposed once per item)
///   for each key tile (≤ 16 keys of one block; tiles start at absolute positions, so every row sees the same tiles)
///     for each distinct block B the lanes read at this tile (one for prefill and for shared prefixes)
///       s[j][lane] = (Σ_d K_B[j][d] · Qt[d][lane]) · scale    (one FMA chain per lane in d order; K_B read once for all lanes)
///     per lane: m' = max(m, max_j s); c = exp(m - m'); l = l·c + Σ_j p_j, p_j = exp(s_j - m'); O = O·c
///     for each B: O[d][lane] += Σ_j p[j][lane] · V_B[j][d]     (FMA chain per lane in j order; lanes of other blocks or
///                                                               past their causal end are left untouched by a select)
///   out_lane = O[·][lane] · (1 / l)
/// </code>
/// Every operation is lane-wise (no horizontal reductions), so a query vector's result is a fixed function of its own
/// query, position and keys: it does not depend on its lane, its lane set, the chunking, the other sequences of the
/// batch or the thread (batch invariance, bitwise; BatchInvarianceTests and the cache identity tests check it). Keys a
/// lane must not see (causal future, another sequence's block) never enter its arithmetic, not even as 0 · V, so a
/// NaN in one sequence's cache cannot reach another's output. Vector256 lanes: the same code on AVX2 and AVX-512.
/// </summary>
internal sealed unsafe class PagedAttention : IParallelPart
{
    /// <summary>Lanes of a vector (Vector256 of f32).</summary>
    const int W = 8;
    /// <summary>Most query vectors per lane set (4 vectors): the scratch of an item stays in L1.</summary>
    const int MaxLanes = 32;
    /// <summary>Most keys of one tile (a tile never crosses a block boundary).</summary>
    const int TileKeys = 16;
    /// <summary>
    /// Below this many FLOPs (4 * heads * headDim * keys) the whole op runs on the calling thread. A decode token of
    /// SmolLM2 shape has 3 items (KV heads) of ~1.5 us each at 50 keys: two threads save at best one item's time, and
    /// lose far more whenever the worker wakes late (tens of us on a shared VM). 2^19 is ~220 keys of that shape.
    /// Settable so tests can force the split (its result is bitwise the same).
    /// </summary>
    internal static long ParallelFlops { get; set; } = 1L << 19;

    /// <summary>Query vectors one lane set takes: a chunk of rows of one sequence, or several one-row (decode) sequences.</summary>
    /// <remarks>Heads Head0 .. Head0 + Heads - 1 of each KV head's group: the whole group unless it has more than 32 heads.</remarks>
    readonly record struct LaneSet(int Seq, int SeqCount, int Row0, int Rows, int Head0, int Heads);

    float* _q, _out, _kv;
    int _qCols, _nKvHeads, _group, _layer;
    KvLayout _layout = null!;
    BatchLayout _batch = null!;
    float _scale;
    LaneSet[] _sets = new LaneSet[16];
    int _items, _next;

    /// <summary>Runs attention for every row of <paramref name="batch"/>. Callers validate shapes.</summary>
    public void Run(CpuTensor q, CpuKvStorage kv, int layer, int nHeads, BatchLayout batch, CpuTensor output, int threads)
    {
        var layout = kv.Layout;
        _q = q.Pointer; _out = output.Pointer; _kv = kv.Pointer; _qCols = q.Cols;
        _nKvHeads = layout.NKvHeads; _group = nHeads / layout.NKvHeads; _layer = layer;
        _layout = layout; _batch = batch; _scale = 1f / MathF.Sqrt(layout.HeadDim);

        int sets = BuildSets(batch);
        _items = sets * _nKvHeads;
        _next = 0;
        long flops = 4L * nHeads * layout.HeadDim * batch.CausalKeys;
        var workers = GemmWorkers.Shared;
        int parts = flops < ParallelFlops ? 1 : Math.Min(Math.Min(threads, workers.MaxParts), _items);
        try
        {
            if (parts <= 1) Execute(0, 1);
            else workers.Run(this, parts);
        }
        finally
        {
            _q = _out = _kv = null;
            _batch = null!;
        }
    }

    /// <summary>
    /// Splits the batch into lane sets: each prefill sequence into chunks of rows (the last chunk, which attends to the
    /// most keys, first, so the last items handed out are the short ones); runs of consecutive decode sequences into
    /// sets of up to 16 query vectors (forks of one prompt sit next to each other, so a set mostly shares its blocks).
    /// </summary>
    int BuildSets(BatchLayout batch)
    {
        int g = _group, heads = Math.Min(g, MaxLanes);
        // As many rows as fill the 4 lane vectors (3 query heads a KV head: 10 rows, 30 of 32 lanes).
        int rowsPerSet = Math.Max(1, MaxLanes / heads);
        int seqsPerSet = Math.Max(1, 2 * W / heads);
        int count = 0;
        var counts = batch.QueryCount;
        for (int s = 0; s < counts.Length; s++)
        {
            if (counts[s] == 1 && heads == g && count > 0 && _sets[count - 1] is { Rows: 1 } open && counts[open.Seq] == 1 && open.Seq + open.SeqCount == s && open.SeqCount < seqsPerSet)
            {
                _sets[count - 1] = open with { SeqCount = open.SeqCount + 1 };
                continue;
            }
            for (int row0 = (counts[s] - 1) / rowsPerSet * rowsPerSet; row0 >= 0; row0 -= rowsPerSet)
            {
                for (int h0 = 0; h0 < g; h0 += heads)
                {
                    if (count == _sets.Length) Array.Resize(ref _sets, count * 2);
                    _sets[count++] = new LaneSet(s, 1, row0, Math.Min(rowsPerSet, counts[s] - row0), h0, Math.Min(heads, g - h0));
                }
            }
        }
        return count;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Execute(int part, int parts)
    {
        int headDim = _layout.HeadDim, paddedDim = (headDim + W - 1) / W * W;
        // Per-thread scratch, on the stack: queries and outputs transposed (d-major, MaxLanes a row), scores, masks.
        float* qt = stackalloc float[headDim * MaxLanes];
        float* ot = stackalloc float[paddedDim * MaxLanes];
        float* scores = stackalloc float[TileKeys * MaxLanes];
        float* raw = stackalloc float[(TileKeys + W) * MaxLanes];
        float* masks = stackalloc float[TileKeys * MaxLanes];
        var lanes = new Lanes();
        int item;
        while ((item = Interlocked.Increment(ref _next) - 1) < _items)
            Item(_sets[item / _nKvHeads], item % _nKvHeads, qt, ot, scores, raw, masks, ref lanes);
    }

    /// <summary>Per-lane state of one item: its sequence (index within the set), key count, and output row.</summary>
    [InlineArray(MaxLanes)] struct LaneInts { int _e; }
    [InlineArray(MaxLanes)] struct LanePointers { nint _e; }
    [InlineArray(MaxLanes / W)] struct LaneVectors { Vector256<float> _e; }
    [InlineArray(MaxLanes / W)] struct LaneIntVectors { Vector256<int> _e; }
    [InlineArray(16)] struct SetBlocks { int _e; }

    struct Lanes
    {
        public LaneInts SeqOf, Keys, Block;
        public LanePointers Out;
        public LaneIntVectors KeysV, BlockV;
        public LaneVectors Max, Sum, Rescale;
        public SetBlocks SeqBlock, Distinct;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void Item(LaneSet set, int kvHead, float* qt, float* ot, float* scores, float* raw, float* masks, ref Lanes ln)
    {
        var batch = _batch;
        var layout = _layout;
        int headDim = layout.HeadDim, kvDim = layout.KvDim, bs = layout.BlockSize, g = _group;
        bool decode = set.Rows == 1 && set.SeqCount >= 1 && batch.QueryCount[set.Seq] == 1;
        int used = decode ? set.SeqCount * set.Heads : set.Rows * set.Heads;
        // 1, 2 or 4 lane vectors (the chain kernels' shapes); padding lanes repeat lane 0 and are never written out.
        int vectors = used <= W ? 1 : used <= 2 * W ? 2 : 4, laneCount = vectors * W;

        int maxKeys = 0;
        for (int lane = 0; lane < laneCount; lane++)
        {
            int l = lane < used ? lane : 0;
            int local = l / set.Heads, h = kvHead * g + set.Head0 + l % set.Heads;
            int seq = decode ? set.Seq + local : set.Seq;
            int row = batch.QueryStart[seq] + (decode ? 0 : set.Row0 + local);
            int keys = batch.ContextLength[seq] + (decode ? 0 : set.Row0 + local) + 1;
            ln.SeqOf[lane] = decode ? local : 0;
            ln.Keys[lane] = keys;
            ln.Out[lane] = lane < used ? (nint)(_out + (long)row * _qCols + h * headDim) : 0;
            maxKeys = Math.Max(maxKeys, keys);
            float* q = _q + (long)row * _qCols + h * headDim;
            for (int d = 0; d < headDim; d++) qt[d * laneCount + lane] = q[d];
        }
        for (int v = 0; v < vectors; v++)
        {
            ln.KeysV[v] = Vector256.Create(ln.Keys[v * W], ln.Keys[v * W + 1], ln.Keys[v * W + 2], ln.Keys[v * W + 3],
                ln.Keys[v * W + 4], ln.Keys[v * W + 5], ln.Keys[v * W + 6], ln.Keys[v * W + 7]);
            ln.Max[v] = Vector256.Create(float.NegativeInfinity);
            ln.Sum[v] = Vector256<float>.Zero;
        }
        new Span<float>(ot, headDim * laneCount).Clear();
        int seqs = decode ? set.SeqCount : 1;
        var negInf = Vector256.Create(float.NegativeInfinity);

        for (int key0 = 0; key0 < maxKeys;)
        {
            int b = key0 / bs, off = key0 % bs;
            int n = Math.Min(Math.Min(TileKeys, bs - off), maxKeys - key0);
            // The block each sequence of the set reads at this tile (-1: none, its keys ended before it).
            int distinct = 0;
            for (int s = 0; s < seqs; s++)
            {
                int seq = set.Seq + s;
                var table = batch.BlockTable(seq);
                int keys = batch.ContextLength[seq] + (decode ? 1 : set.Row0 + set.Rows);
                int block = keys > key0 ? table[b] : -1;
                ln.SeqBlock[s] = block;
                if (block < 0) continue;
                int k = 0;
                while (k < distinct && ln.Distinct[k] != block) k++;
                if (k == distinct) ln.Distinct[distinct++] = block;
            }
            for (int i = 0; i < n * laneCount; i += W) negInf.Store(scores + i);
            bool single = distinct == 1;
            if (!single)
                for (int v = 0; v < vectors; v++)
                {
                    for (int i = 0; i < W; i++) ln.Block[v * W + i] = ln.SeqBlock[ln.SeqOf[v * W + i]];
                    ln.BlockV[v] = Vector256.Create(ln.Block[v * W], ln.Block[v * W + 1], ln.Block[v * W + 2], ln.Block[v * W + 3],
                        ln.Block[v * W + 4], ln.Block[v * W + 5], ln.Block[v * W + 6], ln.Block[v * W + 7]);
                }

            // Scores of each distinct block, merged into the lanes that read it (and only their causal keys).
            for (int k = 0; k < distinct; k++)
            {
                int block = ln.Distinct[k];
                float* kRows = _kv + layout.PlaneOffset(block, _layer, 0) + kvHead * headDim + (long)off * kvDim;
                Scores(vectors, kRows, kvDim, qt, laneCount, headDim, n, raw);
                var blockV = Vector256.Create(block);
                var scale = Vector256.Create(_scale);
                for (int j = 0; j < n; j++)
                {
                    var pos = Vector256.Create(key0 + j);
                    for (int v = 0; v < vectors; v++)
                    {
                        var mask = Vector256.GreaterThan(ln.KeysV[v], pos);
                        if (!single) mask &= Vector256.Equals(ln.BlockV[v], blockV);
                        float* s = scores + j * laneCount + v * W;
                        Vector256.ConditionalSelect(mask.AsSingle(), Vector256.Load(raw + j * laneCount + v * W) * scale, Vector256.Load(s)).Store(s);
                    }
                }
            }

            // Online softmax, lane-wise: new maximum, rescale factor, probabilities, running sum in key order.
            for (int v = 0; v < vectors; v++)
            {
                var max = ln.Max[v];
                var tileMax = negInf;
                for (int j = 0; j < n; j++) tileMax = Vector256.Max(tileMax, Vector256.Load(scores + j * laneCount + v * W));
                var newMax = Vector256.Max(max, tileMax);
                // Exactly 1 where the maximum did not move: a tile a lane cannot see (past its causal end, or another
                // sequence's block) must leave its state bitwise unchanged, and the vector exp of 0 need not be exactly 1.
                var c = Vector256.ConditionalSelect(Vector256.Equals(max, newMax), Vector256<float>.One, Exp(max - newMax));
                var sum = ln.Sum[v] * c;
                for (int j = 0; j < n; j++)
                {
                    float* s = scores + j * laneCount + v * W;
                    var p = Exp(Vector256.Load(s) - newMax);
                    p.Store(s);
                    sum += p;
                }
                ln.Max[v] = newMax; ln.Sum[v] = sum; ln.Rescale[v] = c;
            }
            for (int d = 0; d < headDim; d++)
                for (int v = 0; v < vectors; v++)
                {
                    float* o = ot + d * laneCount + v * W;
                    (Vector256.Load(o) * ln.Rescale[v]).Store(o);
                }

            // Values of each distinct block into the lanes that read it.
            for (int k = 0; k < distinct; k++)
            {
                int block = ln.Distinct[k];
                float* vRows = _kv + layout.PlaneOffset(block, _layer, 1) + kvHead * headDim + (long)off * kvDim;
                var blockV = Vector256.Create(block);
                bool clean = single;
                for (int lane = 0; clean && lane < laneCount; lane++) clean = ln.Keys[lane] >= key0 + n;
                if (!clean)
                    for (int j = 0; j < n; j++)
                    {
                        var pos = Vector256.Create(key0 + j);
                        for (int v = 0; v < vectors; v++)
                        {
                            var mask = Vector256.GreaterThan(ln.KeysV[v], pos);
                            if (!single) mask &= Vector256.Equals(ln.BlockV[v], blockV);
                            mask.AsSingle().Store(masks + j * laneCount + v * W);
                        }
                    }
                Values(vectors, clean, vRows, kvDim, scores, masks, laneCount, n, headDim, ot);
            }
            key0 += n;
        }

        for (int v = 0; v < vectors; v++) ln.Rescale[v] = Vector256<float>.One / ln.Sum[v];
        for (int lane = 0; lane < used; lane++)
        {
            float* o = (float*)ln.Out[lane];
            float inv = ln.Rescale[lane / W][lane % W];
            for (int d = 0; d < headDim; d++) o[d] = ot[d * laneCount + lane] * inv;
        }
    }

    /// <summary>
    /// raw[j][lane] = Σ_d K[j][d] · Qt[d][lane] for keys j &lt; n (rows of <paramref name="kRows"/>, stride kvDim), in
    /// groups of 8 / vectors keys. A last group past n reads rows beyond the tile (inside the storage's slack) whose
    /// results are never used.
    /// </summary>
    static void Scores(int vectors, float* kRows, int kvDim, float* qt, int laneCount, int headDim, int n, float* raw)
    {
        int keysPerGroup = 8 / vectors;
        for (int j = 0; j < n; j += keysPerGroup)
        {
            float* r = raw + j * laneCount;
            float* k = kRows + (long)j * kvDim;
            switch (vectors)
            {
                case 1: Chains<V1, NoMask>(k, kvDim, 1, qt, laneCount, null, headDim, r, laneCount, false); break;
                case 2: Chains<V2, NoMask>(k, kvDim, 1, qt, laneCount, null, headDim, r, laneCount, false); break;
                default: Chains<V4, NoMask>(k, kvDim, 1, qt, laneCount, null, headDim, r, laneCount, false); break;
            }
        }
    }

    /// <summary>
    /// O[d][lane] += Σ_{j &lt; n} p[j][lane] · V[j][d], in groups of 8 / vectors dims; unless <paramref name="clean"/>,
    /// only where masks[j][lane] is set (the others keep their bits). A last group past headDim computes dims into the
    /// padding of O (reading V inside the storage's slack) that are never used.
    /// </summary>
    static void Values(int vectors, bool clean, float* vRows, int kvDim, float* p, float* masks, int laneCount, int n, int headDim, float* ot)
    {
        int dimsPerGroup = 8 / vectors;
        for (int d = 0; d < headDim; d += dimsPerGroup)
        {
            float* o = ot + d * laneCount;
            float* v = vRows + d;
            switch (vectors, clean)
            {
                case (1, true): Chains<V1, NoMask>(v, 1, kvDim, p, laneCount, null, n, o, laneCount, true); break;
                case (2, true): Chains<V2, NoMask>(v, 1, kvDim, p, laneCount, null, n, o, laneCount, true); break;
                case (_, true): Chains<V4, NoMask>(v, 1, kvDim, p, laneCount, null, n, o, laneCount, true); break;
                case (1, false): Chains<V1, Mask>(v, 1, kvDim, p, laneCount, masks, n, o, laneCount, true); break;
                case (2, false): Chains<V2, Mask>(v, 1, kvDim, p, laneCount, masks, n, o, laneCount, true); break;
                default: Chains<V4, Mask>(v, 1, kvDim, p, laneCount, masks, n, o, laneCount, true); break;
            }
        }
    }

    interface IVectors { static abstract int Count { get; } }
    struct V1 : IVectors { public static int Count => 1; }
    struct V2 : IVectors { public static int Count => 2; }
    struct V4 : IVectors { public static int Count => 4; }
    interface IMask { static abstract bool On { get; } }
    struct NoMask : IMask { public static bool On => false; }
    struct Mask : IMask { public static bool On => true; }

    /// <summary>
    /// Eight FMA chains: chain i = (scalar stream a = i / TV, lane vector b = i % TV), a running over 8 / TV scalar
    /// streams s + a·sOff and b over TV consecutive lane vectors of a row-major [count][vStride] matrix:
    /// acc_i = init_i + Σ_t s[a·sOff + t·sStride] · vec[t·vStride + b·8], the scalar broadcast. Results (and, with
    /// <paramref name="accumulate"/>, the initial values) live in dst[a·dStride + b·8]. Eight independent chains hide
    /// the FMA latency; each chain's order is fixed (t ascending), whatever the others hold.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Chains<TV, TM>(float* s, nint sOff, nint sStride, float* vec, nint vStride, float* mask, int count, float* dst, nint dStride, bool accumulate)
        where TV : struct, IVectors where TM : struct, IMask
    {
        float* s0 = s, s1 = s + sOff, s2 = s + 2 * sOff, s3 = s + 3 * sOff;
        float* s4 = s + 4 * sOff, s5 = s + 5 * sOff, s6 = s + 6 * sOff, s7 = s + 7 * sOff;
        Vector256<float> a0, a1, a2, a3, a4, a5, a6, a7;
        if (accumulate)
        {
            a0 = Load<TV>(dst, dStride, 0); a1 = Load<TV>(dst, dStride, 1); a2 = Load<TV>(dst, dStride, 2); a3 = Load<TV>(dst, dStride, 3);
            a4 = Load<TV>(dst, dStride, 4); a5 = Load<TV>(dst, dStride, 5); a6 = Load<TV>(dst, dStride, 6); a7 = Load<TV>(dst, dStride, 7);
        }
        else a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = Vector256<float>.Zero;
        nint so = 0, vo = 0;
        for (int t = 0; t < count; t++, so += sStride, vo += vStride)
        {
            float* row = vec + vo;
            float* m = mask + vo;
            if (TV.Count == 1)
            {
                var v0 = Vector256.Load(row);
                a0 = Fma<TM>(s0[so], v0, a0, m); a1 = Fma<TM>(s1[so], v0, a1, m); a2 = Fma<TM>(s2[so], v0, a2, m); a3 = Fma<TM>(s3[so], v0, a3, m);
                a4 = Fma<TM>(s4[so], v0, a4, m); a5 = Fma<TM>(s5[so], v0, a5, m); a6 = Fma<TM>(s6[so], v0, a6, m); a7 = Fma<TM>(s7[so], v0, a7, m);
            }
            else if (TV.Count == 2)
            {
                var v0 = Vector256.Load(row); var v1 = Vector256.Load(row + W);
                float x0 = s0[so], x1 = s1[so], x2 = s2[so], x3 = s3[so];
                a0 = Fma<TM>(x0, v0, a0, m); a1 = Fma<TM>(x0, v1, a1, m + W); a2 = Fma<TM>(x1, v0, a2, m); a3 = Fma<TM>(x1, v1, a3, m + W);
                a4 = Fma<TM>(x2, v0, a4, m); a5 = Fma<TM>(x2, v1, a5, m + W); a6 = Fma<TM>(x3, v0, a6, m); a7 = Fma<TM>(x3, v1, a7, m + W);
            }
            else
            {
                var v0 = Vector256.Load(row); var v1 = Vector256.Load(row + W); var v2 = Vector256.Load(row + 2 * W); var v3 = Vector256.Load(row + 3 * W);
                float x0 = s0[so], x1 = s1[so];
                a0 = Fma<TM>(x0, v0, a0, m); a1 = Fma<TM>(x0, v1, a1, m + W); a2 = Fma<TM>(x0, v2, a2, m + 2 * W); a3 = Fma<TM>(x0, v3, a3, m + 3 * W);
                a4 = Fma<TM>(x1, v0, a4, m); a5 = Fma<TM>(x1, v1, a5, m + W); a6 = Fma<TM>(x1, v2, a6, m + 2 * W); a7 = Fma<TM>(x1, v3, a7, m + 3 * W);
            }
        }
        Store<TV>(a0, dst, dStride, 0); Store<TV>(a1, dst, dStride, 1); Store<TV>(a2, dst, dStride, 2); Store<TV>(a3, dst, dStride, 3);
        Store<TV>(a4, dst, dStride, 4); Store<TV>(a5, dst, dStride, 5); Store<TV>(a6, dst, dStride, 6); Store<TV>(a7, dst, dStride, 7);
    }

    /// <summary>
    /// e^x for x ≤ 0 (scores minus their running maximum), lane-wise, about 1 ulp: x = n·ln2 + r with |r| ≤ ln2/2,
    /// e^r = 1 + r + r²·P(r), P a degree-5 minimax polynomial (Horner, FMAs), times 2^n built in the exponent bits. Below −87 (and for −∞, a
    /// masked key) the result is exactly 0, so a key a lane must not see adds nothing to its sum. A third of the
    /// instructions of <see cref="Vector256.Exp(Vector256{float})"/>, which widens to f64.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Exp(Vector256<float> x)
    {
        var n = Vector256.Round(x * Vector256.Create(1.44269504f));
        var r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-0.693359375f), x);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(2.12194440e-4f), r);
        // Cephes' minimax coefficients for (e^r - 1 - r) / r².
        var p = Vector256.Create(1.9875691500e-4f);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.3981999507e-3f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(8.3334519073e-3f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(4.1665795894e-2f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.6666665459e-1f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(5.0000001201e-1f));
        p = Vector256.FusedMultiplyAdd(p, r * r, r) + Vector256<float>.One;
        var scale = Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
        return Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256.Create(-87f)), Vector256<float>.Zero, p * scale);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Fma<TM>(float x, Vector256<float> v, Vector256<float> acc, float* mask) where TM : struct, IMask
    {
        var r = Vector256.FusedMultiplyAdd(Vector256.Create(x), v, acc);
        return TM.On ? Vector256.ConditionalSelect(Vector256.Load(mask), r, acc) : r;
    }

    /// <summary>Chain i's slot: scalar stream i / TV (a row of dst), lane vector i % TV.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float* Slot<TV>(float* dst, nint dStride, int i) where TV : struct, IVectors => dst + i / TV.Count * dStride + i % TV.Count * W;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Load<TV>(float* dst, nint dStride, int i) where TV : struct, IVectors => Vector256.Load(Slot<TV>(dst, dStride, i));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store<TV>(Vector256<float> a, float* dst, nint dStride, int i) where TV : struct, IVectors => a.Store(Slot<TV>(dst, dStride, i));
}
