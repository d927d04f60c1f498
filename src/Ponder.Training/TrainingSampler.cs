using System.Numerics.Tensors;
using Ponder.Tasks;
using Ponder.Models;
using Ponder.Tokenization;

namespace Ponder.Training;

/// <summary>
/// Batched autoregressive sampling from a <see cref="TrainableLlama"/>'s parameters with a KV cache, for measuring
/// pass@1 during training (the engine's own generation lives in Ponder). All sequences advance one position per
/// step: a sequence still inside its prompt is fed the prompt's next token, otherwise its last sample.
/// </summary>
public sealed class TrainingSampler(TrainableLlama model)
{
    readonly ModelConfig config = model.Parameters.Config;

    float[] W(string name) => model.Parameters[name].Data;
    ReadOnlySpan<float> Bias(string name) => config.QkvBias ? model.Parameters[name].Data : default;

    /// <summary>
    /// Continues each prompt until EOS or <paramref name="maxLength"/> total tokens; returns the generated tokens
    /// (without EOS) and whether EOS was reached. <paramref name="temperature"/> 0 is greedy. Only byte tokens and
    /// EOS are sampled.
    /// </summary>
    public List<(int[] Tokens, bool Finished)> Generate(IReadOnlyList<int[]> prompts, int maxLength, float temperature, DeterministicRandom rng)
    {
        if (maxLength > config.MaxPositions) throw new ArgumentOutOfRangeException(nameof(maxLength), $"maxLength {maxLength} exceeds max positions {config.MaxPositions}");
        int B = prompts.Count, d = config.DModel, qd = config.QDim, kvd = config.KvDim, f = config.DFf;
        int nH = config.NHeads, nKv = config.NKvHeads, hd = config.HeadDim, group = nH / nKv, V = config.Vocab;
        var (cos, sin) = model.Rope;
        var kCache = new float[config.NLayers][];
        var vCache = new float[config.NLayers][];
        for (int l = 0; l < config.NLayers; l++) { kCache[l] = new float[(long)B * maxLength * kvd]; vCache[l] = new float[(long)B * maxLength * kvd]; }
        var seqs = prompts.Select(p => new List<int>(p)).ToArray();
        var done = new bool[B];
        var finished = new bool[B];
        float[] x = new float[B * d], ln = new float[B * d], rstd = new float[B], q = new float[B * qd], k = new float[B * kvd], v = new float[B * kvd];
        float[] y = new float[B * qd], o = new float[B * d], g = new float[B * f], u = new float[B * f], h = new float[B * f], logits = new float[B * V];
        var active = new int[B];
        var tokens = new int[B];
        var positions = new int[B];
        float scale = 1f / MathF.Sqrt(hd);
        for (int t = 0; t < maxLength - 1; t++)
        {
            int a = 0;
            for (int i = 0; i < B; i++)
                if (!done[i] && seqs[i].Count > t) { active[a] = i; tokens[a] = seqs[i][t]; positions[a] = t; a++; }
            if (a == 0) break;
            Layers.EmbeddingForward(x, tokens.AsSpan(0, a), W(TensorNames.Embedding), d);
            for (int l = 0; l < config.NLayers; l++)
            {
                Layers.RmsNormForward(ln, rstd, x, W(TensorNames.AttnNorm(l)), a, d, config.RmsNormEps);
                Layers.LinearForward(q, ln, W(TensorNames.Q(l)), Bias(TensorNames.QBias(l)), a, d, qd);
                Layers.LinearForward(k, ln, W(TensorNames.K(l)), Bias(TensorNames.KBias(l)), a, d, kvd);
                Layers.LinearForward(v, ln, W(TensorNames.V(l)), Bias(TensorNames.VBias(l)), a, d, kvd);
                Layers.RopeForward(q.AsSpan(0, a * qd), positions.AsSpan(0, a), nH, hd, cos, sin);
                Layers.RopeForward(k.AsSpan(0, a * kvd), positions.AsSpan(0, a), nKv, hd, cos, sin);
                float[] kc = kCache[l], vc = vCache[l];
                for (int r = 0; r < a; r++)
                {
                    long off = ((long)active[r] * maxLength + t) * kvd;
                    k.AsSpan(r * kvd, kvd).CopyTo(kc.AsSpan((int)off, kvd));
                    v.AsSpan(r * kvd, kvd).CopyTo(vc.AsSpan((int)off, kvd));
                }
                Parallel.For(0, a * nH, rh =>
                {
                    int r = rh / nH, head = rh % nH, kvh = head / group;
                    long baseOff = (long)active[r] * maxLength * kvd + kvh * hd;
                    Span<float> p = stackalloc float[t + 1];
                    var qRow = new ReadOnlySpan<float>(q, r * qd + head * hd, hd);
                    for (int s = 0; s <= t; s++) p[s] = scale * TensorPrimitives.Dot(qRow, new ReadOnlySpan<float>(kc, (int)(baseOff + (long)s * kvd), hd));
                    float max = TensorPrimitives.Max(p);
                    TensorPrimitives.Subtract(p, max, p);
                    TensorPrimitives.Exp(p, p);
                    TensorPrimitives.Divide(p, TensorPrimitives.Sum(p), p);
                    var yRow = new Span<float>(y, r * qd + head * hd, hd);
                    yRow.Clear();
                    for (int s = 0; s <= t; s++) TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(vc, (int)(baseOff + (long)s * kvd), hd), p[s], yRow, yRow);
                });
                Layers.LinearForward(o, y, W(TensorNames.O(l)), default, a, qd, d);
                TensorPrimitives.Add(x.AsSpan(0, a * d), o.AsSpan(0, a * d), x.AsSpan(0, a * d));
                Layers.RmsNormForward(ln, rstd, x, W(TensorNames.FfnNorm(l)), a, d, config.RmsNormEps);
                Layers.LinearForward(g, ln, W(TensorNames.Gate(l)), default, a, d, f);
                Layers.LinearForward(u, ln, W(TensorNames.Up(l)), default, a, d, f);
                Layers.SwiGluForward(h.AsSpan(0, a * f), g, u);
                Layers.LinearForward(o, h, W(TensorNames.Down(l)), default, a, f, d);
                TensorPrimitives.Add(x.AsSpan(0, a * d), o.AsSpan(0, a * d), x.AsSpan(0, a * d));
            }
            Layers.RmsNormForward(ln, rstd, x, W(TensorNames.FinalNorm), a, d, config.RmsNormEps);
            Layers.LinearForward(logits, ln, W(config.TiedEmbeddings ? TensorNames.Embedding : TensorNames.LmHead), default, a, d, V);
            for (int r = 0; r < a; r++)
            {
                int i = active[r];
                if (seqs[i].Count > t + 1) continue;   // still inside the prompt
                int next = Pick(logits.AsSpan(r * V, V), temperature, rng);
                if (next == ByteTokenizer.PonderEos) { done[i] = true; finished[i] = true; }
                else { seqs[i].Add(next); if (seqs[i].Count >= maxLength) done[i] = true; }
            }
        }
        return seqs.Select((s, i) => (s.Skip(prompts[i].Length).ToArray(), finished[i])).ToList();
    }

    static int Pick(Span<float> logits, float temperature, DeterministicRandom rng)
    {
        // Only bytes and EOS: BOS and PAD are never a continuation.
        var allowed = logits[..(ByteTokenizer.PonderEos + 1)];
        if (temperature <= 0) return TensorPrimitives.IndexOfMax(allowed);
        TensorPrimitives.Multiply(allowed, 1f / temperature, allowed);
        float max = TensorPrimitives.Max(allowed);
        TensorPrimitives.Subtract(allowed, max, allowed);
        TensorPrimitives.Exp(allowed, allowed);
        double target = rng.NextDouble() * TensorPrimitives.Sum(allowed), acc = 0;
        for (int i = 0; i < allowed.Length; i++)
        {
            acc += allowed[i];
            if (acc > target) return i;
        }
        return ByteTokenizer.PonderEos;
    }
}
