using Ponder.Sampling;

namespace Ponder.Tests.Sampling;

public sealed class SamplerTests
{
    static float[] Logits(params double[] probs) => probs.Select(p => (float)Math.Log(p)).ToArray();

    static int[] Counts(SamplingOptions o, double[] probs, int draws)
    {
        var s = new Sampler(o);
        var counts = new int[probs.Length];
        for (int i = 0; i < draws; i++) counts[s.Sample(Logits(probs), [])]++;
        return counts;
    }

    [Fact]
    public void Greedy_takes_the_argmax_and_the_repetition_penalty_can_move_it()
    {
        var greedy = new Sampler(SamplingOptions.Greedy);
        Assert.Equal(2, greedy.Sample(new float[] { 1f, 2f, 3f, -1f }, []));
        // Penalty 2: token 2's logit 3 -> 1.5 (< 2), so token 1 wins; a negative logit is multiplied (more negative).
        var penalized = new Sampler(SamplingOptions.Greedy with { RepetitionPenalty = 2f });
        var logits = new float[] { 1f, 2f, 3f, -1f };
        Assert.Equal(1, penalized.Sample(logits, [2, 3, 2]));
        Assert.Equal(new float[] { 1f, 2f, 1.5f, -2f }, logits);
    }

    [Fact]
    public void Plain_sampling_follows_the_distribution()
    {
        double[] p = [0.5, 0.3, 0.15, 0.05];
        const int n = 20000;
        var counts = Counts(new SamplingOptions { Seed = 7 }, p, n);
        for (int i = 0; i < p.Length; i++)
        {
            double sigma = Math.Sqrt(n * p[i] * (1 - p[i]));
            Assert.InRange(counts[i], n * p[i] - 4 * sigma, n * p[i] + 4 * sigma);
        }
    }

    [Fact]
    public void Temperature_sharpens_the_distribution_as_computed_by_hand()
    {
        // T = 0.5 squares the probabilities before renormalizing: [0.6, 0.4] -> [0.36, 0.16] / 0.52.
        const int n = 20000;
        var counts = Counts(new SamplingOptions { Temperature = 0.5f, Seed = 3 }, [0.6, 0.4], n);
        double p0 = 0.36 / 0.52, sigma = Math.Sqrt(n * p0 * (1 - p0));
        Assert.InRange(counts[0], n * p0 - 4 * sigma, n * p0 + 4 * sigma);
    }

    [Fact]
    public void Top_k_top_p_and_min_p_keep_exactly_the_expected_candidates()
    {
        double[] p = [0.4, 0.3, 0.2, 0.1];
        Assert.Equal([1, 1, 0, 0], Counts(new SamplingOptions { TopK = 2 }, p, 4000).Select(c => Math.Sign(c)).ToArray());
        // Top-p 0.65: 0.4 < 0.65, 0.4 + 0.3 = 0.7 >= 0.65, so the first two.
        Assert.Equal([1, 1, 0, 0], Counts(new SamplingOptions { TopP = 0.65f }, p, 4000).Select(c => Math.Sign(c)).ToArray());
        // Min-p 0.5: threshold 0.2, so 0.4, 0.3 and 0.2 stay.
        Assert.Equal([1, 1, 1, 0], Counts(new SamplingOptions { MinP = 0.5f }, p, 4000).Select(c => Math.Sign(c)).ToArray());
        // Within the kept set, sampling is proportional: top-k 2 -> 0.4 : 0.3.
        const int n = 20000;
        var c2 = Counts(new SamplingOptions { TopK = 2, Seed = 11 }, p, n);
        double q = 0.4 / 0.7, sigma = Math.Sqrt(n * q * (1 - q));
        Assert.InRange(c2[0], n * q - 4 * sigma, n * q + 4 * sigma);
    }

    /// <summary>
    /// The filters as specified, on the whole vocabulary sorted (probability descending, ties by id), drawing with the
    /// same random stream: the sampler's thresholded candidate set must pick exactly the same tokens.
    /// </summary>
    static int ReferenceFiltered(float[] logits, SamplingOptions o, ref Rng rng)
    {
        var p = logits.Select(l => l / o.Temperature).ToArray();
        Sampler.Softmax(p);
        var order = Enumerable.Range(0, p.Length).OrderByDescending(i => p[i]).ThenBy(i => i).ToArray();
        int keep = o.TopK > 0 ? Math.Min(o.TopK, p.Length) : p.Length;
        if (o.TopP < 1f)
        {
            double cumulative = 0;
            for (int i = 0; i < keep; i++)
                if ((cumulative += p[order[i]]) >= o.TopP) { keep = i + 1; break; }
        }
        if (o.MinP > 0f)
        {
            int k = 1;
            while (k < keep && p[order[k]] >= o.MinP * p[order[0]]) k++;
            keep = k;
        }
        double total = 0;
        for (int i = 0; i < keep; i++) total += p[order[i]];
        double u = rng.NextDouble() * total;
        for (int i = 0; i < keep; i++)
            if ((u -= p[order[i]]) < 0) return order[i];
        return order[keep - 1];
    }

    [Theory]
    [InlineData(50, 1f, 0f)]
    [InlineData(1, 1f, 0f)]
    [InlineData(3000, 1f, 0f)]
    [InlineData(0, 0.9f, 0f)]
    [InlineData(0, 0.999f, 0f)]
    [InlineData(0, 0.3f, 0f)]
    [InlineData(0, 1f, 0.05f)]
    [InlineData(40, 0.95f, 0.02f)]
    public void Filtering_on_a_candidate_threshold_picks_what_sorting_the_whole_vocabulary_picks(int topK, float topP, float minP)
    {
        var random = new Random(topK * 31 + (int)(topP * 1000) + (int)(minP * 100));
        const int vocab = 4096;
        foreach (double scale in new[] { 0.1, 1.0, 4.0, 12.0 })   // flat to peaked
        {
            var o = new SamplingOptions { TopK = topK, TopP = topP, MinP = minP, Seed = 99, Temperature = 0.8f };
            var sampler = new Sampler(o);
            var rng = new Rng(99);
            for (int draw = 0; draw < 25; draw++)
            {
                // Gaussian logits, a few exact ties among the largest.
                var logits = Enumerable.Range(0, vocab).Select(_ => (float)(scale * Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()))).ToArray();
                int top = Array.IndexOf(logits, logits.Max());
                logits[(top + 1) % vocab] = logits[top];
                int expected = ReferenceFiltered(logits, o, ref rng);
                Assert.Equal(expected, sampler.Sample((float[])logits.Clone(), []));
            }
        }
    }

    [Fact]
    public void A_seed_reproduces_its_sequence_and_another_seed_differs()
    {
        double[] p = Enumerable.Range(1, 50).Select(i => 1.0 / 50).ToArray();
        int[] Draw(ulong seed)
        {
            var s = new Sampler(new SamplingOptions { Seed = seed });
            return Enumerable.Range(0, 64).Select(_ => s.Sample(Logits(p), [])).ToArray();
        }
        Assert.Equal(Draw(5), Draw(5));
        Assert.NotEqual(Draw(5), Draw(6));
    }

    [Fact]
    public void Softmax_is_stable_on_huge_logits()
    {
        var x = new float[] { 1e30f, 1e30f - 1e24f, -1e30f };
        Sampler.Softmax(x);
        Assert.All(x, v => Assert.True(float.IsFinite(v)));
        Assert.Equal(1.0, x.Sum(), 5);
    }

    [Theory]
    [InlineData(-1f, 1, 1f, 0f, 1f, "temperature")]
    [InlineData(1f, -1, 1f, 0f, 1f, "top-k")]
    [InlineData(1f, 0, 0f, 0f, 1f, "top-p")]
    [InlineData(1f, 0, 1f, 2f, 1f, "min-p")]
    [InlineData(1f, 0, 1f, 0f, 0f, "repetition penalty")]
    public void Out_of_range_options_are_rejected_by_name(float t, int k, float topP, float minP, float rep, string name)
    {
        var e = Assert.Throws<ArgumentException>(() => new SamplingOptions { Temperature = t, TopK = k, TopP = topP, MinP = minP, RepetitionPenalty = rep }.Validate());
        Assert.Contains(name, e.Message);
    }
}
