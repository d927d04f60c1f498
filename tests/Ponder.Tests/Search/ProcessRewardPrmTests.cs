using System.Text.Json.Nodes;
using Ponder.Models;
using Ponder.Models.Gguf;
using Ponder.Models.Safetensors;
using Ponder.Scheduling;
using Ponder.Search.Engine;
using Ponder.Tests.Hosting;
using Ponder.Tests.Scheduling;
using Ponder.TestSupport;
using Ponder.Tokenization;

namespace Ponder.Tests.Search;

/// <summary>
/// Qwen2.5-Math-PRM's head (<c>Qwen2ForProcessRewardModel</c>: score.0, ReLU, score.2 on a Qwen2 body) behind the
/// verifier abstraction: a random-weight checkpoint with the real tensor names, a config.json as transformers writes it
/// and a byte-level tokenizer.json with <c>&lt;extra_0&gt;</c> as an added token; mirrored with the separator after every
/// step and scored there; checked against a naive float64 forward of the whole mirrored text.
/// </summary>
public sealed class ProcessRewardPrmTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ponder-process-reward-prm-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The separator's id in the test tokenizer: after the byte ids and the policy's three specials.</summary>
    const int Separator = 259;

    /// <summary>A Qwen2 PRM over the hosting policy's byte ids plus the separator (vocab 260); a smaller backbone.</summary>
    static ModelConfig PrmConfig => HostingTestModels.PolicyConfig with
    {
        Architecture = Architecture.Qwen2, QkvBias = true, Head = HeadKind.ProcessReward, NumLabels = 2,
        Vocab = 260, DModel = 24, NHeads = 3, NKvHeads = 1, DFf = 40,
    };

    sealed record Checkpoint(string Folder, IReadOnlyDictionary<string, HostTensor> Tensors);

    Checkpoint Write(string name, string prmJson = "", int seed = 21, bool tokenizer = true)
    {
        var tensors = RandomModel.Create(PrmConfig, seed);
        string folder = Path.Combine(_dir, name);
        SafetensorsWriter.WriteFolder(folder, PrmConfig, tensors);
        if (tokenizer) File.WriteAllText(Path.Combine(folder, "tokenizer.json"), TokenizerJson());
        if (prmJson.Length > 0) File.WriteAllText(Path.Combine(folder, PrmFormat.FileName), prmJson);
        return new Checkpoint(folder, tensors);
    }

    /// <summary>
    /// A byte-level BPE tokenizer.json without merges whose ids are the raw bytes (as the policy's byte tokenizer), with
    /// the policy's three specials and <c>&lt;extra_0&gt;</c> as added tokens, as Qwen2.5-Math-PRM's tokenizer has it.
    /// </summary>
    static string TokenizerJson()
    {
        // GPT-2's byte-to-unicode table: printable Latin-1 bytes stand for themselves, the rest map to 256 + k in order.
        var vocab = new JsonObject();
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            vocab[((char)(printable ? b : 256 + next++)).ToString()] = b;
        }
        JsonObject Added(string content, int id) => new() { ["id"] = id, ["content"] = content, ["special"] = true, ["normalized"] = false };
        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(Added("<|bos|>", 256), Added("<|eos|>", 257), Added("<|pad|>", 258), Added("<extra_0>", Separator)),
            ["pre_tokenizer"] = byteLevel.DeepClone(),
            ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = new JsonArray() },
        }.ToJsonString();
    }

    static Task<PonderModel> Load(string folder) =>
        PonderModel.LoadAsync(folder, new ModelOptions { Threads = 1, KvCacheTokens = 4096, BlockSize = 8 });

    /// <summary>
    /// Naive float64 scores of one branch: the PRM run once on the whole mirrored text (prompt, then each step followed by
    /// the separator), each step's score the softmax probability of label 1 at its separator, as the model card reads
    /// the reward at every separator. The head's outputs are within the forward tests' bound
    /// (<see cref="HeadOutputsMatchTheReferenceAtEveryPosition"/>), hence the softmax tolerance.
    /// </summary>
    static (double Score, double Tolerance)[] Reference(Checkpoint prm, EngineBranch branch, IReadOnlyList<int> separator)
    {
        var (tokens, readAt) = MirroredPrmRig.MirrorText(branch, separator);
        var outputs = ReferenceForward.Run(PrmConfig, prm.Tensors, tokens);
        return [.. readAt.Select(t =>
        {
            double wrong = outputs[t, 0], right = outputs[t, 1];
            return (Math.Exp(right) / (Math.Exp(wrong) + Math.Exp(right)), MirroredPrmRig.SoftmaxTolerance(wrong, right));
        })];
    }

    /// <summary>
    /// The forward pass with the process reward head against the float64 reference at every position of a prompt
    /// prefilled in two chunks and decoded token by token, on the bound the forward tests use (2e-4 + 1e-3·|o|: f32
    /// accumulation over dModel and dFf of O(1) activations errs ~1e-5; a wrong op errs by more than 1e-2).
    /// </summary>
    [Fact]
    public void HeadOutputsMatchTheReferenceAtEveryPosition()
    {
        var config = TestConfigs.TinyProcessReward;
        var tensors = RandomModel.Create(config, seed: 11);
        int[] tokens = RandomModel.Tokens(config, 23, seed: 5);
        var expected = ReferenceForward.Run(config, tensors, tokens);
        using var h = new Forward.ForwardHarness(config, tensors, blockSize: 8);
        using var seq = new Ponder.Cache.Sequence(h.Pool);
        var rows = new List<float[]>(h.Run(seq, tokens[..9]));
        rows.AddRange(h.Run(seq, tokens[9..20]));
        for (int i = 20; i < tokens.Length; i++) rows.AddRange(h.Run(seq, [tokens[i]]));
        var margins = new List<double>();
        for (int i = 0; i < tokens.Length; i++)
        {
            var row = Enumerable.Range(0, 2).Select(r => expected[i, r]).ToArray();
            TestTolerance.AssertClose(row, [.. rows[i].Select(v => (double)v)], 2e-4, 1e-3, $"position {i}");
            margins.Add(row[1] - row[0]);
        }
        Assert.True(margins.Max() - margins.Min() > 0.1, "the two labels' margin barely varies over positions");
    }

    /// <summary>
    /// Hand-worked head FLOPs (d = 24, 2 labels) per output row: score.0 2·24·24 = 1152 and score.2 2·24·2 = 96 (PRM head),
    /// score.0's bias 24 + ReLU 24 + score.2's bias 2 + the final norm 4·24 = 146 element-wise; the rest as any Qwen2.
    /// </summary>
    [Fact]
    public void HeadFlopsAreTheHandWorkedTerms()
    {
        var counter = new FlopCounter(PrmConfig);
        var lm = new FlopCounter(PrmConfig with { Head = HeadKind.LanguageModel, TiedEmbeddings = true });
        var withHead = counter.Chunk(5, 3, 1);
        var without = lm.Chunk(5, 3, 0);
        Assert.Equal(1152 + 96, withHead.PrmHead);
        Assert.Equal(0, withHead.LmHead);
        Assert.Equal(146, withHead.Elementwise - without.Elementwise);
        Assert.Equal(without.Projection, withHead.Projection);
        Assert.Equal(NaiveFlops.Chunk(PrmConfig, 5, 3, 1), withHead.Total);
        // Only output rows pay for the head: a chunk without outputs costs what the LM body costs.
        Assert.Equal(without, counter.Chunk(5, 3, 0));
    }

    [Fact]
    public async Task ScoresEqualANaiveForwardOfTheWholeTextAtEachSeparatorAndFlopsAreExact()
    {
        var prmFiles = Write("prm");
        using var policy = HostingTestModels.Policy();
        using var prm = await Load(prmFiles.Folder);
        Assert.Equal(HeadKind.ProcessReward, prm.Config.Head);
        var verifier = Assert.IsType<ProcessRewardVerifier>(StepVerifier.ForPrm(prm, policy.Scheduler)); // no prm.json: from config.json
        Assert.Equal(new[] { Separator }, verifier.Separator);
        var flops = await MirroredPrmRig.ScoresMatchTheReferenceAndFlopsAreExact(policy, prm, verifier, verifier.Separator, b => Reference(prmFiles, b, verifier.Separator));
        Assert.Equal(HeadRowFlops * 3, flops.PrmHead); // three head rows: prompt, two separators
        Assert.Equal(0, flops.LmHead);
    }

    /// <summary>score.0 and score.2 at one output row: 2·d·d + 2·d·2.</summary>
    static long HeadRowFlops => 2L * PrmConfig.DModel * PrmConfig.DModel + 2L * PrmConfig.DModel * 2;

    [Theory]
    [InlineData("best-of-n")]
    [InlineData("beam")]
    public async Task SearchesRunEndToEndThroughTheCompletionEngine(string strategy)
    {
        var prmFiles = Write("prm");
        using var policy = HostingTestModels.Policy();
        var flops = await MirroredPrmRig.SearchThroughTheCompletionEngine(policy, await Load(prmFiles.Folder), strategy);
        Assert.True(flops.PrmHead > 0, "the PRM scored no step");
        Assert.Equal(0, flops.LmHead);
        // Every PRM forward reads one head row per scored chunk: the head's FLOPs are a whole number of rows.
        Assert.Equal(0, flops.PrmHead % HeadRowFlops);
    }

    [Fact]
    public async Task PrmJsonMayOverrideTheSeparatorAndBadInputIsNamed()
    {
        var files = Write("override");
        using var policy = HostingTestModels.Policy();
        using var prm = await Load(files.Folder);
        string path = Path.Combine(files.Folder, PrmFormat.FileName);
        var scheduler = prm.Scheduler;
        StepVerifier With(string json) { File.WriteAllText(path, json); return StepVerifier.ForPrm(prm); }
        string Fails(string json)
        {
            File.WriteAllText(path, json);
            string message = Assert.Throws<InvalidDataException>(() => StepVerifier.ForPrm(prm, policy.Scheduler)).Message;
            Assert.Same(scheduler, prm.Scheduler); // checked before the PRM moves: nothing half-done
            return message;
        }
        Assert.Equal(new[] { Separator }, Assert.IsType<ProcessRewardVerifier>(With("""{"format": "process_reward"}""")).Separator);
        Assert.Equal(new[] { 10, 10 }, Assert.IsType<ProcessRewardVerifier>(With("""{"format": "process_reward", "step_tag": "\n\n"}""")).Separator);
        Assert.Equal(new[] { Separator }, Assert.IsType<ProcessRewardVerifier>(With("""{"format": "process_reward", "step_tag": "<extra_0>"}""")).Separator);
        Assert.Equal(new[] { 7, 8 }, Assert.IsType<ProcessRewardVerifier>(With("""{"format": "process_reward", "step_tag_ids": [7, 8]}""")).Separator);
        Assert.Contains($"{path}: field 'step_tag_ids': token 260 is outside the vocabulary (0..259)", Fails("""{"format": "process_reward", "step_tag_ids": [260]}"""));
        Assert.Contains($"{path}: format 'process_reward' reads the head's two labels; it takes no candidate tokens", Fails("""{"format": "process_reward", "good_token": "+"}"""));
        Assert.Contains($"{path}: format 'value_head', but the model has a process reward head (score.0 / ReLU / score.2)", Fails("""{"format": "value_head"}"""));
        Assert.Contains($"{path}: format 'token_logit' reads a language-model head's logits, but the model has a process reward head", Fails("""{"format": "token_logit", "step_tag": "x", "good_token": "+", "bad_token": "-"}"""));
        File.Delete(path);

        // A tokenizer that does not know the separator as one token is refused by name, not read at the wrong place.
        var raw = Write("no-tokenizer", tokenizer: false);
        using (var source = ModelFiles.Open(raw.Folder))
        using (var bytes = PonderModel.Load(source, new ByteTokenizer(PrmConfig.Vocab), new ModelOptions { Threads = 1, KvCacheTokens = 256, BlockSize = 8 }))
        {
            Assert.Contains("the separator '<extra_0>' encodes to 9 tokens (60, 101, 120, 116, 114, 97, 95, 48)",
                Assert.Throws<InvalidDataException>(() => StepVerifier.ForPrm(bytes)).Message);
            File.WriteAllText(Path.Combine(raw.Folder, PrmFormat.FileName), $$"""{"format": "process_reward", "step_tag_ids": [{{Separator}}]}""");
            Assert.Equal(new[] { Separator }, Assert.IsType<ProcessRewardVerifier>(StepVerifier.ForPrm(bytes)).Separator);
        }

        // Verifiers built by hand on the wrong head say which head the model has.
        Assert.Contains("has a ProcessReward head; a value-head verifier needs a value head", Assert.Throws<ArgumentException>(() => new ValueHeadVerifier(prm.Scheduled)).Message);
        Assert.Contains("has a LanguageModel head; a process-reward verifier needs score.0 / ReLU / score.2",
            Assert.Throws<ArgumentException>(() => new ProcessRewardVerifier(policy.Scheduled, [Separator])).Message);
        Assert.Contains("the separator has no tokens", Assert.Throws<ArgumentException>(() => new ProcessRewardVerifier(prm.Scheduled, [])).Message);

        // An unknown format is named with the supported ones.
        Assert.Contains("(supported: value_head, process_reward, token_logit)", Fails("""{"format": "prm"}"""));
    }

    /// <summary>
    /// A config.json shaped as Qwen2.5-Math-PRM's (remote-code auto_map, no num_labels: transformers' default of 2, a
    /// sliding window that is off) loads; impossible heads are refused by field or tensor.
    /// </summary>
    [Fact]
    public void ConfigAndTensorsAreCheckedByName()
    {
        const string shipped = """
            {"architectures": ["Qwen2ForProcessRewardModel"], "auto_map": {"AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
             "AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}, "attention_dropout": 0.0, "bos_token_id": 151643,
             "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 96,
             "max_position_embeddings": 4096, "max_window_layers": 28, "model_type": "qwen2", "num_attention_heads": 4,
             "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 10000.0,
             "sliding_window": 4096, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true,
             "use_sliding_window": false, "vocab_size": 152064}
            """;
        var parsed = ModelConfig.FromHuggingFaceJson(shipped, "x/config.json");
        Assert.Equal((HeadKind.ProcessReward, 2, Architecture.Qwen2, true, 4096), (parsed.Head, parsed.NumLabels, parsed.Architecture, parsed.QkvBias, parsed.MaxPositions));
        Assert.Equal(2, parsed.HeadRows);
        string json = PrmConfig.ToHuggingFaceJson();
        Assert.Contains("\"Qwen2ForProcessRewardModel\"", json); // what Ponder writes reads back as the same head
        var written = ModelConfig.FromHuggingFaceJson(json, "x/config.json");
        Assert.Equal((PrmConfig.Head, PrmConfig.NumLabels, PrmConfig.Architecture), (written.Head, written.NumLabels, written.Architecture));
        Assert.Contains("x/config.json: num_labels = 3; a process reward head (score.2) classifies each step into 2 labels",
            Assert.Throws<InvalidDataException>(() => ModelConfig.FromHuggingFaceJson(json.Replace("\"num_labels\": 2", "\"num_labels\": 3"), "x/config.json")).Message);
        Assert.Equal(PrmConfig.DModel * (PrmConfig.DModel + 1L) + 2 * (PrmConfig.DModel + 1L), PrmConfig.HeadParameters);

        // A missing or misshapen head tensor is named; an LM head beside the reward head (kept by some fine-tunes) is
        // allowed and not read; a tensor the forward would ignore (a value head's score.weight) is refused.
        var tensors = RandomModel.Create(PrmConfig, 3);
        string LoadFails<T>(Action<Dictionary<string, HostTensor>> edit) where T : Exception
        {
            var t = new Dictionary<string, HostTensor>(tensors);
            edit(t);
            using var backend = new Backends.Cpu.CpuBackend(1);
            return Assert.Throws<T>(() => new Transformer(backend, new HostTensorSource(PrmConfig, t, "prm"))).Message;
        }
        Assert.Contains("prm: tensor 'score.2.bias' has shape [3], expected [2] (numLabels)",
            LoadFails<InvalidDataException>(t => t[TensorNames.PrmOutputBias] = new HostTensor([3])));
        Assert.Contains("prm: tensor 'score.0.bias' is missing (expected shape [24] (dModel))",
            LoadFails<InvalidDataException>(t => t.Remove(TensorNames.PrmHiddenBias)));
        Assert.Contains("prm: tensor 'score.weight' is not part of a Qwen2 model",
            LoadFails<NotSupportedException>(t => t[TensorNames.ValueHead] = new HostTensor([1, PrmConfig.DModel])));
        var withLmHead = new Dictionary<string, HostTensor>(tensors) { [TensorNames.LmHead] = new HostTensor([PrmConfig.Vocab, PrmConfig.DModel]) };
        string folder = Path.Combine(_dir, "lm-head");
        SafetensorsWriter.WriteFolder(folder, PrmConfig, withLmHead);
        using (var backend = new Backends.Cpu.CpuBackend(1))
        using (var source = ModelFiles.Open(folder))
        using (var model = new Transformer(backend, source))
            Assert.Equal(2, model.Config.HeadRows);

        // GGUF has no form for this head: the writer refuses rather than write a file only Ponder could read.
        Assert.Contains("has no GGUF form", Assert.Throws<NotSupportedException>(() => GgufWriter.Write(Path.Combine(_dir, "x.gguf"), PrmConfig, tensors)).Message);
    }

    /// <summary>prm.json beside a .gguf file is read, as in a model folder.</summary>
    [Fact]
    public void PrmJsonBesideAGgufFileIsRead()
    {
        var config = HostingTestModels.PolicyConfig with { DModel = 32, NHeads = 4, NKvHeads = 2, DFf = 48 };
        string folder = Directory.CreateDirectory(Path.Combine(_dir, "gguf")).FullName;
        string file = Path.Combine(folder, "token-logit-prm.gguf");
        GgufWriter.Write(file, config, RandomModel.Create(config, 5));
        File.WriteAllText(Path.Combine(folder, PrmFormat.FileName), """{"format": "token_logit", "step_tag_ids": [10], "good_token_id": 43, "bad_token_id": 45}""");
        using var source = ModelFiles.Open(file);
        using var prm = PonderModel.Load(source, new ByteTokenizer(config.Vocab, config.EosTokenIds), new ModelOptions { Threads = 1, KvCacheTokens = 256, BlockSize = 8 });
        Assert.Equal(file, prm.Location);
        var verifier = Assert.IsType<TokenLogitVerifier>(StepVerifier.ForPrm(prm));
        Assert.Equal(new[] { 10 }, verifier.StepTag);
        Assert.Equal((43, 45), (verifier.GoodToken, verifier.BadToken));
        File.WriteAllText(Path.Combine(folder, PrmFormat.FileName), """{"format": "value_head"}""");
        Assert.Contains($"{Path.Combine(folder, PrmFormat.FileName)}: format 'value_head', but the model has a language-model head",
            Assert.Throws<InvalidDataException>(() => StepVerifier.ForPrm(prm)).Message);
    }
}
