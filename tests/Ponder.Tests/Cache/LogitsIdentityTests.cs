using System.Runtime.InteropServices;
using Ponder.Backends;
using Ponder.Cache;
using Ponder.Models;

namespace Ponder.Tests.Cache;

/// <summary>
/// A sequence's logits are bitwise identical on the CPU backend whether its prefix was computed from scratch in one
/// chunk, in several chunks batched with other sequences, came from a fork (with copy-on-write), or from the prefix
/// index (partly or fully cached prompt). And the PRM's sequences mirror the policy's, prefilling only new steps.
/// </summary>
public sealed class LogitsIdentityTests : IDisposable
{
    const int Bs = 4;
    readonly Transformer _policy = CacheTestModels.Create(CacheTestModels.Policy, seed: 1);
    readonly Transformer _prm = CacheTestModels.Create(CacheTestModels.Prm, seed: 2);
    static readonly int[] Prompt = [.. Enumerable.Range(0, 23).Select(i => (i * 17 + 5) % 61)];
    static readonly int[] Continuation = [3, 14, 15, 9, 26, 5];

    public void Dispose() { _policy.Dispose(); _prm.Dispose(); }

    BlockPool PoolFor(Transformer model) => new(model.Backend, model.Config.ToKvLayout(Bs), 64);

    /// <summary>One forward over <paramref name="sequences"/> (each up to <paramref name="maxTokens"/> pending tokens); each sequence's output or null.</summary>
    static float[]?[] Step(Transformer model, BlockPool pool, int maxTokens, params Sequence[] sequences)
    {
        var batch = new SequenceBatch(pool.BlockSize);
        foreach (var s in sequences) batch.Add(s, maxTokens);
        int rows = model.Config.HeadRows;
        var output = new float[batch.OutputRows.Length * rows];
        model.Forward(batch.Layout, batch.Tokens, pool.Storage, batch.OutputRows, output);
        batch.MarkComputed();
        return [.. Enumerable.Range(0, sequences.Length).Select(i => batch.OutputIndex(i) is int o and >= 0 ? output.AsSpan(o * rows, rows).ToArray() : null)];
    }

    static void AssertBitwise(float[]? expected, float[]? actual, string what)
    {
        Assert.NotNull(expected); Assert.NotNull(actual);
        var e = MemoryMarshal.Cast<float, int>(expected); var a = MemoryMarshal.Cast<float, int>(actual);
        for (int i = 0; i < e.Length; i++)
            if (e[i] != a[i]) Assert.Fail($"{what}: logit {i} is {actual[i]:R}, expected {expected[i]:R} (bitwise)");
    }

    /// <summary>Reference: prompt prefilled in one chunk, then the continuation decoded one token at a time, alone.</summary>
    List<float[]> FromScratch(Transformer model, int[] prompt, int[] continuation)
    {
        using var pool = PoolFor(model);
        using var s = new Sequence(pool);
        s.Append(prompt);
        var logits = new List<float[]> { Step(model, pool, int.MaxValue, s)[0]! };
        foreach (int t in continuation) { s.Append(t); logits.Add(Step(model, pool, 1, s)[0]!); }
        return logits;
    }

    [Fact]
    public void ChunkedPrefillBatchedWithOthersMatchesFromScratch()
    {
        var expected = FromScratch(_policy, Prompt, Continuation);
        using var pool = PoolFor(_policy);
        using var s = new Sequence(pool);
        using var other = new Sequence(pool);
        s.Append(Prompt);
        other.Append([.. Enumerable.Range(0, 40).Select(i => (i * 5) % 61)]);
        float[]? last = null;
        while (s.PendingLength > 0) last = Step(_policy, pool, 5, other.PendingLength > 0 ? [s, other] : [s])[0];
        AssertBitwise(expected[0], last, "prompt in chunks of 5");
        for (int i = 0; i < Continuation.Length; i++)
        {
            s.Append(Continuation[i]); other.Append(i);
            AssertBitwise(expected[i + 1], Step(_policy, pool, 1, other, s)[1], $"decode {i} batched after another sequence");
        }
    }

    [Fact]
    public void ForkedPrefixMatchesFromScratch()
    {
        var expected = FromScratch(_policy, Prompt, Continuation);
        using var pool = PoolFor(_policy);
        using var parent = new Sequence(pool);
        parent.Append(Prompt.AsSpan(0, 13));             // 13 = 3 blocks + 1: the fork shares a partial block
        Step(_policy, pool, int.MaxValue, parent);
        using var child = parent.Fork();
        parent.Append([60, 59, 58]);                     // diverge: copy-on-write of the shared partial block
        child.Append(Prompt.AsSpan(13));
        var outputs = Step(_policy, pool, int.MaxValue, parent, child);
        Assert.True(pool.CopyOnWriteCopies >= 1);
        AssertBitwise(expected[0], outputs[1], "prompt whose first 13 tokens came from a fork");

        using var sibling = child.Fork();                // fork after the full prompt, then decode both
        for (int i = 0; i < Continuation.Length; i++)
        {
            child.Append(Continuation[i]); sibling.Append((Continuation[i] + 1) % 61);
            AssertBitwise(expected[i + 1], Step(_policy, pool, 1, sibling, child)[1], $"decode {i} of a fork");
        }
        pool.ValidateInvariants();
    }

    [Fact]
    public void PrefixIndexAttachMatchesFromScratch()
    {
        var expected = FromScratch(_policy, Prompt, Continuation);
        using var pool = PoolFor(_policy);
        var index = new PrefixIndex(pool, "policy");
        using (var warm = index.CreateSequence(Prompt)) Step(_policy, pool, int.MaxValue, warm);
        Assert.Equal(Prompt.Length / Bs, index.CachedBlockCount);

        using var s = index.CreateSequence(Prompt);
        Assert.Equal(20, s.ComputedLength);              // 5 cached blocks; 3 tokens left to compute
        var batch = new SequenceBatch(Bs);
        batch.Add(s);
        Assert.Equal(3, batch.Layout.TokenCount);
        batch.Clear();
        AssertBitwise(expected[0], Step(_policy, pool, int.MaxValue, s)[0], "prompt whose first 20 tokens came from the prefix index");
        for (int i = 0; i < Continuation.Length; i++)
        {
            s.Append(Continuation[i]);
            AssertBitwise(expected[i + 1], Step(_policy, pool, 1, s)[0], $"decode {i} after a prefix hit");
        }
    }

    [Fact]
    public void FullyCachedPromptRecomputesOnlyItsLastToken()
    {
        int[] prompt = Prompt[..20];
        var expected = FromScratch(_policy, prompt, []);
        using var pool = PoolFor(_policy);
        var index = new PrefixIndex(pool, "policy");
        using (var warm = index.CreateSequence(prompt)) Step(_policy, pool, int.MaxValue, warm);

        using var s = index.CreateSequence(prompt);
        Assert.Equal(19, s.ComputedLength);
        long before = _policy.Backend.Flops.Total;
        var logits = Step(_policy, pool, int.MaxValue, s)[0];
        AssertBitwise(expected[0], logits, "fully cached prompt");
        Assert.Equal(1, pool.CopyOnWriteCopies);
        Assert.True(_policy.Backend.Flops.Total - before < 4 * 2L * _policy.Config.TotalParameters, "more than one token was recomputed");
        pool.ValidateInvariants();
    }

    [Fact]
    public void PrmSequencesMirrorPolicyAndPrefillOnlyNewSteps()
    {
        using var policyPool = PoolFor(_policy);
        using var prmPool = PoolFor(_prm);
        var policyIndex = new PrefixIndex(policyPool, "policy");
        var prmIndex = new PrefixIndex(prmPool, "prm");
        var beams = new List<(Sequence Policy, Sequence Prm)> { (policyIndex.CreateSequence(Prompt[..10]), prmIndex.CreateSequence(Prompt[..10])) };
        Step(_policy, policyPool, int.MaxValue, beams[0].Policy);
        Step(_prm, prmPool, int.MaxValue, beams[0].Prm);

        for (int round = 0; round < 3; round++)
        {
            var grown = new List<(Sequence, Sequence)>();
            foreach (var (pol, prm) in beams)
            {
                grown.Add((pol, prm));
                grown.Add((pol.Fork(), prm.Fork()));     // both models fork the beam together
            }
            beams = grown;
            for (int b = 0; b < beams.Count; b++)
            {
                var (pol, prm) = beams[b];
                int first = (round * 7 + b * 11) % 61;   // beams differ from their step's first token on
                pol.Append(first);
                var step = new List<int> { first };
                for (int t = 1; t < 5; t++)
                {
                    var logits = Step(_policy, policyPool, 1, pol)[0]!;
                    int next = Array.IndexOf(logits, logits.Max());
                    pol.Append(next); step.Add(next);
                }
                Step(_policy, policyPool, 1, pol);       // the step's last token, computed like any decode
                prm.Append([.. step]);                   // the PRM mirrors the step's tokens
                Assert.Equal(pol.Tokens, prm.Tokens);

                var batch = new SequenceBatch(Bs);
                batch.Add(prm);
                Assert.Equal(step.Count, batch.Layout.TokenCount); // only the new step is prefilled
                var score = new float[1];
                _prm.Forward(batch.Layout, batch.Tokens, prmPool.Storage, batch.OutputRows, score);
                batch.MarkComputed();

                var reference = FromScratch(_prm, [.. prm.Tokens], [])[0];
                AssertBitwise(reference, score, $"PRM score of round {round} beam {b}");
            }
        }
        foreach (var (pol, prm) in beams) { pol.Dispose(); prm.Dispose(); }
        policyPool.ValidateInvariants(); prmPool.ValidateInvariants();
        Assert.Equal(0, policyPool.Stats().HeldBlocks);
        Assert.True(prmIndex.CachedBlockCount > 0);
    }

    [Fact]
    public void ManyForksDecodedTogetherMatchEachAlone()
    {
        // 11 forks of one prompt decode in one batch: the attention reads their shared prompt blocks once per lane set
        // (8 sequences of 2 query heads per KV head fill one), then each fork's own blocks; every fork's logits must be
        // bitwise those of the same tokens computed alone from scratch.
        const int Forks = 11;
        using var pool = PoolFor(_policy);
        using var root = new Sequence(pool);
        root.Append(Prompt);
        Step(_policy, pool, int.MaxValue, root);
        var forks = Enumerable.Range(0, Forks).Select(_ => root.Fork()).ToArray();
        try
        {
            var tokens = forks.Select(_ => new List<int>(Prompt)).ToArray();
            for (int step = 0; step < 6; step++)
            {
                for (int f = 0; f < Forks; f++)
                {
                    int t = (f * 13 + step * 7) % 61;
                    forks[f].Append(t); tokens[f].Add(t);
                }
                var outputs = Step(_policy, pool, 1, forks);
                if (step % 3 != 2) continue; // every third step: compare all forks (from scratch costs a prefill each)
                for (int f = 0; f < Forks; f++)
                    AssertBitwise(FromScratch(_policy, [.. tokens[f]], [])[0], outputs[f], $"fork {f} after {step + 1} decode steps");
            }
        }
        finally { foreach (var f in forks) f.Dispose(); }
        pool.ValidateInvariants();
    }
}
