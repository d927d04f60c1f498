using Ponder.Backends;
using Ponder.Cache;
using Ponder.Models;
using Ponder.TestSupport;

namespace Ponder.Tests.Forward;

/// <summary>The CPU forward pass against the naive float64 reference, and its invariants under batching and caching.</summary>
public sealed class TransformerTests
{
    // Tolerance vs the float64 reference: f32 accumulation over dModel <= 128 and dFf <= 384 on O(1) activations
    // gives errors ~1e-5; 2e-4 absolute + 1e-3 relative leaves margin without hiding a wrong op (those err by >1e-2).
    const double Abs = 2e-4, Rel = 1e-3;

    public static TheoryData<string> Configs() => new(TestConfigs.Forward.Keys);

    [Theory, MemberData(nameof(Configs))]
    public void Prefill_matches_the_reference_at_every_position(string name)
    {
        var config = TestConfigs.Forward[name];
        var tensors = RandomModel.Create(config, seed: 11);
        int[] tokens = RandomModel.Tokens(config, 23, seed: 5);
        var expected = ReferenceForward.Run(config, tensors, tokens);

        using var h = new ForwardHarness(config, tensors, blockSize: 8);
        using var seq = new Sequence(h.Pool);
        var actual = h.Run(seq, tokens);

        for (int i = 0; i < tokens.Length; i++)
            TestTolerance.AssertClose(Row(expected, i), actual[i], Abs, Rel, $"{name} position {i}");
    }

    [Theory, MemberData(nameof(Configs))]
    public void Incremental_decoding_equals_full_recomputation(string name)
    {
        var config = TestConfigs.Forward[name];
        var tensors = RandomModel.Create(config, seed: 3);
        int[] tokens = RandomModel.Tokens(config, 30, seed: 9);
        var expected = ReferenceForward.Run(config, tensors, tokens);

        using var h = new ForwardHarness(config, tensors, blockSize: 4);
        using var seq = new Sequence(h.Pool);
        var rows = new List<float[]>(h.Run(seq, tokens[..5]));                 // prefill 5
        rows.AddRange(h.Run(seq, tokens[5..12]));                              // a chunk of 7 (ends mid-block)
        for (int i = 12; i < tokens.Length; i++) rows.AddRange(h.Run(seq, [tokens[i]]));  // decode one at a time

        for (int i = 0; i < tokens.Length; i++)
            TestTolerance.AssertClose(Row(expected, i), rows[i], Abs, Rel, $"{name} position {i}");
    }

    [Fact]
    public void Attention_split_across_threads_gives_the_same_bits()
    {
        // Small shapes run attention on the calling thread; forcing the split (work items on the GEMM workers) must not
        // change a bit: an item's arithmetic does not depend on which thread runs it.
        var config = TestConfigs.Tiny;
        var tensors = RandomModel.Create(config, seed: 4);
        int[] tokens = RandomModel.Tokens(config, 40, seed: 6);
        List<float[]> Run()
        {
            using var h = new ForwardHarness(config, tensors, blockSize: 8);
            using var seq = new Sequence(h.Pool);
            var rows = new List<float[]>(h.Run(seq, tokens[..33]));
            for (int i = 33; i < tokens.Length; i++) rows.AddRange(h.Run(seq, [tokens[i]]));
            return rows;
        }
        var alone = Run();
        long saved = Backends.Cpu.Attention.PagedAttention.ParallelFlops;
        Backends.Cpu.Attention.PagedAttention.ParallelFlops = 0;
        try
        {
            var split = Run();
            for (int i = 0; i < tokens.Length; i++)
                Assert.True(alone[i].AsSpan().SequenceEqual(split[i]), $"position {i}: logits differ when attention is split across threads");
        }
        finally { Backends.Cpu.Attention.PagedAttention.ParallelFlops = saved; }
    }

    [Fact]
    public void A_batch_of_sequences_equals_each_run_alone()
    {
        var config = TestConfigs.Tiny;
        var tensors = RandomModel.Create(config, seed: 21);
        int[][] prompts = [RandomModel.Tokens(config, 13, 1), RandomModel.Tokens(config, 3, 2), RandomModel.Tokens(config, 17, 3)];

        using var h = new ForwardHarness(config, tensors, blockSize: 4);
        var seqs = prompts.Select(_ => new Sequence(h.Pool)).ToArray();
        // Round 1: sequence 0 and 1 prefill; round 2: 0 decodes, 1 prefills a chunk, 2 prefills all.
        var r1 = h.Run([(seqs[0], prompts[0][..10]), (seqs[1], prompts[1][..1])]);
        var r2 = h.Run([(seqs[0], prompts[0][10..11]), (seqs[1], prompts[1][1..]), (seqs[2], prompts[2])]);
        var batched = new[] { r1[..10].Concat(r2[..1]).ToArray(), r1[10..].Concat(r2[1..3]).ToArray(), r2[3..] };

        for (int s = 0; s < prompts.Length; s++)
        {
            int used = batched[s].Length;
            var expected = ReferenceForward.Run(config, tensors, prompts[s][..used]);
            for (int i = 0; i < used; i++)
                TestTolerance.AssertClose(Row(expected, i), batched[s][i], Abs, Rel, $"sequence {s} position {i}");
        }
        foreach (var s in seqs) s.Dispose();
        Assert.Equal(h.Pool.BlockCount, h.Pool.FreeBlocks);
    }

    [Fact]
    public void Backend_FLOP_counts_equal_the_formula_worked_by_hand()
    {
        // Tiny: d = 64, h = 4, g = 2, e = 16, f = 176, V = 259, L = 2 (see TestConfigs).
        var c = TestConfigs.Tiny;
        using var h = new ForwardHarness(c, RandomModel.Create(c, 1), blockSize: 4);
        using var seq = new Sequence(h.Pool);
        h.Run(seq, RandomModel.Tokens(c, 6, 1));        // n = 6, p = 0: K = 21, outputs at 6 rows
        var before = h.Backend.Flops.Snapshot();
        h.Run(seq, RandomModel.Tokens(c, 3, 2));        // n = 3, p = 6: K = 3*6 + 3*4/2 = 24, outputs at 3 rows
        var flops = h.Backend.Flops.Since(before);

        long d = c.DModel, he = c.NHeads * c.HeadDim, ge = c.NKvHeads * c.HeadDim, f = c.DFf, L = c.NLayers;
        long perToken = 2 * d * (he + 2 * ge) + 2 * he * d + 2 * 3 * d * f;
        Assert.Equal(L * 3 * perToken, flops[FlopCategory.Projection]);
        Assert.Equal(L * 4 * he * 24, flops[FlopCategory.Attention]);
        Assert.Equal(3 * 2 * d * c.Vocab, flops[FlopCategory.LmHead]);
        Assert.Equal(0, flops[FlopCategory.PrmHead]);
    }

    [Fact]
    public void Value_head_scores_are_charged_to_the_PRM_head()
    {
        var c = TestConfigs.TinyValueHead;
        using var h = new ForwardHarness(c, RandomModel.Create(c, 1));
        using var seq = new Sequence(h.Pool);
        var rows = h.Run(seq, RandomModel.Tokens(c, 5, 1));
        Assert.Equal(c.NumLabels, rows[0].Length);
        Assert.Equal(5 * 2L * c.DModel * c.NumLabels, h.Backend.Flops[FlopCategory.PrmHead]);
        Assert.Equal(0, h.Backend.Flops[FlopCategory.LmHead]);
    }

    [Fact]
    public void A_token_outside_the_vocabulary_is_rejected_with_its_row()
    {
        var c = TestConfigs.Tiny;
        using var h = new ForwardHarness(c, RandomModel.Create(c, 1));
        using var seq = new Sequence(h.Pool);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => h.Run(seq, [1, 2, c.Vocab + 5]));
        Assert.Contains($"token id {c.Vocab + 5} at batch row 2", e.Message);
    }

    [Fact]
    public void Loading_names_a_missing_or_misshapen_tensor()
    {
        var c = TestConfigs.Tiny;
        var tensors = RandomModel.Create(c, 1);
        tensors.Remove(TensorNames.Up(1));
        var e = Assert.Throws<InvalidDataException>(() => new Transformer(new Backends.Cpu.CpuBackend(), new HostTensorSource(c, tensors, "test-model")));
        Assert.Contains("model.layers.1.mlp.up_proj.weight", e.Message);
        Assert.Contains("missing", e.Message);

        tensors = RandomModel.Create(c, 1);
        tensors[TensorNames.K(0)] = new HostTensor([c.KvDim + 1, c.DModel]);
        e = Assert.Throws<InvalidDataException>(() => new Transformer(new Backends.Cpu.CpuBackend(), new HostTensorSource(c, tensors, "test-model")));
        Assert.Contains("model.layers.0.self_attn.k_proj.weight", e.Message);
        Assert.Contains($"[{c.KvDim + 1}, {c.DModel}]", e.Message);
    }

    [Fact]
    public void Causal_key_count_matches_the_closed_form()
    {
        var batch = new BatchLayout(blockSize: 4);
        batch.Add(contextLength: 0, newTokens: 5, blockTable: [0, 1]);     // 5*6/2 = 15
        batch.Add(contextLength: 7, newTokens: 1, blockTable: [2, 3]);     // 7 + 1 = 8
        batch.Add(contextLength: 3, newTokens: 4, blockTable: [4, 5]);     // 4*3 + 10 = 22
        Assert.Equal(15 + 8 + 22, batch.CausalKeys);
        Assert.Equal(10, batch.TokenCount);
        Assert.Equal([0, 1, 2, 3, 4, 7, 3, 4, 5, 6], batch.Positions.ToArray());
        // Slot = block * 4 + position % 4: sequence 1's position 7 is in its second block (3), slot 3.
        Assert.Equal(3 * 4 + 3, batch.Slots[5]);
        Assert.Throws<ArgumentException>(() => batch.Add(contextLength: 8, newTokens: 1, blockTable: [6, 7]));
    }

    static double[] Row(double[,] a, int i) => Enumerable.Range(0, a.GetLength(1)).Select(j => a[i, j]).ToArray();
}
