using Ponder.Training;
using Ponder.Tasks;

namespace Ponder.Training.Tests;

/// <summary>
/// Each layer's backward against central finite differences. A layer with output y is checked through the scalar
/// L = sum(y * R) for a fixed random R (computed in float64), so dL/dy = R is what its backward receives.
/// The forward is float32, h = 1e-3; tolerance |analytic - numeric| &lt;= 1e-3 + 1e-2 |numeric| (every element).
/// </summary>
public sealed class LayerGradientTests
{
    static float[] Random(int n, ulong seed, float scale = 1f)
    {
        var rng = new DeterministicRandom(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = scale * (float)rng.NextGaussian();
        return x;
    }

    static double Project(ReadOnlySpan<float> y, float[] r)
    {
        double s = 0;
        for (int i = 0; i < y.Length; i++) s += (double)y[i] * r[i];
        return s;
    }

    /// <summary>Compares every element of <paramref name="analytic"/> with the finite difference of <paramref name="loss"/> in <paramref name="x"/>.</summary>
    static void Check(string what, float[] x, float[] analytic, Func<double> loss)
    {
        for (int i = 0; i < x.Length; i++)
        {
            float keep = x[i];
            const float h = 1e-3f;
            x[i] = keep + h; double up = loss();
            x[i] = keep - h; double down = loss();
            x[i] = keep;
            double numeric = (up - down) / (2 * h);
            Assert.True(Math.Abs(analytic[i] - numeric) <= 1e-3 + 1e-2 * Math.Abs(numeric), $"{what}[{i}]: backward {analytic[i]:G6}, finite difference {numeric:G6}");
        }
    }

    [Fact]
    public void Embedding_backward_scatter_adds_repeated_tokens()
    {
        int vocab = 5, d = 3;
        int[] tokens = [1, 4, 1, 0];
        var table = Random(vocab * d, 1);
        var r = Random(tokens.Length * d, 2);
        var y = new float[tokens.Length * d];
        var dTable = new float[vocab * d];
        Layers.EmbeddingBackward(dTable, r, tokens, d);
        Check("embedding", table, dTable, () => { Layers.EmbeddingForward(y, tokens, table, d); return Project(y, r); });
    }

    [Fact]
    public void RmsNorm_backward_matches_finite_differences()
    {
        int n = 3, d = 7;
        var x = Random(n * d, 1); var w = Random(d, 2); var r = Random(n * d, 3);
        var y = new float[n * d]; var rstd = new float[n];
        Layers.RmsNormForward(y, rstd, x, w, n, d, 1e-5f);
        var dx = new float[n * d]; var dw = new float[d];
        Layers.RmsNormBackward(dx, dw, r, x, w, rstd, n, d);
        double L() { Layers.RmsNormForward(y, rstd, x, w, n, d, 1e-5f); return Project(y, r); }
        Check("rmsnorm dx", x, dx, L);
        Check("rmsnorm dw", w, dw, L);
    }

    [Fact]
    public void Linear_backward_matches_finite_differences_with_bias_and_ragged_shapes()
    {
        int n = 5, dIn = 7, dOut = 3;
        var x = Random(n * dIn, 1); var w = Random(dOut * dIn, 2); var b = Random(dOut, 3); var r = Random(n * dOut, 4);
        var y = new float[n * dOut];
        var dx = new float[n * dIn]; var dw = new float[dOut * dIn]; var db = new float[dOut];
        Layers.LinearBackward(dx, dw, db, r, x, w, n, dIn, dOut);
        double L() { Layers.LinearForward(y, x, w, b, n, dIn, dOut); return Project(y, r); }
        Check("linear dx", x, dx, L);
        Check("linear dw", w, dw, L);
        Check("linear db", b, db, L);
    }

    [Fact]
    public void Rope_backward_matches_finite_differences_and_forward_matches_rotate_half_formula()
    {
        int nHeads = 2, headDim = 6, n = 3;
        int[] pos = [0, 5, 2];
        var (cos, sin) = Layers.RopeTables(8, headDim, 10000);
        var x = Random(n * nHeads * headDim, 1); var r = Random(x.Length, 2);
        var y = new float[x.Length];
        // Independent float64 rotate-half: y[i] = x[i] cos - x[i+h] sin, y[i+h] = x[i+h] cos + x[i] sin.
        x.CopyTo(y, 0);
        Layers.RopeForward(y, pos, nHeads, headDim, cos, sin);
        for (int t = 0; t < n; t++)
            for (int hh = 0; hh < nHeads; hh++)
                for (int i = 0; i < headDim / 2; i++)
                {
                    double a = pos[t] * Math.Pow(10000, -2.0 * i / headDim);
                    int o = t * nHeads * headDim + hh * headDim;
                    Assert.Equal(x[o + i] * Math.Cos(a) - x[o + i + 3] * Math.Sin(a), y[o + i], 5);
                    Assert.Equal(x[o + i + 3] * Math.Cos(a) + x[o + i] * Math.Sin(a), y[o + i + 3], 5);
                }
        var dx = (float[])r.Clone();
        Layers.RopeBackward(dx, pos, nHeads, headDim, cos, sin);
        Check("rope", x, dx, () => { x.CopyTo(y, 0); Layers.RopeForward(y, pos, nHeads, headDim, cos, sin); return Project(y, r); });
    }

    [Fact]
    public void Attention_backward_matches_finite_differences_with_gqa_and_document_masks()
    {
        int B = 2, T = 5, nH = 4, nKv = 2, hd = 3;
        int[] seg = [0, 0, 0, 3, 3, 0, 0, 0, 0, 4];
        var q = Random(B * T * nH * hd, 1); var k = Random(B * T * nKv * hd, 2); var v = Random(B * T * nKv * hd, 3);
        var r = Random(B * T * nH * hd, 4);
        var y = new float[q.Length]; var att = new float[B * nH * T * T];
        Layers.AttentionForward(y, att, q, k, v, seg, B, T, nH, nKv, hd);
        var dq = new float[q.Length]; var dk = new float[k.Length]; var dv = new float[v.Length];
        Layers.AttentionBackward(dq, dk, dv, r, att, q, k, v, seg, B, T, nH, nKv, hd);
        double L() { Layers.AttentionForward(y, att, q, k, v, seg, B, T, nH, nKv, hd); return Project(y, r); }
        Check("attention dq", q, dq, L);
        Check("attention dk", k, dk, L);
        Check("attention dv", v, dv, L);
        // Document masking: the first token of a document sees only itself, so its output is its own value row.
        Layers.AttentionForward(y, att, q, k, v, seg, B, T, nH, nKv, hd);
        for (int i = 0; i < hd; i++) Assert.Equal(v[3 * nKv * hd + i], y[3 * nH * hd + i], 6);
    }

    [Fact]
    public void SwiGlu_backward_matches_finite_differences()
    {
        var g = Random(13, 1, 2f); var u = Random(13, 2); var r = Random(13, 3);
        var h = new float[13]; var dg = new float[13]; var du = new float[13];
        Layers.SwiGluBackward(dg, du, r, g, u);
        double L() { Layers.SwiGluForward(h, g, u); return Project(h, r); }
        Check("swiglu dg", g, dg, L);
        Check("swiglu du", u, du, L);
    }

    [Fact]
    public void LmHead_and_cross_entropy_backward_match_finite_differences_and_loss_matches_log_softmax()
    {
        int n = 4, d = 5, vocab = 7;
        var x = Random(n * d, 1); var w = Random(vocab * d, 2);
        int[] targets = [3, 0, 6, 2];
        float[] mask = [1, 0, 1, 1];
        var logits = new float[n * vocab]; var dl = new float[n * vocab];
        double L()
        {
            Layers.LinearForward(logits, x, w, default, n, d, vocab);
            return Layers.CrossEntropy(dl, logits, targets, mask, vocab, 1f / 3);
        }
        double loss = L();
        // Independent float64 log-softmax.
        double expected = 0;
        for (int t = 0; t < n; t++)
        {
            if (mask[t] == 0) continue;
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < vocab; j++) max = Math.Max(max, logits[t * vocab + j]);
            for (int j = 0; j < vocab; j++) sum += Math.Exp(logits[t * vocab + j] - max);
            expected += -(logits[t * vocab + targets[t]] - max - Math.Log(sum)) / 3;
        }
        Assert.Equal(expected, loss, 5);
        var dx = new float[n * d]; var dw = new float[vocab * d];
        Layers.LinearBackward(dx, dw, default, dl, x, w, n, d, vocab);
        Check("lm head dx", x, dx, L);
        Check("lm head dw", w, dw, L);
    }

    [Fact]
    public void ValueHead_and_binary_cross_entropy_backward_match_finite_differences()
    {
        int n = 5, d = 4;
        var x = Random(n * d, 1); var w = Random(d, 2, 2f);
        float[] labels = [0f, 1f, 0.25f, 0.5f, 0.9f], mask = [1, 1, 0, 1, 1];
        var z = new float[n]; var dz = new float[n];
        double L() { Layers.LinearForward(z, x, w, default, n, d, 1); return Layers.BinaryCrossEntropy(dz, z, labels, mask, 0.25f); }
        double loss = L();
        double expected = 0;
        for (int t = 0; t < n; t++)
        {
            if (mask[t] == 0) continue;
            double s = 1 / (1 + Math.Exp(-z[t]));
            expected += -(labels[t] * Math.Log(s) + (1 - labels[t]) * Math.Log(1 - s)) * 0.25;
        }
        Assert.Equal(expected, loss, 5);
        var dx = new float[n * d]; var dw = new float[d];
        Layers.LinearBackward(dx, dw, default, dz, x, w, n, d, 1);
        Check("value head dx", x, dx, L);
        Check("value head dw", w, dw, L);
    }

    [Fact]
    public void Dropout_zeroes_about_p_and_backward_uses_the_same_mask()
    {
        var x = new float[10000]; Array.Fill(x, 1f);
        var keep = new float[x.Length];
        Layers.DropoutForward(x, keep, 0.05f, new DeterministicRandom(1));
        int zeros = x.Count(v => v == 0);
        Assert.InRange(zeros, 400, 600);
        Assert.All(x.Where(v => v != 0), v => Assert.Equal(1f / 0.95f, v, 5));
        var dx = new float[x.Length]; Array.Fill(dx, 2f);
        Layers.DropoutBackward(dx, keep);
        for (int i = 0; i < x.Length; i++) Assert.Equal(2 * x[i], dx[i], 5);
    }
}
