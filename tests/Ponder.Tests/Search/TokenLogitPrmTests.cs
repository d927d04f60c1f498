using System.Text;
using Ponder.Hosting;
using Ponder.Models;
using Ponder.Models.Safetensors;
using Ponder.Sampling;
using Ponder.Search;
using Ponder.Search.Engine;
using Ponder.Tests.Hosting;
using Ponder.Tests.Scheduling;
using Ponder.TestSupport;
using Ponder.Tokenization;

namespace Ponder.Tests.Search;

/// <summary>
/// Token-logit PRMs (Math-Shepherd / RLHFlow style) behind the verifier abstraction: a causal LM checkpoint in Hugging
/// Face tensor names with a prm.json naming its step tag and {good, bad} candidates, mirrored with the tag after every
/// step and scored at the tag's last token; checked against a naive float64 forward of the whole mirrored text.
/// </summary>
public sealed class TokenLogitPrmTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ponder-token-logit-prm-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    const string Prompt = "Q: 12+34*5=\n";
    const string StepTag = " ки";      // Math-Shepherd's tag; 5 byte tokens with the raw-byte tokenizer
    const int Good = '+', Bad = '-';
    static readonly StepSampling Sampling = new(Temperature: 1f, Seed: 7, MaxStepTokens: 4);

    /// <summary>An LM over the hosting policy's 259-id byte vocabulary (a different, smaller backbone), untied: lm_head.weight.</summary>
    static ModelConfig PrmConfig => HostingTestModels.PolicyConfig with { DModel = 24, NHeads = 3, NKvHeads = 1, DFf = 40 };

    sealed record Checkpoint(string Folder, IReadOnlyDictionary<string, HostTensor> Tensors);

    Checkpoint Write(string name, string prmJson, ModelConfig? config = null, int seed = 21)
    {
        config ??= PrmConfig;
        var tensors = RandomModel.Create(config, seed);
        string folder = Path.Combine(_dir, name);
        SafetensorsWriter.WriteFolder(folder, config, tensors);
        if (prmJson.Length > 0) File.WriteAllText(Path.Combine(folder, PrmFormat.FileName), prmJson);
        return new Checkpoint(folder, tensors);
    }

    static PonderModel Load(string folder)
    {
        using var source = ModelFiles.Open(folder);
        return PonderModel.Load(source, new ByteTokenizer(PrmConfig.Vocab, PrmConfig.EosTokenIds), new ModelOptions { Threads = 1, KvCacheTokens = 4096, BlockSize = 8 });
    }

    const string TextFormat = """{"format": "token_logit", "step_tag": " ки", "good_token": "+", "bad_token": "-"}""";
    const string IdFormat = """{"format": "token_logit", "step_tag_ids": [32, 208, 186, 208, 184], "good_token_id": 43, "bad_token_id": 45}""";

    /// <summary>
    /// Naive float64 scores of one branch: the PRM run once on the whole mirrored text (prompt, then each step followed
    /// by the tag), each step's score the softmax probability of the good token among {good, bad} at its tag's last
    /// token; with the tolerance the engine's float32 logits allow there.
    /// </summary>
    static (double Score, double Tolerance)[] Reference(Checkpoint prm, EngineBranch branch, int[] tag)
    {
        var tokens = new List<int>(branch.Root.VerifierTokens);
        var tagEnds = new List<int>();
        int start = 0;
        foreach (int end in branch.StepEnds)
        {
            tokens.AddRange(branch.Generated.GetRange(start, end - start));
            tokens.AddRange(tag);
            tagEnds.Add(tokens.Count - 1);
            start = end;
        }
        var logits = ReferenceForward.Run(PrmConfig, prm.Tensors, [.. tokens]);
        return [.. tagEnds.Select(t =>
        {
            double good = logits[t, Good], bad = logits[t, Bad];
            double score = Math.Exp(good) / (Math.Exp(good) + Math.Exp(bad));
            // The engine's logits agree with float64 within Abs + Rel·|logit| (the forward tests' bound, 2e-4 + 1e-3·|l|);
            // d score / d(l_good - l_bad) = s(1 - s) <= 1/4, so the score is within 1/4 of the two logits' errors summed.
            double tolerance = 0.25 * (2 * 2e-4 + 1e-3 * (Math.Abs(good) + Math.Abs(bad)));
            return (score, tolerance);
        })];
    }

    [Fact]
    public async Task ScoresEqualANaiveForwardOfTheWholeTextAtEachTagAndFlopsAreExact()
    {
        var prmFiles = Write("text", TextFormat);
        using var policy = HostingTestModels.Policy();
        using var prm = Load(prmFiles.Folder);
        var verifier = Assert.IsType<TokenLogitVerifier>(StepVerifier.ForPrm(prm, policy.Scheduler));
        int[] tag = Encoding.UTF8.GetBytes(StepTag).Select(b => (int)b).ToArray();
        Assert.Equal(tag, verifier.StepTag);
        Assert.Equal((Good, Bad), (verifier.GoodToken, verifier.BadToken));
        var options = new SearchEngineOptions { IsFinalStep = _ => false };

        // One branch on fresh pools: the PRM's FLOPs are the prompt once, then each step with its tag, one output row,
        // by the independent token-by-token formula, and equal the backend's ledger.
        var before = prm.Backend.Flops.Snapshot();
        using (var single = new ScheduledSearchEngine(policy.Scheduler, policy.Scheduled, policy.Tokenizer!, verifier, options: options))
        {
            var b = (EngineBranch)single.Start(Prompt);
            for (int i = 0; i < 2; i++) await single.ExtendAsync([b], Sampling);
            Assert.Equal(new StepOutcome(1, 0, false), await single.ScoreAsync([b]));
            var report = Assert.Single(single.Request.Report().Models, m => m.Model == "prm");
            int p = b.Root.VerifierTokens.Length, s0 = b.StepEnds[0], s1 = b.StepEnds[1] - s0;
            // The prompt's prefill, like every submitted work, computes its last token's head row.
            long expected = NaiveFlops.Chunk(PrmConfig, p, 0, 1) + NaiveFlops.Chunk(PrmConfig, s0 + tag.Length, p, 1)
                + NaiveFlops.Chunk(PrmConfig, s1 + tag.Length, p + s0 + tag.Length, 1);
            Assert.Equal(expected, report.Flops.Total);
            Assert.Equal(prm.Backend.Flops.Since(before).Total, report.Flops.Total);
            Assert.Equal(2L * PrmConfig.DModel * PrmConfig.Vocab * 3, report.Flops.LmHead); // three LM head rows: prompt, two tags
            Assert.Equal(0, report.Flops.PrmHead);
            var reference = Reference(prmFiles, b, tag);
            Assert.Equal(2, b.StepScores.Count);
            for (int i = 0; i < 2; i++) Assert.True(Math.Abs(b.StepScores[i] - reference[i].Score) <= reference[i].Tolerance, $"step {i}: engine {b.StepScores[i]}, naive {reference[i].Score}");
            b.Dispose();
        }

        // Branches that fork between scorings: a fork's mirror continues from its parent's, tags included.
        using var engine = new ScheduledSearchEngine(policy.Scheduler, policy.Scheduled, policy.Tokenizer!, verifier, options: options);
        var branches = Enumerable.Range(0, 2).Select(_ => (EngineBranch)engine.Start(Prompt)).ToList();
        await engine.ExtendAsync(branches, Sampling);
        await engine.ScoreAsync(branches);
        var fork = (EngineBranch)branches[0].Fork();
        await engine.ExtendAsync([.. branches, fork], Sampling);
        await engine.ExtendAsync([fork], Sampling);
        await engine.ScoreAsync([.. branches, fork]);
        Assert.Equal(3, fork.StepScores.Count);
        Assert.Equal(branches[0].StepScores[0], fork.StepScores[0]);
        var all = new List<double>();
        foreach (var b in new[] { branches[0], branches[1], fork })
        {
            var reference = Reference(prmFiles, b, tag);
            Assert.Equal(reference.Length, b.StepScores.Count);
            for (int i = 0; i < reference.Length; i++)
                Assert.True(Math.Abs(b.StepScores[i] - reference[i].Score) <= reference[i].Tolerance, $"step {i}: engine {b.StepScores[i]}, naive {reference[i].Score}");
            all.AddRange(b.StepScores);
        }
        // Scores that all sat at 0.5 or at one value would not tell a wrong read position from the right one.
        Assert.True(all.Max() - all.Min() > 0.01, $"scores barely differ: {string.Join(", ", all)}");
        fork.Dispose();
        foreach (var b in branches) b.Dispose();
        engine.Dispose();
        HostingTestModels.AssertNoLeaks(policy);
        HostingTestModels.AssertNoLeaks(prm);
    }

    [Theory]
    [InlineData("best-of-n")]
    [InlineData("beam")]
    public async Task SearchesRunEndToEndThroughTheCompletionEngine(string strategy)
    {
        var prmFiles = Write("ids", IdFormat);
        using var policy = HostingTestModels.Policy();
        var prm = Load(prmFiles.Folder);
        using var engine = new CompletionEngine(policy, prm, ownsPrm: true);
        var (kind, selection) = StrategySpec.ParseName(strategy);
        var compute = new TestTimeComputeOptions { Strategy = new StrategySpec(kind, 4, Selection: selection), MaxStepTokens = 6, MaxRounds = 3 };
        var prmBefore = prm.Backend.Flops.Snapshot();
        var (_, report) = await engine.CompleteAsync(Prompt, new SamplingOptions { Seed = 7 }, compute);
        // Every forward's ledger already equalled the scheduler's prediction (VerifyFlops); the PRM's account is its ledger.
        var prmReport = Assert.Single(report.Flops.Models, m => m.Model == "prm");
        Assert.True(prmReport.Flops.LmHead > 0, "the PRM scored no step");
        Assert.Equal(0, prmReport.Flops.PrmHead);
        Assert.Equal(prm.Backend.Flops.Since(prmBefore).Total, prmReport.Flops.Total);
        HostingTestModels.AssertNoLeaks(policy);
        HostingTestModels.AssertNoLeaks(prm);
    }

    [Fact]
    public void BadPrmJsonNamesTheFileAndTheField()
    {
        var files = Write("bad", "");
        using var policy = HostingTestModels.Policy();
        using var prm = Load(files.Folder);
        string path = Path.Combine(files.Folder, PrmFormat.FileName);
        var scheduler = prm.Scheduler;
        string Fails<T>(string json) where T : Exception
        {
            File.WriteAllText(path, json);
            string message = Assert.Throws<T>(() => StepVerifier.ForPrm(prm, policy.Scheduler)).Message;
            Assert.Same(scheduler, prm.Scheduler); // checked before the PRM moves: nothing half-done
            return message;
        }
        Assert.Contains($"{path}: field 'format' = 'token_logt' is not supported (supported: value_head, token_logit)", Fails<InvalidDataException>("""{"format": "token_logt"}"""));
        Assert.Contains($"{path}: field 'format' is missing", Fails<InvalidDataException>("""{"step_tag": "x"}"""));
        Assert.Contains("step_tags", Fails<InvalidDataException>("""{"format": "token_logit", "step_tags": "x"}"""));
        Assert.Contains(path, Fails<InvalidDataException>("""{"format": "token_logit", "step_tags": "x"}"""));
        Assert.Contains($"{path}: give exactly one of 'step_tag' and 'step_tag_ids'",
            Fails<InvalidDataException>("""{"format": "token_logit", "step_tag": "x", "step_tag_ids": [1], "good_token_id": 43, "bad_token_id": 45}"""));
        Assert.Contains($"{path}: give exactly one of 'good_token' and 'good_token_id'",
            Fails<InvalidDataException>("""{"format": "token_logit", "step_tag": "x", "bad_token_id": 45}"""));
        Assert.Contains($"{path}: field 'good_token' encodes to 2 tokens (43, 43); a candidate must be one token",
            Fails<InvalidDataException>("""{"format": "token_logit", "step_tag": "x", "good_token": "++", "bad_token": "-"}"""));
        Assert.Contains($"{path}: field 'step_tag_ids': token 999 is outside the vocabulary (0..258)",
            Fails<InvalidDataException>("""{"format": "token_logit", "step_tag_ids": [999], "good_token_id": 43, "bad_token_id": 45}"""));
        Assert.Contains($"{path}: the good and bad candidates are the same token (43)",
            Fails<InvalidDataException>("""{"format": "token_logit", "step_tag": "x", "good_token": "+", "bad_token_id": 43}"""));
        Assert.Contains($"{path}: format 'value_head', but the model's config.json has a language-model head",
            Fails<InvalidDataException>("""{"format": "value_head"}"""));
        Assert.Contains($"{path}: field 'format'", Fails<InvalidDataException>("""{"format": 3}"""));
        File.Delete(path);
        Assert.Contains("is a language model without prm.json", Assert.Throws<ArgumentException>(() => StepVerifier.ForPrm(prm, policy.Scheduler)).Message);
        Assert.Same(scheduler, prm.Scheduler);

        // A value-head PRM needs no prm.json; with one, it must say value_head.
        var valueFiles = Write("value", "", HostingTestModels.PrmConfig, seed: 3);
        using var valuePrm = Load(valueFiles.Folder);
        Assert.IsType<ValueHeadVerifier>(StepVerifier.ForPrm(valuePrm));
        File.WriteAllText(Path.Combine(valueFiles.Folder, PrmFormat.FileName), """{"format": "value_head"}""");
        Assert.IsType<ValueHeadVerifier>(StepVerifier.ForPrm(valuePrm));
        File.WriteAllText(Path.Combine(valueFiles.Folder, PrmFormat.FileName), TextFormat);
        Assert.Contains("format 'token_logit' reads a language-model head's logits, but the model has a value head",
            Assert.Throws<InvalidDataException>(() => StepVerifier.ForPrm(valuePrm)).Message);

        // Qwen2.5-Math-PRM's architecture is refused by name, not loaded as something else.
        string qwenPrm = HostingTestModels.PolicyConfig.ToHuggingFaceJson().Replace("LlamaForCausalLM", "Qwen2ForProcessRewardModel");
        Assert.Contains("'Qwen2ForProcessRewardModel' (Qwen2.5-Math-PRM: score.0 / ReLU / score.2 head) is not supported yet",
            Assert.Throws<NotSupportedException>(() => ModelConfig.FromHuggingFaceJson(qwenPrm, "x/config.json")).Message);
    }
}
