using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Ponder.Backends.Cpu.Gemm;

namespace Ponder.Backends.Cpu.Attention;

/// <summary>
/// Causal grouped-query attention over the paged KV cache, one pass over the keys (online softmax, block by block):
/// <code>
///   for each (sequence, kvHead, chunk of ≤ RowsPerItem query rows)       work item, claimed dynamically by the workers
///     for each query row i (keys 0 .. p+i) and each query head h of the kvHead's group
///       for each block b of the sequence's table (blockSize keys, K and V rows contiguous, row stride kvDim)
///         s[j] = q_h · K[j] * scale                     (Vector256 dot per key)
///         m' = max(m, max s); c = exp(m - m'); l = l*c + Σ exp(s - m'); acc = acc*c + Σ exp(s[j] - m') V[j]
///       out_h = acc / l
/// </code>
/// The query heads of one KV head run back to back on the same block, so its K/V rows (blockSize x headDim, a few KiB)
/// come from DRAM or L3 once per group and from L1 for the other heads.
/// Batch invariance: a query row's arithmetic depends only on its own position and its sequence's keys (the block
/// boundaries are absolute positions), never on the chunking, the other sequences or which thread runs it, so a token's
/// output is bitwise the same alone, in a prefill chunk, or batched with others.
/// </summary>
internal sealed unsafe class PagedAttention : IParallelPart
{
    /// <summary>Query rows per work item: enough items to balance a long prefill across cores, few enough to keep each one worth a hand-off.</summary>
    const int RowsPerItem = 16;
    /// <summary>
    /// Below this many FLOPs (4 * heads * headDim * keys) the whole op runs on the calling thread. A decode token of
    /// SmolLM2 shape has 3 items (KV heads) of ~1.5 us each at 50 keys: two threads save at best one item's time, and
    /// lose far more whenever the worker wakes late (tens of us on a shared VM). 2^19 is ~220 keys of that shape.
    /// Settable so tests can force the split (its result is bitwise the same).
    /// </summary>
    internal static long ParallelFlops { get; set; } = 1L << 19;

    float* _q, _out, _kv;
    int _qCols, _nHeads, _nKvHeads, _group, _layer;
    KvLayout _layout = null!;
    BatchLayout _batch = null!;
    float _scale;
    int[] _itemEnd = new int[8]; // cumulative work items per sequence
    int _items, _next;

    /// <summary>Runs attention for every row of <paramref name="batch"/>. Callers validate shapes.</summary>
    public void Run(CpuTensor q, CpuKvStorage kv, int layer, int nHeads, BatchLayout batch, CpuTensor output, int threads)
    {
        var layout = kv.Layout;
        _q = q.Pointer; _out = output.Pointer; _kv = kv.Pointer; _qCols = q.Cols;
        _nHeads = nHeads; _nKvHeads = layout.NKvHeads; _group = nHeads / layout.NKvHeads; _layer = layer;
        _layout = layout; _batch = batch; _scale = 1f / MathF.Sqrt(layout.HeadDim);

        int sequences = batch.SequenceCount;
        if (_itemEnd.Length < sequences) _itemEnd = new int[Math.Max(sequences, _itemEnd.Length * 2)];
        var counts = batch.QueryCount;
        int items = 0;
        for (int s = 0; s < sequences; s++)
        {
            items += (counts[s] + RowsPerItem - 1) / RowsPerItem * _nKvHeads;
            _itemEnd[s] = items;
        }
        _items = items;
        _next = 0;
        long flops = 4L * nHeads * layout.HeadDim * batch.CausalKeys;
        var workers = GemmWorkers.Shared;
        int parts = flops < ParallelFlops ? 1 : Math.Min(Math.Min(threads, workers.MaxParts), items);
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

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Execute(int part, int parts)
    {
        int headDim = _layout.HeadDim;
        float* acc = stackalloc float[headDim];
        float* scores = stackalloc float[_layout.BlockSize];
        int item;
        while ((item = Interlocked.Increment(ref _next) - 1) < _items)
        {
            // Sequence by binary search over the cumulative item counts.
            int lo = 0, hi = _batch.SequenceCount - 1;
            while (lo < hi)
            {
                int mid = (lo + hi) >> 1;
                if (_itemEnd[mid] > item) hi = mid; else lo = mid + 1;
            }
            int seq = lo, local = item - (seq == 0 ? 0 : _itemEnd[seq - 1]);
            int chunks = (_itemEnd[seq] - (seq == 0 ? 0 : _itemEnd[seq - 1])) / _nKvHeads;
            // Later chunks of a prefill attend to more keys: hand them out first so the last items are the short ones.
            int chunk = chunks - 1 - local / _nKvHeads, kvHead = local % _nKvHeads;
            Item(seq, kvHead, chunk, acc, scores);
        }
    }

    void Item(int seq, int kvHead, int chunk, float* acc, float* scores)
    {
        var batch = _batch;
        int p = batch.ContextLength[seq], row0 = batch.QueryStart[seq];
        int first = chunk * RowsPerItem, last = Math.Min(batch.QueryCount[seq], first + RowsPerItem);
        var table = batch.BlockTable(seq);
        int headDim = _layout.HeadDim;
        for (int i = first; i < last; i++)
        {
            float* qRow = _q + (long)(row0 + i) * _qCols, oRow = _out + (long)(row0 + i) * _qCols;
            for (int g = 0; g < _group; g++)
            {
                int h = kvHead * _group + g;
                AttendRow(qRow + h * headDim, oRow + h * headDim, table, p + i + 1, kvHead, acc, scores);
            }
        }
    }

    /// <summary>One query head of one row against keys 0 .. keys-1 of its sequence.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void AttendRow(float* q, float* o, ReadOnlySpan<int> table, int keys, int kvHead, float* acc, float* scores)
    {
        var layout = _layout;
        int headDim = layout.HeadDim, kvDim = layout.KvDim, bs = layout.BlockSize;
        float scale = _scale;
        new Span<float>(acc, headDim).Clear();
        float max = float.NegativeInfinity, sum = 0f;
        for (int b = 0, key0 = 0; key0 < keys; b++, key0 += bs)
        {
            int n = Math.Min(bs, keys - key0);
            float* k = _kv + layout.PlaneOffset(table[b], _layer, 0) + kvHead * headDim;
            float* v = k + layout.FloatsPerPlane;
            float blockMax = float.NegativeInfinity;
            for (int j = 0; j < n; j++)
            {
                float s = Dot(q, k + (long)j * kvDim, headDim) * scale;
                scores[j] = s;
                if (s > blockMax) blockMax = s;
            }
            var sc = new Span<float>(scores, n);
            if (blockMax > max)
            {
                // Rescale what the earlier blocks accumulated to the new maximum (exp(-inf) = 0 on the first block).
                float c = MathF.Exp(max - blockMax);
                sum *= c;
                Scale(acc, c, headDim);
                max = blockMax;
            }
            TensorPrimitives.Subtract(sc, max, sc);
            TensorPrimitives.Exp(sc, sc);
            sum += TensorPrimitives.Sum(sc);
            for (int j = 0; j < n; j++) Axpy(scores[j], v + (long)j * kvDim, acc, headDim);
        }
        Scale(acc, 1f / sum, headDim);
        new ReadOnlySpan<float>(acc, headDim).CopyTo(new Span<float>(o, headDim));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Dot(float* a, float* b, int n)
    {
        int d = 0;
        float s = 0f;
        if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            for (; d + 16 <= n; d += 16)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + d), Vector256.Load(b + d), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + d + 8), Vector256.Load(b + d + 8), acc1);
            }
            if (d + 8 <= n)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + d), Vector256.Load(b + d), acc0);
                d += 8;
            }
            s = Vector256.Sum(acc0 + acc1);
        }
        for (; d < n; d++) s = MathF.FusedMultiplyAdd(a[d], b[d], s);
        return s;
    }

    /// <summary>acc += alpha * x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Axpy(float alpha, float* x, float* acc, int n)
    {
        int d = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var a = Vector256.Create(alpha);
            for (; d + 8 <= n; d += 8)
                Vector256.Store(Vector256.FusedMultiplyAdd(a, Vector256.Load(x + d), Vector256.Load(acc + d)), acc + d);
        }
        for (; d < n; d++) acc[d] = MathF.FusedMultiplyAdd(alpha, x[d], acc[d]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Scale(float* x, float c, int n)
    {
        int d = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var cv = Vector256.Create(c);
            for (; d + 8 <= n; d += 8) Vector256.Store(Vector256.Load(x + d) * cv, x + d);
        }
        for (; d < n; d++) x[d] *= c;
    }
}
