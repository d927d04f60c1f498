using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Algorithms.ScanReduceOperations;
using Half = ILGPU.Half;

namespace Ponder.Kernels.Ilgpu;

/// <summary>
/// The ILGPU kernels behind <see cref="IlgpuBackend"/>: static methods, loaded once by the backend's constructor.
/// Versions: v1 (this file) tiled GEMM, group-per-row GEMV and reductions, three-pass paged attention.
/// <para>
/// Implicitly grouped kernels take an index as first parameter; explicitly grouped ones (GEMM, reductions,
/// attention) read <see cref="Grid"/> and <see cref="Group"/> and are launched with a group size chosen at runtime
/// from the accelerator's limits (CUDA: 256 threads; ILGPU's CPU accelerator: 16), so shared memory is sized for
/// the largest group and indexed with the actual one.
/// </para>
/// </summary>
internal static class Kernels
{
    /// <summary>Largest GEMM tile edge (outputs per tile side, and k values staged per step); shared tiles are sized for it.</summary>
    public const int MaxTile = 16;
    /// <summary>Largest group of the row-reduction kernels (threads).</summary>
    public const int MaxGroup = 256;

    /// <summary>x[i, :] = table[tokens[i], :]. Index: (row, column).</summary>
    public static void Embed(Index2D i, ArrayView<float> table, ArrayView<int> tokens, ArrayView<float> x, int d) =>
        x[(long)i.X * d + i.Y] = table[(long)tokens[i.X] * d + i.Y];

    /// <summary>y[j, :] = x[rows[j], :]. Index: (output row, column).</summary>
    public static void GatherRows(Index2D i, ArrayView<float> x, ArrayView<int> rows, ArrayView<float> y, int cols) =>
        y[(long)i.X * cols + i.Y] = x[(long)rows[i.X] * cols + i.Y];

    /// <summary>x[i] += y[i].</summary>
    public static void Add(Index1D i, ArrayView<float> x, ArrayView<float> y) => x[i] += y[i];

    /// <summary>y[i, j] += bias[j]. Index: (row, column).</summary>
    public static void AddBias(Index2D i, ArrayView<float> y, ArrayView<float> bias, int cols) => y[(long)i.X * cols + i.Y] += bias[i.Y];

    /// <summary>gate[i] = silu(gate[i]) * up[i] = gate / (1 + exp(-gate)) * up.</summary>
    public static void SwiGlu(Index1D i, ArrayView<float> gate, ArrayView<float> up)
    {
        float g = gate[i];
        gate[i] = g / (1f + XMath.Exp(-g)) * up[i];
    }

    /// <summary>x[i] = max(x[i], 0) (ReLU).</summary>
    public static void Relu(Index1D i, ArrayView<float> x) => x[i] = XMath.Max(x[i], 0f);

    /// <summary>
    /// dst[i] = src[i] rounded to f16, nearest even: converts f32 weights to f16 on the device. Rounds with integer ops
    /// (<see cref="HalfBits"/>) because ILGPU's (Half) cast rounds differently per accelerator (the CPU one truncates).
    /// </summary>
    public static void ToHalf(Index1D i, ArrayView<float> src, ArrayView<Half> dst) => dst[i] = Interop.IntAsFloat(HalfBits(src[i]));

    /// <summary>IEEE binary16 bits of <paramref name="value"/>, round to nearest even (as System.Half and cvt.rn.f16.f32).</summary>
    public static ushort HalfBits(float value)
    {
        uint f = Interop.FloatAsInt(value);
        uint sign = (f >> 16) & 0x8000u;
        uint abs = f & 0x7FFFFFFFu;
        if (abs >= 0x7F800000u) return (ushort)(sign | (abs > 0x7F800000u ? 0x7E00u : 0x7C00u)); // NaN stays NaN, inf stays inf
        if (abs >= 0x477FF000u) return (ushort)(sign | 0x7C00u);                                  // ≥ 65520 rounds past the largest half
        if (abs >= 0x38800000u)                                                                    // normal half (≥ 2^-14)
        {
            uint bits = (abs - 0x38000000u) >> 13;    // rebias the exponent by 127 - 15, keep 10 mantissa bits
            uint rest = abs & 0x1FFFu;
            if (rest > 0x1000u || (rest == 0x1000u && (bits & 1u) != 0)) bits++; // a carry into the exponent is correct
            return (ushort)(sign | bits);
        }
        if (abs < 0x33000000u) return (ushort)sign;  // ≤ 2^-25: rounds to zero (2^-25 itself ties to even 0)
        // Subnormal half: units of 2^-24. The float is mant24 · 2^(exp - 150), so the unit count is mant24 >> (126 - exp).
        uint mant = (abs & 0x7FFFFFu) | 0x800000u;
        int shift = 126 - (int)(abs >> 23);
        uint units = mant >> shift;
        uint rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (units & 1u) != 0)) units++;
        return (ushort)(sign | units);
    }

    /// <summary>
    /// Rotate-half RoPE in place on x [n, width = heads * headDim]; table [positions, headDim] holds cos | sin.
    /// Index: (row, head * headDim/2 + pair).
    /// </summary>
    public static void Rope(Index2D i, ArrayView<float> x, ArrayView<float> table, ArrayView<int> positions, int width, int headDim)
    {
        int half = headDim / 2;
        int h = i.Y / half, j = i.Y % half;
        long head = (long)i.X * width + (long)h * headDim;
        long t = (long)positions[i.X] * headDim;
        float c = table[t + j], s = table[t + half + j];
        float a = x[head + j], b = x[head + j + half];
        x[head + j] = a * c - b * s;
        x[head + j + half] = b * c + a * s;
    }

    /// <summary>
    /// Writes row i of k and v into cache slot slots[i] of <paramref name="layer"/> (layout in <see cref="Backends.KvLayout"/>).
    /// Index: (row, kv column).
    /// </summary>
    public static void StoreKv(Index2D i, ArrayView<float> k, ArrayView<float> v, ArrayView<float> kv, ArrayView<int> slots,
        int layer, int nLayers, int blockSize, int kvDim)
    {
        int slot = slots[i.X];
        int block = slot / blockSize, inBlock = slot % blockSize;
        long plane = (long)blockSize * kvDim;
        long dst = ((long)block * nLayers + layer) * 2 * plane + (long)inBlock * kvDim + i.Y;
        long src = (long)i.X * kvDim + i.Y;
        kv[dst] = k[src];
        kv[dst + plane] = v[src];
    }

    /// <summary>RMSNorm of one row per group: y = x / sqrt(mean(x²) + eps) * w.</summary>
    public static void RmsNorm(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, int d, float eps)
    {
        long row = (long)Grid.IdxX * d;
        float ss = 0f;
        for (int j = Group.IdxX; j < d; j += Group.DimX)
        {
            float v = x[row + j];
            ss += v * v;
        }
        ss = GroupExtensions.AllReduce<float, AddFloat>(ss);
        float inv = 1f / XMath.Sqrt(ss / d + eps);
        for (int j = Group.IdxX; j < d; j += Group.DimX) y[row + j] = x[row + j] * inv * w[j];
    }

    /// <summary>
    /// y [n, rows] = x [n, cols] · Wᵀ (W [rows, cols]), shared-memory tiled. Group (t, t): thread (tx, ty) owns output
    /// (token tileY*t + ty, weight row tileX*t + tx). The k loop runs over cols in steps of t, whatever n and rows are
    /// (ILGPU's sample bounds it by the wrong dimension); out-of-range loads stage zeros.
    /// </summary>
    public static void Gemm<TW, TConv>(ArrayView<float> x, ArrayView<TW> w, ArrayView<float> y, int n, int rows, int cols)
        where TW : unmanaged where TConv : struct, IWeightElement<TW>
    {
        // Padded stride (t + 1) so a column walk of ws hits distinct banks.
        var xs = SharedMemory.Allocate<float>(MaxTile * (MaxTile + 1));
        var ws = SharedMemory.Allocate<float>(MaxTile * (MaxTile + 1));
        int t = Group.DimX, stride = t + 1;
        int tx = Group.IdxX, ty = Group.IdxY;
        int token = Grid.IdxY * t + ty;
        int outCol = Grid.IdxX * t + tx;
        int loadRow = Grid.IdxX * t + ty; // the weight row this thread stages
        float acc = 0f;
        for (int k0 = 0; k0 < cols; k0 += t)
        {
            int k = k0 + tx;
            xs[ty * stride + tx] = token < n && k < cols ? x[(long)token * cols + k] : 0f;
            ws[ty * stride + tx] = loadRow < rows && k < cols ? default(TConv).ToFloat(w[(long)loadRow * cols + k]) : 0f;
            Group.Barrier();
            for (int kk = 0; kk < t; kk++) acc += xs[ty * stride + kk] * ws[tx * stride + kk];
            Group.Barrier();
        }
        if (token < n && outCol < rows) y[(long)token * rows + outCol] = acc;
    }

    /// <summary>y [rows] = W · x for one token: one group per output row, threads stride over cols, then a group sum.</summary>
    public static void Gemv<TW, TConv>(ArrayView<float> x, ArrayView<TW> w, ArrayView<float> y, int cols)
        where TW : unmanaged where TConv : struct, IWeightElement<TW>
    {
        long r = Grid.IdxX;
        float acc = 0f;
        for (int j = Group.IdxX; j < cols; j += Group.DimX) acc += x[j] * default(TConv).ToFloat(w[r * cols + j]);
        acc = GroupExtensions.AllReduce<float, AddFloat>(acc);
        if (Group.IdxX == 0) y[r] = acc;
    }

    /// <summary>
    /// Causal paged attention, one group per (batch row, query head). Three passes over the row's keys 0..position,
    /// read through its sequence's block table: scores (and their max), exp and sum, then the weighted sum of V per
    /// head dimension. <paramref name="scores"/> is scratch [n * nHeads, ScoreStride]; <paramref name="layout"/> is
    /// the batch's packed integers (<see cref="AttentionParams"/> gives the section offsets).
    /// </summary>
    public static void Attention(ArrayView<float> q, ArrayView<float> kv, ArrayView<float> output, ArrayView<float> scores,
        ArrayView<int> layout, AttentionParams p)
    {
        int item = Grid.IdxX;
        int i = item / p.NHeads, h = item % p.NHeads, kvHead = h / p.GroupSize;
        int keys = layout[p.PositionsAt + i] + 1;
        int table = p.BlockIdsAt + layout[p.TableStartAt + layout[p.SequenceOfAt + i]];
        long plane = (long)p.BlockSize * p.KvDim;
        long qBase = (long)i * p.NHeads * p.HeadDim + (long)h * p.HeadDim;
        long headAt = (long)kvHead * p.HeadDim;
        long sBase = (long)item * p.ScoreStride;

        float max = float.NegativeInfinity;
        for (int j = Group.IdxX; j < keys; j += Group.DimX)
        {
            long kBase = KeyOffset(layout[table + j / p.BlockSize], j % p.BlockSize, p) + headAt;
            float dot = 0f;
            for (int e = 0; e < p.HeadDim; e++) dot += q[qBase + e] * kv[kBase + e];
            dot *= p.Scale;
            scores[sBase + j] = dot;
            max = XMath.Max(max, dot);
        }
        max = GroupExtensions.AllReduce<float, MaxFloat>(max);

        float sum = 0f;
        for (int j = Group.IdxX; j < keys; j += Group.DimX)
        {
            float e = XMath.Exp(scores[sBase + j] - max);
            scores[sBase + j] = e;
            sum += e;
        }
        sum = GroupExtensions.AllReduce<float, AddFloat>(sum);
        Group.Barrier(); // every thread's probabilities are written before any thread reads them all
        float inv = 1f / sum;

        for (int e = Group.IdxX; e < p.HeadDim; e += Group.DimX)
        {
            float acc = 0f;
            for (int j = 0; j < keys; j++)
            {
                long vBase = KeyOffset(layout[table + j / p.BlockSize], j % p.BlockSize, p) + plane + headAt;
                acc += scores[sBase + j] * kv[vBase + e];
            }
            output[qBase + e] = acc * inv;
        }
    }

    /// <summary>Float offset of the K row of (block, slot) in the attention's layer (V is one plane further).</summary>
    static long KeyOffset(int block, int inBlock, in AttentionParams p) =>
        ((long)block * p.NLayers + p.Layer) * 2 * p.BlockSize * (long)p.KvDim + (long)inBlock * p.KvDim;

    /// <summary>Softmax (log = 0) or log-softmax (log = 1) of each row in place, max-subtracted so large logits cannot overflow.</summary>
    public static void SoftmaxRows(ArrayView<float> x, int cols, int log)
    {
        long row = (long)Grid.IdxX * cols;
        float max = float.NegativeInfinity;
        for (int j = Group.IdxX; j < cols; j += Group.DimX) max = XMath.Max(max, x[row + j]);
        max = GroupExtensions.AllReduce<float, MaxFloat>(max);
        float sum = 0f;
        for (int j = Group.IdxX; j < cols; j += Group.DimX) sum += XMath.Exp(x[row + j] - max);
        sum = GroupExtensions.AllReduce<float, AddFloat>(sum);
        if (log != 0)
        {
            float logSum = XMath.Log(sum);
            for (int j = Group.IdxX; j < cols; j += Group.DimX) x[row + j] = x[row + j] - max - logSum;
        }
        else
        {
            float inv = 1f / sum;
            for (int j = Group.IdxX; j < cols; j += Group.DimX) x[row + j] = XMath.Exp(x[row + j] - max) * inv;
        }
    }

    /// <summary>result[row] = the first index of the row's largest value (ties go to the lowest index, as a sequential scan would).</summary>
    public static void ArgmaxRows(ArrayView<float> x, ArrayView<int> result, int cols)
    {
        long row = (long)Grid.IdxX * cols;
        float best = float.NegativeInfinity;
        int bestIndex = int.MaxValue;
        for (int j = Group.IdxX; j < cols; j += Group.DimX)
        {
            float v = x[row + j];
            if (v > best || (bestIndex == int.MaxValue)) { best = v; bestIndex = j; }
        }
        float max = GroupExtensions.AllReduce<float, MaxFloat>(best);
        int candidate = best == max ? bestIndex : int.MaxValue;
        int index = GroupExtensions.AllReduce<int, MinInt32>(candidate);
        // No candidate only when every value is -inf or NaN (the max reduction's identity is not -inf): all tie, so 0.
        if (Group.IdxX == 0) result[Grid.IdxX] = index == int.MaxValue ? 0 : index;
    }
}

/// <summary>How a GEMM kernel turns a stored weight element into f32 (a struct, so the call inlines in the kernel).</summary>
internal interface IWeightElement<T> where T : unmanaged
{
    /// <summary>The weight's value as f32.</summary>
    float ToFloat(T value);
}

/// <summary>f32 weights.</summary>
internal readonly struct F32Element : IWeightElement<float>
{
    /// <inheritdoc/>
    public float ToFloat(float value) => value;
}

/// <summary>f16 weights (ILGPU <see cref="Half"/>), widened on load (cvt.f32.f16 on CUDA).</summary>
internal readonly struct F16Element : IWeightElement<Half>
{
    /// <inheritdoc/>
    public float ToFloat(Half value) => (float)value;
}

/// <summary>Shape and batch-layout offsets of one <see cref="Kernels.Attention"/> launch (a struct: kernels take few parameters).</summary>
internal struct AttentionParams
{
    public int NHeads, HeadDim, GroupSize, NLayers, Layer, BlockSize, KvDim, ScoreStride;
    public float Scale;
    /// <summary>Offsets of the packed layout's sections: positions [n], sequence of each row [n], block-table starts [S + 1], block ids.</summary>
    public int PositionsAt, SequenceOfAt, TableStartAt, BlockIdsAt;
}
