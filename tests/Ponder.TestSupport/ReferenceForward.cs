using Ponder.Models;

namespace Ponder.TestSupport;

/// <summary>
/// The Llama forward pass in Hugging Face convention, written naively in scalar float64 as a reference for the
/// engine and for llama.cpp. Slow on purpose: every formula is spelled out next to its source, and nothing is
/// shared with engine code.
/// </summary>
public static class ReferenceForward
{
    /// <summary>
    /// Runs <paramref name="tokens"/> (positions 0..n-1, one causal sequence) and returns the head's output at
    /// every position: [tokens.Length, config.HeadRows] (logits, or value-head scores).
    /// </summary>
    /// <param name="projectionInput">
    /// When given, what each projection multiplies instead of its input: called with the weight's name and the input
    /// row (a copy), it returns the row to use (e.g. the row as llama.cpp quantizes it for a quantized weight).
    /// </param>
    public static double[,] Run(ModelConfig config, IReadOnlyDictionary<string, HostTensor> tensors, int[] tokens,
        Func<string, double[], double[]>? projectionInput = null)
    {
        int n = tokens.Length, d = config.DModel, nHeads = config.NHeads, nKvHeads = config.NKvHeads, headDim = config.HeadDim;
        double[] W(string name) => tensors[name].Data.Select(v => (double)v).ToArray();
        double[] In(string weight, double[] x) => projectionInput?.Invoke(weight, (double[])x.Clone()) ?? x;

        var x = new double[n][]; // (n, dModel) residual stream
        var emb = tensors[TensorNames.Embedding];
        for (int t = 0; t < n; t++)
        {
            if (tokens[t] < 0 || tokens[t] >= config.Vocab) throw new ArgumentOutOfRangeException(nameof(tokens), $"token {tokens[t]} at {t} is outside the vocabulary");
            x[t] = emb.Data.AsSpan(tokens[t] * d, d).ToArray().Select(v => (double)v).ToArray();
        }
        double[] invFreq = InverseFrequencies(config);

        for (int l = 0; l < config.NLayers; l++)
        {
            double[] wq = W(TensorNames.Q(l)), wk = W(TensorNames.K(l)), wv = W(TensorNames.V(l)), wo = W(TensorNames.O(l));
            double[]? bq = config.QkvBias ? W(TensorNames.QBias(l)) : null;
            double[]? bk = config.QkvBias ? W(TensorNames.KBias(l)) : null;
            double[]? bv = config.QkvBias ? W(TensorNames.VBias(l)) : null;
            double[]? qNorm = config.QkNorm ? W(TensorNames.QNorm(l)) : null;
            double[]? kNorm = config.QkNorm ? W(TensorNames.KNorm(l)) : null;
            var q = new double[n][]; var k = new double[n][]; var v = new double[n][];
            for (int t = 0; t < n; t++)
            {
                double[] h = RmsNorm(x[t], W(TensorNames.AttnNorm(l)), config.RmsNormEps);
                q[t] = Linear(wq, bq, In(TensorNames.Q(l), h), config.QDim);
                k[t] = Linear(wk, bk, In(TensorNames.K(l), h), config.KvDim);
                v[t] = Linear(wv, bv, In(TensorNames.V(l), h), config.KvDim);
                if (qNorm is not null && kNorm is not null)
                {
                    // Qwen3: RMSNorm over each head (q_norm, k_norm of headDim) after the projection, before RoPE.
                    for (int hd = 0; hd < nHeads; hd++) RmsNorm(q[t].AsSpan(hd * headDim, headDim).ToArray(), qNorm, config.RmsNormEps).CopyTo(q[t], hd * headDim);
                    for (int hd = 0; hd < nKvHeads; hd++) RmsNorm(k[t].AsSpan(hd * headDim, headDim).ToArray(), kNorm, config.RmsNormEps).CopyTo(k[t], hd * headDim);
                }
                for (int hd = 0; hd < nHeads; hd++) Rope(q[t], hd * headDim, headDim, t, invFreq);
                for (int hd = 0; hd < nKvHeads; hd++) Rope(k[t], hd * headDim, headDim, t, invFreq);
            }
            int group = nHeads / nKvHeads; // query heads per KV head (GQA): head h reads KV head h / group
            for (int t = 0; t < n; t++)
            {
                var attn = new double[config.QDim];
                for (int hd = 0; hd < nHeads; hd++)
                {
                    int kvOff = hd / group * headDim, qOff = hd * headDim;
                    var scores = new double[t + 1]; // causal: positions 0..t
                    for (int s = 0; s <= t; s++)
                    {
                        double dot = 0;
                        for (int i = 0; i < headDim; i++) dot += q[t][qOff + i] * k[s][kvOff + i];
                        scores[s] = dot / Math.Sqrt(headDim);
                    }
                    double max = scores.Max(), sum = 0;
                    for (int s = 0; s <= t; s++) sum += scores[s] = Math.Exp(scores[s] - max);
                    for (int s = 0; s <= t; s++)
                        for (int i = 0; i < headDim; i++) attn[qOff + i] += scores[s] / sum * v[s][kvOff + i];
                }
                double[] o = Linear(wo, null, In(TensorNames.O(l), attn), d);
                for (int i = 0; i < d; i++) x[t][i] += o[i];
            }
            double[] gate = W(TensorNames.Gate(l)), up = W(TensorNames.Up(l)), down = W(TensorNames.Down(l));
            for (int t = 0; t < n; t++)
            {
                double[] h = RmsNorm(x[t], W(TensorNames.FfnNorm(l)), config.RmsNormEps);
                double[] g = Linear(gate, null, In(TensorNames.Gate(l), h), config.DFf), u = Linear(up, null, In(TensorNames.Up(l), h), config.DFf);
                var act = new double[config.DFf];
                for (int i = 0; i < act.Length; i++) act[i] = g[i] / (1 + Math.Exp(-g[i])) * u[i]; // SwiGLU: silu(gate) * up
                double[] y = Linear(down, null, In(TensorNames.Down(l), act), d);
                for (int i = 0; i < d; i++) x[t][i] += y[i];
            }
        }

        double[] head, headBias;
        string headName = config.Head switch
        {
            HeadKind.Value => TensorNames.ValueHead,
            HeadKind.ProcessReward => TensorNames.PrmOutput,
            _ => config.TiedEmbeddings ? TensorNames.Embedding : TensorNames.LmHead,
        };
        // Qwen2ForProcessRewardModel: score = Sequential(Linear(d, d), ReLU(), Linear(d, numLabels)), both with bias.
        double[]? hidden = null, hiddenBias = null;
        if (config.Head == HeadKind.ProcessReward)
        {
            hidden = W(TensorNames.PrmHidden);
            hiddenBias = W(TensorNames.PrmHiddenBias);
            head = W(TensorNames.PrmOutput);
            headBias = W(TensorNames.PrmOutputBias);
        }
        else if (config.Head == HeadKind.Value)
        {
            head = W(TensorNames.ValueHead);
            headBias = tensors.ContainsKey(TensorNames.ValueHeadBias) ? W(TensorNames.ValueHeadBias) : new double[config.NumLabels];
        }
        else
        {
            head = W(config.TiedEmbeddings ? TensorNames.Embedding : TensorNames.LmHead);
            // A shared value row is one more output: value = value_head · norm(x), after the vocab's logits.
            if (config.SharedValueHead) head = [.. head, .. W(TensorNames.SharedValueHead)];
            headBias = new double[config.HeadRows];
        }
        var result = new double[n, config.HeadRows];
        for (int t = 0; t < n; t++)
        {
            double[] h = RmsNorm(x[t], W(TensorNames.FinalNorm), config.RmsNormEps);
            if (hidden is not null)
            {
                h = Linear(hidden, hiddenBias, In(TensorNames.PrmHidden, h), d);
                for (int i = 0; i < d; i++) h[i] = Math.Max(h[i], 0); // ReLU
            }
            double[] o = Linear(head, headBias, In(headName, h), config.HeadRows);
            for (int r = 0; r < config.HeadRows; r++) result[t, r] = o[r];
        }
        return result;
    }

    /// <summary>
    /// RoPE inverse frequencies theta^(-2i/headDim), i &lt; headDim/2, adjusted for llama3 rope_scaling as
    /// transformers' <c>_compute_llama3_parameters</c> does: wavelengths above original/low_freq_factor are divided
    /// by factor, below original/high_freq_factor kept, and in between interpolated by a smooth factor.
    /// </summary>
    public static double[] InverseFrequencies(ModelConfig config)
    {
        int half = config.HeadDim / 2;
        var inv = new double[half];
        for (int i = 0; i < half; i++)
        {
            inv[i] = Math.Pow(config.RopeTheta, -2.0 * i / config.HeadDim);
            if (config.RopeScaling is not { } s) continue;
            double wavelen = 2 * Math.PI / inv[i];
            double lowWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
            double highWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
            if (wavelen > lowWavelen) inv[i] /= s.Factor;
            else if (wavelen >= highWavelen)
            {
                double smooth = (s.OriginalMaxPositionEmbeddings / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                inv[i] = (1 - smooth) * inv[i] / s.Factor + smooth * inv[i];
            }
        }
        return inv;
    }

    /// <summary>x * rsqrt(mean(x^2) + eps) * w.</summary>
    private static double[] RmsNorm(double[] x, double[] w, double eps)
    {
        double meanSquare = x.Sum(v => v * v) / x.Length;
        double r = 1 / Math.Sqrt(meanSquare + eps);
        return x.Select((v, i) => v * r * w[i]).ToArray();
    }

    /// <summary>y = W x + b with W row-major [rows, x.Length] (PyTorch's nn.Linear layout).</summary>
    private static double[] Linear(double[] w, double[]? b, double[] x, int rows)
    {
        var y = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double acc = b?[r] ?? 0;
            for (int c = 0; c < x.Length; c++) acc += w[(long)r * x.Length + c] * x[c];
            y[r] = acc;
        }
        return y;
    }

    /// <summary>HF rotate-half RoPE on one head: pairs (i, i + headDim/2) rotate by angle pos * invFreq[i].</summary>
    private static void Rope(double[] vec, int offset, int headDim, int pos, double[] invFreq)
    {
        int half = headDim / 2;
        for (int i = 0; i < half; i++)
        {
            double angle = pos * invFreq[i], cos = Math.Cos(angle), sin = Math.Sin(angle);
            double x1 = vec[offset + i], x2 = vec[offset + half + i];
            vec[offset + i] = x1 * cos - x2 * sin;
            vec[offset + half + i] = x2 * cos + x1 * sin;
        }
    }
}
