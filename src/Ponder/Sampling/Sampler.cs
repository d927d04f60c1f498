using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace Ponder.Sampling;

/// <summary>
/// Chooses next tokens for one sequence: its own options and random stream, so its tokens do not depend on what else
/// is in the batch. Reuses its buffers: no allocation per token once warm.
/// </summary>
public sealed class Sampler
{
    readonly SamplingOptions _options;
    Rng _rng;
    float[] _probs = [];
    int[] _order = [];
    bool[] _seen = [];
    readonly Comparison<int> _byProbabilityDescending;

    /// <summary>A sampler with its own random stream seeded from <paramref name="options"/> (validated here).</summary>
    public Sampler(SamplingOptions options)
    {
        _options = options.Validate();
        _rng = new Rng(options.Seed);
        // Created once: a lambda per Sample call would allocate a closure per token.
        _byProbabilityDescending = (a, b) => _probs[b] != _probs[a] ? _probs[b].CompareTo(_probs[a]) : a.CompareTo(b);
    }

    /// <summary>The options it samples with.</summary>
    public SamplingOptions Options => _options;

    /// <summary>
    /// Picks a token from <paramref name="logits"/> (modified in place by the processors). <paramref name="context"/>
    /// is the sequence so far (prompt and generated), used by the repetition penalty.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int Sample(Span<float> logits, ReadOnlySpan<int> context)
    {
        if (logits.Length == 0) throw new ArgumentException("no logits to sample from", nameof(logits));
        var o = _options;
        if (o.RepetitionPenalty != 1f) ApplyRepetitionPenalty(logits, context, o.RepetitionPenalty);
        if (o.Temperature == 0f) return ArgMax(logits);

        int vocab = logits.Length;
        if (_probs.Length < vocab) { _probs = new float[vocab]; _order = new int[vocab]; }
        var probs = _probs.AsSpan(0, vocab);
        TensorPrimitives.Divide(logits, o.Temperature, probs);
        Softmax(probs);

        bool filter = o.TopK > 0 && o.TopK < vocab || o.TopP < 1f || o.MinP > 0f;
        if (!filter) return Draw(probs);

        // Candidates sorted by probability, descending (ties by id, for determinism): only those above a threshold
        // that provably holds every kept token, so a 49k vocabulary is not sorted per token.
        int n = Candidates(probs, o, _order);
        var order = _order.AsSpan(0, n);
        var p = _probs;
        order.Sort(_byProbabilityDescending);
        int keep = o.TopK > 0 ? Math.Min(o.TopK, n) : n;
        if (o.TopP < 1f)
        {
            double cumulative = 0;
            for (int i = 0; i < keep; i++)
            {
                cumulative += p[order[i]];
                if (cumulative >= o.TopP) { keep = i + 1; break; }
            }
        }
        if (o.MinP > 0f)
        {
            float threshold = o.MinP * p[order[0]];
            int k = 1;
            while (k < keep && p[order[k]] >= threshold) k++;
            keep = k;
        }
        double total = 0;
        for (int i = 0; i < keep; i++) total += p[order[i]];
        double u = _rng.NextDouble() * total;
        for (int i = 0; i < keep; i++)
        {
            u -= p[order[i]];
            if (u < 0) return order[i];
        }
        return order[keep - 1];
    }

    /// <summary>
    /// Writes to <paramref name="order"/> the ids of every token with probability at least a threshold t, and returns
    /// their count. Tokens below t are less likely than every candidate, so the candidates sorted are exactly the head
    /// of the whole vocabulary sorted; t is lowered (halved) until that head is long enough for what the filters keep:
    /// top-k's k tokens, top-p's nucleus (candidate mass reaching top_p, with a margin for summation order), or every
    /// token min-p admits (t at or below min_p times the largest probability). t = 0 admits the whole vocabulary.
    /// </summary>
    static int Candidates(ReadOnlySpan<float> probs, SamplingOptions o, int[] order)
    {
        float max = TensorPrimitives.Max(probs);
        float minP = o.MinP * max;
        float t = o.MinP > 0f ? minP : max / 64;
        for (int round = 0; ; round++)
        {
            if (round == 40) t = 0f;
            int n = 0;
            double mass = 0;
            for (int i = 0; i < probs.Length; i++)
            {
                if (probs[i] < t) continue;
                order[n++] = i;
                mass += probs[i];
            }
            bool enough = t == 0f
                || (o.MinP > 0f && t <= minP)
                || (o.TopK > 0 && n >= o.TopK)
                || (o.TopP < 1f && mass >= o.TopP + 1e-5);
            if (enough) return n;
            t *= 0.5f;
        }
    }

    int Draw(ReadOnlySpan<float> probs)
    {
        double u = _rng.NextDouble();
        int last = 0;
        for (int i = 0; i < probs.Length; i++)
        {
            if (probs[i] <= 0) continue;
            last = i;
            u -= probs[i];
            if (u < 0) return i;
        }
        return last; // rounding left u > 0: the last token with mass
    }

    /// <summary>Index of the largest value (the first on ties).</summary>
    public static int ArgMax(ReadOnlySpan<float> values) => TensorPrimitives.IndexOfMax(values);

    /// <summary>Numerically stable softmax in place (subtracts the max first; TensorPrimitives.SoftMax does not).</summary>
    public static void Softmax(Span<float> x)
    {
        float max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, x);
        TensorPrimitives.Exp(x, x);
        TensorPrimitives.Divide(x, TensorPrimitives.Sum(x), x);
    }

    /// <summary>log softmax(x)[target], computed stably in float64 accumulation.</summary>
    public static double LogProbability(ReadOnlySpan<float> logits, int target)
    {
        float max = TensorPrimitives.Max(logits);
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        return logits[target] - max - Math.Log(sum);
    }

    void ApplyRepetitionPenalty(Span<float> logits, ReadOnlySpan<int> context, float penalty)
    {
        // Each distinct token once, as HF does (gather, penalize, scatter).
        if (_seen.Length < logits.Length) _seen = new bool[logits.Length];
        var seen = _seen.AsSpan(0, logits.Length);
        seen.Clear();
        foreach (int t in context)
        {
            if ((uint)t >= (uint)logits.Length || seen[t]) continue;
            seen[t] = true;
            logits[t] = logits[t] > 0 ? logits[t] / penalty : logits[t] * penalty;
        }
    }
}
