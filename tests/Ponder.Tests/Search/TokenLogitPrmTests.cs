using System.Text;
using Ponder.Models;
using Ponder.Models.Safetensors;
using Ponder.Search.Engine;
using Ponder.Tests.Hosting;
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

    const string StepTag = " ки";      // Math-Shepherd's tag; 5 byte tokens with the raw-byte tokenizer
    const int Good = '+', Bad = '-';

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
    /// by the tag), each step's score the softmax probability of the good token among {good, bad} at its tag's last token.
    /// </summary>
    static (double Score, double Tolerance)[] Reference(Checkpoint prm, EngineBranch branch, int[] tag)
    {
        var (tokens, readAt) = MirroredPrmRig.MirrorText(branch, tag);
        var logits = ReferenceForward.Run(PrmConfig, prm.Tensors, tokens);
        return [.. readAt.Select(t =>
        {
            double good = logits[t, Good], bad = logits[t, Bad];
            return (Math.Exp(good) / (Math.Exp(good) + Math.Exp(bad)), MirroredPrmRig.SoftmaxTolerance(good, bad));
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
        var flops = await MirroredPrmRig.ScoresMatchTheReferenceAndFlopsAreExact(policy, prm, verifier, tag, b => Reference(prmFiles, b, tag));
        Assert.Equal(2L * PrmConfig.DModel * PrmConfig.Vocab * 3, flops.LmHead); // three LM head rows: prompt, two tags
        Assert.Equal(0, flops.PrmHead);
    }

    [Theory]
    [InlineData("best-of-n")]
    [InlineData("beam")]
    public async Task SearchesRunEndToEndThroughTheCompletionEngine(string strategy)
    {
        var prmFiles = Write("ids", IdFormat);
        using var policy = HostingTestModels.Policy();
        var flops = await MirroredPrmRig.SearchThroughTheCompletionEngine(policy, Load(prmFiles.Folder), strategy);
        Assert.True(flops.LmHead > 0, "the PRM scored no step");
        Assert.Equal(0, flops.PrmHead);
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
        Assert.Contains($"{path}: field 'format' = 'token_logt' is not supported (supported: value_head, process_reward, token_logit)", Fails<InvalidDataException>("""{"format": "token_logt"}"""));
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
        Assert.Contains($"{path}: format 'value_head', but the model has a language-model head",
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

    }
}
