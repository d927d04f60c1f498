using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using Ponder.Backends.Cpu;
using Ponder.Tasks;

namespace Ponder.Training;

/// <summary>
/// The layers of a Llama-family decoder, each as a forward and a backward function over flat row-major float32
/// buffers (n = batch * seqLen rows). Backward functions ACCUMULATE into their input gradients (+=), as llm.c does,
/// so a gradient that fans in from two branches (the residual stream) needs no extra add; callers zero them first.
/// Every matmul goes through <see cref="Sgemm.Multiply"/>.
/// </summary>
public static class Layers
{
    // ---------------------------------------------------------------- embedding

    /// <summary>x[t, :] = table[tokens[t], :]. x (n, dModel), table (vocab, dModel).</summary>
    public static void EmbeddingForward(Span<float> x, ReadOnlySpan<int> tokens, ReadOnlySpan<float> table, int dModel)
    {
        for (int t = 0; t < tokens.Length; t++)
            table.Slice(tokens[t] * dModel, dModel).CopyTo(x.Slice(t * dModel, dModel));
    }

    /// <summary>dTable[tokens[t], :] += dx[t, :] (a scatter-add: repeated tokens sum).</summary>
    public static void EmbeddingBackward(Span<float> dTable, ReadOnlySpan<float> dx, ReadOnlySpan<int> tokens, int dModel)
    {
        for (int t = 0; t < tokens.Length; t++)
        {
            var row = dTable.Slice(tokens[t] * dModel, dModel);
            TensorPrimitives.Add(row, dx.Slice(t * dModel, dModel), row);
        }
    }

    // ---------------------------------------------------------------- RMSNorm

    /// <summary>y = x * rstd * w with rstd = 1 / sqrt(mean(x^2) + eps), saved per row for the backward. x, y (n, d); rstd (n).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RmsNormForward(Span<float> y, Span<float> rstd, ReadOnlySpan<float> x, ReadOnlySpan<float> w, int n, int d, float eps)
    {
        for (int t = 0; t < n; t++)
        {
            var xr = x.Slice(t * d, d);
            float ms = TensorPrimitives.SumOfSquares(xr) / d;
            float r = 1f / MathF.Sqrt(ms + eps);
            rstd[t] = r;
            var yr = y.Slice(t * d, d);
            TensorPrimitives.Multiply(xr, r, yr);
            TensorPrimitives.Multiply(yr, w, yr);
        }
    }

    /// <summary>
    /// With xhat = x * rstd: dw += sum_t dy * xhat;  dx += rstd * (dy*w - xhat * mean(dy*w*xhat)).
    /// (The mean term is d rstd / dx: rstd depends on every element of the row.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RmsNormBackward(Span<float> dx, Span<float> dw, ReadOnlySpan<float> dy, ReadOnlySpan<float> x,
        ReadOnlySpan<float> w, ReadOnlySpan<float> rstd, int n, int d)
    {
        Span<float> buf = d <= 4096 ? stackalloc float[2 * d] : new float[2 * d];
        Span<float> xhat = buf[..d], g = buf[d..];
        for (int t = 0; t < n; t++)
        {
            float r = rstd[t];
            TensorPrimitives.Multiply(x.Slice(t * d, d), r, xhat);
            var dyr = dy.Slice(t * d, d);
            TensorPrimitives.MultiplyAdd(dyr, xhat, dw, dw);
            TensorPrimitives.Multiply(dyr, w, g);
            float mean = TensorPrimitives.Dot(g, xhat) / d;
            var dxr = dx.Slice(t * d, d);
            for (int i = 0; i < d; i++) dxr[i] += r * (g[i] - xhat[i] * mean);
        }
    }

    // ---------------------------------------------------------------- linear

    /// <summary>y = x W^T (+ bias). x (n, dIn), W (dOut, dIn), y (n, dOut). FLOPs: 2 * n * dIn * dOut.</summary>
    public static void LinearForward(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> bias, int n, int dIn, int dOut)
    {
        Sgemm.Multiply(false, true, n, dOut, dIn, 1f, x, dIn, w, dIn, 0f, y, dOut);
        if (!bias.IsEmpty)
            for (int t = 0; t < n; t++) TensorPrimitives.Add(y.Slice(t * dOut, dOut), bias, y.Slice(t * dOut, dOut));
    }

    /// <summary>
    /// dx += dy W  (n, dIn);  dW += dy^T x  (dOut, dIn);  dbias += sum_t dy[t]. FLOPs: 4 * n * dIn * dOut.
    /// </summary>
    public static void LinearBackward(Span<float> dx, Span<float> dw, Span<float> dBias, ReadOnlySpan<float> dy, ReadOnlySpan<float> x,
        ReadOnlySpan<float> w, int n, int dIn, int dOut)
    {
        if (!dx.IsEmpty) Sgemm.Multiply(false, false, n, dIn, dOut, 1f, dy, dOut, w, dIn, 1f, dx, dIn);
        Sgemm.Multiply(true, false, dOut, dIn, n, 1f, dy, dOut, x, dIn, 1f, dw, dIn);
        if (!dBias.IsEmpty)
            for (int t = 0; t < n; t++) TensorPrimitives.Add(dBias, dy.Slice(t * dOut, dOut), dBias);
    }

    // ---------------------------------------------------------------- RoPE

    /// <summary>cos/sin tables (maxPositions, headDim/2) for angle = pos * theta^(-2i/headDim), computed in float64.</summary>
    public static (float[] Cos, float[] Sin) RopeTables(int maxPositions, int headDim, double theta)
    {
        int half = headDim / 2;
        var cos = new float[maxPositions * half];
        var sin = new float[maxPositions * half];
        for (int p = 0; p < maxPositions; p++)
            for (int i = 0; i < half; i++)
            {
                double angle = p * Math.Pow(theta, -2.0 * i / headDim);
                cos[p * half + i] = (float)Math.Cos(angle);
                sin[p * half + i] = (float)Math.Sin(angle);
            }
        return (cos, sin);
    }

    /// <summary>
    /// Rotate-half RoPE (Hugging Face convention), in place. Within each head, pairs (i, i + headDim/2) rotate by the
    /// position's angle: y1 = x1 cos - x2 sin; y2 = x2 cos + x1 sin. x (n, nHeads*headDim); positions (n).
    /// </summary>
    public static void RopeForward(Span<float> x, ReadOnlySpan<int> positions, int nHeads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
        => Rotate(x, positions, nHeads, headDim, cos, sin, 1f);

    /// <summary>The rotation is orthogonal, so its backward is the inverse rotation of the gradient (angle negated), in place.</summary>
    public static void RopeBackward(Span<float> dx, ReadOnlySpan<int> positions, int nHeads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
        => Rotate(dx, positions, nHeads, headDim, cos, sin, -1f);

    static void Rotate(Span<float> x, ReadOnlySpan<int> positions, int nHeads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, float sign)
    {
        int half = headDim / 2, width = nHeads * headDim;
        for (int t = 0; t < positions.Length; t++)
        {
            var c = cos.Slice(positions[t] * half, half);
            var s = sin.Slice(positions[t] * half, half);
            for (int h = 0; h < nHeads; h++)
            {
                var v = x.Slice(t * width + h * headDim, headDim);
                for (int i = 0; i < half; i++)
                {
                    float x1 = v[i], x2 = v[i + half], si = sign * s[i];
                    v[i] = x1 * c[i] - x2 * si;
                    v[i + half] = x2 * c[i] + x1 * si;
                }
            }
        }
    }

    // ---------------------------------------------------------------- attention

    /// <summary>
    /// Causal grouped-query attention with document masking: position t of a row attends to s in
    /// [segmentStart[t], t] (packed documents never see each other). q (B,T,nHeads*headDim); k, v (B,T,nKvHeads*headDim);
    /// att (B,nHeads,T,T) saves the softmax probabilities; y (B,T,nHeads*headDim).
    /// </summary>
    public static void AttentionForward(float[] y, float[] att, float[] q, float[] k, float[] v, int[] segmentStart,
        int batch, int seqLen, int nHeads, int nKvHeads, int headDim)
    {
        int group = nHeads / nKvHeads, qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
        float scale = 1f / MathF.Sqrt(headDim);
        Parallel.For(0, batch * nHeads, bh =>
        {
            int b = bh / nHeads, h = bh % nHeads, kvh = h / group;
            for (int t = 0; t < seqLen; t++)
            {
                int s0 = segmentStart[b * seqLen + t];
                var qRow = new ReadOnlySpan<float>(q, (b * seqLen + t) * qDim + h * headDim, headDim);
                var p = new Span<float>(att, ((b * nHeads + h) * seqLen + t) * seqLen, seqLen);
                p.Clear();
                float max = float.NegativeInfinity;
                for (int s = s0; s <= t; s++)
                {
                    p[s] = scale * TensorPrimitives.Dot(qRow, new ReadOnlySpan<float>(k, (b * seqLen + s) * kvDim + kvh * headDim, headDim));
                    max = MathF.Max(max, p[s]);
                }
                var window = p[s0..(t + 1)];
                TensorPrimitives.Subtract(window, max, window);
                TensorPrimitives.Exp(window, window);
                TensorPrimitives.Divide(window, TensorPrimitives.Sum(window), window);
                var yRow = new Span<float>(y, (b * seqLen + t) * qDim + h * headDim, headDim);
                yRow.Clear();
                for (int s = s0; s <= t; s++)
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(v, (b * seqLen + s) * kvDim + kvh * headDim, headDim), p[s], yRow, yRow);
            }
        });
    }

    /// <summary>
    /// With y_t = sum_s p_ts v_s and p_t = softmax(scale * q_t . k_s):
    /// dv_s += p_ts dy_t;  dp_ts = dy_t . v_s;  dscore_ts = p_ts (dp_ts - sum_s' p_ts' dp_ts');
    /// dq_t += scale * sum_s dscore_ts k_s;  dk_s += scale * sum_t dscore_ts q_t.
    /// Heads sharing a KV head run in the same task so dk/dv need no locks.
    /// </summary>
    public static void AttentionBackward(float[] dq, float[] dk, float[] dv, float[] dy, float[] att, float[] q, float[] k, float[] v,
        int[] segmentStart, int batch, int seqLen, int nHeads, int nKvHeads, int headDim)
    {
        int group = nHeads / nKvHeads, qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
        float scale = 1f / MathF.Sqrt(headDim);
        Parallel.For(0, batch * nKvHeads, bk =>
        {
            int b = bk / nKvHeads, kvh = bk % nKvHeads;
            var dp = new float[seqLen];
            for (int h = kvh * group; h < (kvh + 1) * group; h++)
                for (int t = 0; t < seqLen; t++)
                {
                    int s0 = segmentStart[b * seqLen + t];
                    int qOff = (b * seqLen + t) * qDim + h * headDim;
                    var dyRow = new ReadOnlySpan<float>(dy, qOff, headDim);
                    var p = new ReadOnlySpan<float>(att, ((b * nHeads + h) * seqLen + t) * seqLen, seqLen);
                    float dot = 0;
                    for (int s = s0; s <= t; s++)
                    {
                        int kvOff = (b * seqLen + s) * kvDim + kvh * headDim;
                        dp[s] = TensorPrimitives.Dot(dyRow, new ReadOnlySpan<float>(v, kvOff, headDim));
                        var dvRow = new Span<float>(dv, kvOff, headDim);
                        TensorPrimitives.MultiplyAdd(dyRow, p[s], dvRow, dvRow);
                        dot += p[s] * dp[s];
                    }
                    var qRow = new ReadOnlySpan<float>(q, qOff, headDim);
                    var dqRow = new Span<float>(dq, qOff, headDim);
                    for (int s = s0; s <= t; s++)
                    {
                        float ds = scale * p[s] * (dp[s] - dot);
                        int kvOff = (b * seqLen + s) * kvDim + kvh * headDim;
                        TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(k, kvOff, headDim), ds, dqRow, dqRow);
                        var dkRow = new Span<float>(dk, kvOff, headDim);
                        TensorPrimitives.MultiplyAdd(qRow, ds, dkRow, dkRow);
                    }
                }
        });
    }

    // ---------------------------------------------------------------- SwiGLU

    /// <summary>h = silu(g) * u, silu(g) = g * sigmoid(g). g, u, h (n, dFf).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SwiGluForward(Span<float> h, ReadOnlySpan<float> g, ReadOnlySpan<float> u)
    {
        for (int i = 0; i < h.Length; i++)
        {
            float sig = 1f / (1f + MathF.Exp(-g[i]));
            h[i] = g[i] * sig * u[i];
        }
    }

    /// <summary>du += dh * silu(g);  dg += dh * u * sigmoid(g) * (1 + g * (1 - sigmoid(g))).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SwiGluBackward(Span<float> dg, Span<float> du, ReadOnlySpan<float> dh, ReadOnlySpan<float> g, ReadOnlySpan<float> u)
    {
        for (int i = 0; i < dh.Length; i++)
        {
            float sig = 1f / (1f + MathF.Exp(-g[i]));
            du[i] += dh[i] * g[i] * sig;
            dg[i] += dh[i] * u[i] * sig * (1f + g[i] * (1f - sig));
        }
    }

    // ---------------------------------------------------------------- dropout

    /// <summary>
    /// Inverted dropout in place: each element is zeroed with probability p, survivors scaled by 1/(1-p); the
    /// factor is saved in keep (0 or 1/(1-p)) for the backward. p = 0 leaves x as is.
    /// </summary>
    public static void DropoutForward(Span<float> x, Span<float> keep, float p, DeterministicRandom rng)
    {
        if (p <= 0) { keep.Fill(1f); return; }
        float scale = 1f / (1f - p);
        for (int i = 0; i < x.Length; i++)
        {
            keep[i] = rng.NextSingle() < p ? 0f : scale;
            x[i] *= keep[i];
        }
    }

    /// <summary>dx = dy * keep, in place.</summary>
    public static void DropoutBackward(Span<float> dx, ReadOnlySpan<float> keep) => TensorPrimitives.Multiply(dx, keep, dx);

    // ---------------------------------------------------------------- losses

    /// <summary>
    /// Masked next-token cross-entropy, forward and backward fused. Returns scale * sum_t mask_t * -log softmax(logits_t)[target_t]
    /// (in float64) and writes dlogits = scale * mask_t * (softmax(logits_t) - onehot(target_t)). Softmax subtracts the row max.
    /// logits, dlogits (n, vocab).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double CrossEntropy(Span<float> dlogits, ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, ReadOnlySpan<float> mask, int vocab, float scale)
    {
        double loss = 0;
        for (int t = 0; t < targets.Length; t++)
        {
            var dl = dlogits.Slice(t * vocab, vocab);
            if (mask[t] == 0) { dl.Clear(); continue; }
            var l = logits.Slice(t * vocab, vocab);
            float max = TensorPrimitives.Max(l);
            TensorPrimitives.Subtract(l, max, dl);
            TensorPrimitives.Exp(dl, dl);
            float sum = TensorPrimitives.Sum(dl);
            loss += mask[t] * (Math.Log(sum) - (l[targets[t]] - max));
            float w = scale * mask[t];
            TensorPrimitives.Multiply(dl, w / sum, dl);
            dl[targets[t]] -= w;
        }
        return loss * scale;
    }

    /// <summary>
    /// Masked binary cross-entropy with soft labels y on logits z, fused: returns scale * sum_t mask_t * (softplus(z) - y z)
    /// (which is -y log sigmoid(z) - (1-y) log(1 - sigmoid(z)), computed stably) and writes dz = scale * mask_t * (sigmoid(z) - y).
    /// </summary>
    public static double BinaryCrossEntropy(Span<float> dz, ReadOnlySpan<float> z, ReadOnlySpan<float> labels, ReadOnlySpan<float> mask, float scale)
    {
        double loss = 0;
        for (int t = 0; t < z.Length; t++)
        {
            if (mask[t] == 0) { dz[t] = 0; continue; }
            double zt = z[t];
            double softplus = Math.Max(zt, 0) + Math.Log(1 + Math.Exp(-Math.Abs(zt)));
            loss += mask[t] * (softplus - labels[t] * zt);
            dz[t] = (float)(scale * mask[t] * (1 / (1 + Math.Exp(-zt)) - labels[t]));
        }
        return loss * scale;
    }
}
