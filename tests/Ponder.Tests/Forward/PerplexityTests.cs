using Ponder.Models;
using Ponder.TestSupport;

namespace Ponder.Tests.Forward;

/// <summary>Perplexity scored in bounded pieces against the naive float64 reference forward over whole windows.</summary>
public sealed class PerplexityTests
{
    [Fact]
    public void PiecewiseScoringMatchesTheReferenceOverWholeWindows()
    {
        // A 32768-id vocabulary makes the scorer's logits bound (4M floats) cut a window into 128-token pieces, so a
        // 200-token window runs as two pieces, the second attending to the first through the cache.
        var config = TestConfigs.Tiny with { Vocab = 32768 };
        var tensors = RandomModel.Create(config, seed: 5);
        int[] tokens = RandomModel.Tokens(config, 401, seed: 6);
        const int window = 200;
        using var model = PonderModel.Load(new HostTensorSource(config, tensors), null, new ModelOptions { Threads = 1, KvCacheTokens = 256 });
        var result = model.Perplexity(tokens, window);

        double nll = 0, maxLogit = 0;
        int scored = 0;
        for (int start = 0; start + 1 < tokens.Length; start += window)
        {
            int[] chunk = tokens[start..Math.Min(tokens.Length, start + window)];
            if (chunk.Length < 2) break;
            var logits = ReferenceForward.Run(config, tensors, chunk);
            for (int t = 0; t + 1 < chunk.Length; t++)
            {
                double max = double.NegativeInfinity, sum = 0;
                for (int v = 0; v < config.Vocab; v++) max = Math.Max(max, logits[t, v]);
                for (int v = 0; v < config.Vocab; v++) sum += Math.Exp(logits[t, v] - max);
                nll -= logits[t, chunk[t + 1]] - max - Math.Log(sum);
                maxLogit = Math.Max(maxLogit, Math.Abs(max));
                scored++;
            }
        }
        Assert.Equal(scored, result.TokensScored);
        Assert.Equal(2 * (window - 1), scored);
        // The forward matches the reference's logits within 2e-4 + 1e-3 |logit|; a log-softmax moves by at most twice
        // the largest logit error, and so does a mean of them.
        double bound = 2 * (2e-4 + 1e-3 * maxLogit);
        Assert.True(Math.Abs(nll / scored - result.MeanNll) <= bound, $"reference {nll / scored:G9}, engine {result.MeanNll:G9}, bound {bound:G3}");
    }
}
