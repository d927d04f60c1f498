using Ponder.Backends;
using Ponder.Cache;
using Ponder.Models;
using Ponder.Models.Gguf;
using Ponder.Models.Safetensors;
using Ponder.Scheduling;
using Ponder.Search;
using Ponder.Search.Engine;
using Ponder.Tests.Forward;
using Ponder.Tests.Scheduling;
using Ponder.TestSupport;

namespace Ponder.Tests.Search;

/// <summary>
/// The shared-backbone PRM: a causal LM whose head has one more row (the value row) after the vocabulary's, so each
/// forward returns the step score with the logits, and the engine's <see cref="SharedValueHeadVerifier"/> that reads it.
/// </summary>
public sealed class SharedValueHeadTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ponder-shared-vh-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    const string Prompt = "Q: 12+34*5=";   // 11 tokens (the rig's tokenizer: one per character)
    const int P = 11, StepTokens = 5;
    static readonly StepSampling Sampling = new(Temperature: 1f, Seed: 7, MaxStepTokens: StepTokens);
    static ModelConfig SharedPolicy => SchedulingRig.PolicyConfig with { SharedValueHead = true };

    [Fact]
    public void ConfigRoundTripsThroughJsonSafetensorsAndGguf()
    {
        var config = TestConfigs.TinySharedValueHead;
        var plain = TestConfigs.Tiny;
        Assert.Equal(plain.Vocab + 1, config.HeadRows);
        Assert.Equal(plain.TotalParameters + config.DModel, config.TotalParameters);
        Assert.Equal(plain.NonEmbeddingParameters + config.DModel, config.NonEmbeddingParameters);
        Assert.True(ModelConfig.FromHuggingFaceJson(config.ToHuggingFaceJson(), "config.json").SharedValueHead);
        Assert.Contains("\"ponder_value_head\": 1", config.ToHuggingFaceJson());
        Assert.False(ModelConfig.FromHuggingFaceJson(plain.ToHuggingFaceJson(), "config.json").SharedValueHead);

        var tensors = RandomModel.Create(config, seed: 4);
        Assert.Equal([1, config.DModel], tensors[TensorNames.SharedValueHead].Shape);
        string folder = Path.Combine(_dir, "st"), gguf = Path.Combine(_dir, "m.gguf");
        SafetensorsWriter.WriteFolder(folder, config, tensors);
        GgufWriter.Write(gguf, config, tensors);
        foreach (string path in new[] { folder, gguf })
        {
            using var source = ModelFiles.Open(path);
            Assert.True(source.Config.SharedValueHead, path);
            Assert.Equal(config.HeadRows, source.Config.HeadRows);
            var row = new float[config.DModel];
            source.ReadF32(TensorNames.SharedValueHead, row);
            Assert.Equal(tensors[TensorNames.SharedValueHead].Data, row);
        }
    }

    [Fact]
    public void BadSharedValueHeadConfigsNameTheProblem()
    {
        string json = TestConfigs.Tiny.ToHuggingFaceJson().Replace("\"vocab_size\"", "\"ponder_value_head\": 2, \"vocab_size\"");
        Assert.Contains("'ponder_value_head' = 2", Assert.Throws<InvalidDataException>(() => ModelConfig.FromHuggingFaceJson(json, "x/config.json")).Message);
        string prm = TestConfigs.TinyValueHead.ToHuggingFaceJson().Replace("\"vocab_size\"", "\"ponder_value_head\": 1, \"vocab_size\"");
        Assert.Contains("ponder_value_head is for causal language models", Assert.Throws<InvalidDataException>(() => ModelConfig.FromHuggingFaceJson(prm, "x/config.json")).Message);
        // A folder whose config declares the row but whose weights lack it fails naming the tensor.
        var config = TestConfigs.TinySharedValueHead;
        var tensors = RandomModel.Create(TestConfigs.Tiny, seed: 1);
        string folder = Path.Combine(_dir, "missing");
        SafetensorsWriter.WriteFolder(folder, TestConfigs.Tiny, tensors);
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToHuggingFaceJson());
        Assert.Contains("tensor 'value_head.weight' is missing (expected shape [1, 64] (1, dModel))",
            Assert.Throws<InvalidDataException>(() => ModelFiles.Open(folder)).Message);
    }

    [Fact]
    public void ValueLogitIsTheNormedFinalHiddenStateDotTheValueRow()
    {
        var config = TestConfigs.TinySharedValueHead;
        var tensors = RandomModel.Create(config, seed: 11);
        int[] tokens = RandomModel.Tokens(config, 19, seed: 5);
        using var h = new ForwardHarness(config, tensors, blockSize: 8);
        using var seq = new Sequence(h.Pool);
        var rows = h.Run(seq, tokens);

        // Naive float64: h = rmsnorm(x_L) with the final norm's weights, value = Σ_i h_i · w_i. x_L comes from the
        // reference forward; its value column is checked against this hand-written dot too.
        var reference = ReferenceForward.Run(config, tensors, tokens);
        var hidden = FinalNormedHidden(config, tensors, tokens);
        var w = tensors[TensorNames.SharedValueHead].Data;
        for (int t = 0; t < tokens.Length; t++)
        {
            double value = 0;
            for (int i = 0; i < config.DModel; i++) value += hidden[t][i] * w[i];
            Assert.Equal(config.HeadRows, rows[t].Length);
            Assert.Equal(value, reference[t, config.Vocab], 9);
            Assert.True(Math.Abs(rows[t][config.Vocab] - value) <= 2e-4 + 1e-3 * Math.Abs(value), $"position {t}: engine {rows[t][config.Vocab]}, naive {value}");
        }

        // The vocabulary's logits are those of the same model without the row.
        var plainTensors = new Dictionary<string, HostTensor>(tensors);
        plainTensors.Remove(TensorNames.SharedValueHead);
        using var p = new ForwardHarness(TestConfigs.Tiny, plainTensors, blockSize: 8);
        using var plainSeq = new Sequence(p.Pool);
        var plainRows = p.Run(plainSeq, tokens);
        for (int t = 0; t < tokens.Length; t++)
            Assert.Equal(plainRows[t], rows[t][..config.Vocab]);
    }

    /// <summary>rmsnorm(x_L) in float64, x_L from the reference's residual stream (the reference with a one-hot head: the identity).</summary>
    static double[][] FinalNormedHidden(ModelConfig config, IReadOnlyDictionary<string, HostTensor> tensors, int[] tokens)
    {
        // An untied LM head equal to the identity (vocab = dModel rows) makes the reference output the normed hidden state.
        var probe = config with { SharedValueHead = false, TiedEmbeddings = false };
        var identity = new HostTensor([config.Vocab, config.DModel]);
        for (int i = 0; i < config.DModel; i++) identity.Data[i * config.DModel + i] = 1;
        var withIdentity = new Dictionary<string, HostTensor>(tensors) { [TensorNames.LmHead] = identity };
        var o = ReferenceForward.Run(probe, withIdentity, tokens);
        return [.. Enumerable.Range(0, tokens.Length).Select(t => Enumerable.Range(0, config.DModel).Select(i => o[t, i]).ToArray())];
    }

    [Fact]
    public async Task SamplingWithTheValueRowGivesTheSameTokensAsWithout()
    {
        // The rig's random weights are drawn in TensorNames.Expected order, where the value row comes last: both
        // policies have the same trunk and LM head.
        using var plain = new SchedulingRig(policy: SchedulingRig.PolicyConfig);
        using var shared = new SchedulingRig(policy: SharedPolicy);
        using var a = plain.Engine();
        using var b = new ScheduledSearchEngine(shared.Scheduler, shared.Policy, shared.Tokenizer, new SharedValueHeadVerifier(shared.Policy));
        var ba = Enumerable.Range(0, 4).Select(_ => a.Start(Prompt)).ToList();
        var bb = Enumerable.Range(0, 4).Select(_ => b.Start(Prompt)).ToList();
        for (int i = 0; i < 3; i++) { await a.ExtendAsync(ba, Sampling); await b.ExtendAsync(bb, Sampling); }
        Assert.Equal(ba.Select(x => x.Text), bb.Select(x => x.Text));
        Assert.All(bb, x => Assert.Equal(3 * StepTokens, x.Text.Length));
        var texts = new HashSet<string>(bb.Select(x => x.Text));
        Assert.True(texts.Count > 1, "T = 1 sampling gave four identical branches: the test would not notice a sampler reading the value row");
    }

    [Fact]
    public async Task ScoresEqualADirectForwardsValueAtTheStepEnds()
    {
        using var rig = new SchedulingRig(policy: SharedPolicy);
        int steps = 0;
        var options = new SearchEngineOptions { IsFinalStep = _ => false };
        using var engine = new ScheduledSearchEngine(rig.Scheduler, rig.Policy, rig.Tokenizer, new SharedValueHeadVerifier(rig.Policy), options: options);
        var branches = Enumerable.Range(0, 2).Select(_ => engine.Start(Prompt)).ToList();
        for (; steps < 2; steps++) await engine.ExtendAsync(branches, Sampling);
        var fork = branches[0].Fork();
        await engine.ExtendAsync([fork], Sampling);
        Assert.All(branches, b => Assert.Empty(b.StepScores));
        Assert.Equal(new StepOutcome(3, 0, false), await engine.ScoreAsync([.. branches, fork]));
        Assert.Equal(3, fork.StepScores.Count);
        Assert.Equal(branches[0].StepScores, fork.StepScores.Take(2));

        // A final step: the engine then feeds its last token too (for its score), which it skips without the head.
        using var finalEngine = new ScheduledSearchEngine(rig.Scheduler, rig.Policy, rig.Tokenizer, new SharedValueHeadVerifier(rig.Policy),
            options: new SearchEngineOptions { IsFinalStep = _ => true, Name = "final" });
        var last = finalEngine.Start(Prompt);
        await finalEngine.ExtendAsync([last], Sampling);
        await finalEngine.ScoreAsync([last]);
        Assert.True(last.Finished);
        Assert.Single(last.StepScores);

        foreach (var (branch, nSteps) in new[] { (fork, 3), (last, 1) })
        {
            var tokens = rig.Tokenizer.Encode(Prompt).Concat(rig.Tokenizer.Encode(branch.Text)).ToArray();
            Assert.Equal(P + nSteps * StepTokens, tokens.Length);
            using var seq = new Sequence(rig.PolicyPool);
            seq.Append(tokens);
            var layout = new BatchLayout(rig.PolicyPool.BlockSize);
            layout.Add(0, tokens.Length, seq.BlockTable);
            int[] rows = [.. Enumerable.Range(1, nSteps).Select(s => P + s * StepTokens - 1)];
            int width = SharedPolicy.HeadRows;
            var output = new float[rows.Length * width];
            rig.Scheduler.RunExclusive(() => rig.PolicyTransformer.Forward(layout, tokens, rig.PolicyPool.Storage, rows, output));
            for (int i = 0; i < rows.Length; i++)
                Assert.Equal(1 / (1 + Math.Exp(-output[i * width + SharedPolicy.Vocab])), branch.StepScores[i], 5);
        }
        fork.Dispose();
        foreach (var b in branches) b.Dispose();
        last.Dispose();
        engine.Dispose();
        finalEngine.Dispose();
        rig.AssertNoLeaks();
    }

    [Fact]
    public async Task ExactFlopsOfASharedHeadSearchEqualTheLedgerAndNoPrmFlops()
    {
        using var rig = new SchedulingRig(policy: SharedPolicy);
        var before = rig.Backend.Flops.Snapshot();
        using var engine = new ScheduledSearchEngine(rig.Scheduler, rig.Policy, rig.Tokenizer, new SharedValueHeadVerifier(rig.Policy),
            options: new SearchEngineOptions { IsFinalStep = _ => false });
        var branches = Enumerable.Range(0, 3).Select(_ => engine.Start(Prompt)).ToList();
        for (int i = 0; i < 2; i++)
        {
            await engine.ExtendAsync(branches, Sampling);
            await engine.ScoreAsync(branches);
        }
        var report = engine.Request.Report();
        var policy = Assert.Single(report.Models);
        Assert.Equal("policy", policy.Model);
        Assert.Equal(0, report.Models.Sum(m => m.Flops.PrmHead));
        Assert.Equal(rig.Backend.Flops.Since(before).Total, policy.Flops.Total);
        // Independent formula: the prompt once, then every generated token decoded once with a vocab + 1 row head.
        long expected = NaiveFlops.Chunk(SharedPolicy, P, 0, 1);
        foreach (var b in branches)
        {
            int generated = b.Text.Length;
            Assert.Equal(2, b.StepScores.Count);
            for (int j = 0; j < generated; j++) expected += NaiveFlops.Chunk(SharedPolicy, 1, P + j, 1);
        }
        Assert.Equal(expected, policy.Flops.Total);
        Assert.Equal(2 * SharedPolicy.DModel * (long)(SharedPolicy.Vocab + 1) * (1 + 3 * 2 * StepTokens), policy.Flops.LmHead);
        foreach (var b in branches) b.Dispose();
    }

    [Fact]
    public void SharedVerifierNeedsTheRowAndThePolicyItself()
    {
        using var plain = new SchedulingRig();
        Assert.Contains("no shared value head", Assert.Throws<ArgumentException>(() => new SharedValueHeadVerifier(plain.Policy)).Message);
        using var shared = new SchedulingRig(policy: SharedPolicy);
        var other = new ScheduledModel("other", shared.PolicyTransformer, shared.PolicyPool);
        Assert.Contains("is not the policy", Assert.Throws<ArgumentException>(() =>
            new ScheduledSearchEngine(shared.Scheduler, shared.Policy, shared.Tokenizer, new SharedValueHeadVerifier(other))).Message);
        using var engine = new ScheduledSearchEngine(shared.Scheduler, shared.Policy, shared.Tokenizer, new SharedValueHeadVerifier(shared.Policy));
        Assert.Contains("policy's own context", Assert.Throws<ArgumentException>(() => engine.Start(Prompt, "Q: 1")).Message);
    }
}
