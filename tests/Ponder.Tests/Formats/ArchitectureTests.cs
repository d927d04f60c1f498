using System.Text;
using System.Text.Json.Nodes;
using Ponder.Cache;
using Ponder.Models;
using Ponder.TestSupport;
using Ponder.Tests.Forward;

namespace Ponder.Tests.Formats;

/// <summary>
/// Phi-3's fused projections load into the usual Q/K/V and gate/up weights; config fields the forward pass does not
/// implement are refused by name instead of being computed wrongly; a sliding window caps the context.
/// </summary>
public sealed class ArchitectureTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ponder-arch-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static readonly ModelConfig Phi3 = TestConfigs.TinyUntied with { Architecture = Architecture.Phi3, MaxPositions = 256 };

    /// <summary>Writes f32 tensors as one safetensors file plus <paramref name="configJson"/>.</summary>
    static string WriteFolder(string dir, string configJson, IEnumerable<(string Name, float[] Data, int[] Shape)> tensors)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), configJson);
        var header = new JsonObject();
        long offset = 0;
        var list = tensors.ToList();
        foreach (var (name, data, shape) in list)
        {
            header[name] = new JsonObject
            {
                ["dtype"] = "F32",
                ["shape"] = new JsonArray(shape.Select(s => (JsonNode)s).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + data.Length * 4L),
            };
            offset += data.Length * 4L;
        }
        byte[] json = Encoding.UTF8.GetBytes(header.ToJsonString());
        using var w = new BinaryWriter(File.Create(Path.Combine(dir, "model.safetensors")));
        w.Write((ulong)json.Length);
        w.Write(json);
        foreach (var (_, data, _) in list) foreach (float v in data) w.Write(v);
        return dir;
    }

    static IEnumerable<(string, float[], int[])> Fused(ModelConfig c, Dictionary<string, HostTensor> t)
    {
        var fusedAway = new HashSet<string>();
        for (int l = 0; l < c.NLayers; l++)
        {
            string[] qkv = [TensorNames.Q(l), TensorNames.K(l), TensorNames.V(l)], gateUp = [TensorNames.Gate(l), TensorNames.Up(l)];
            yield return (TensorNames.FusedQkv(l), [.. qkv.SelectMany(n => t[n].Data)], [c.QDim + 2 * c.KvDim, c.DModel]);
            yield return (TensorNames.FusedGateUp(l), [.. gateUp.SelectMany(n => t[n].Data)], [2 * c.DFf, c.DModel]);
            fusedAway.UnionWith(qkv); fusedAway.UnionWith(gateUp);
        }
        foreach (var (name, h) in t)
            if (!fusedAway.Contains(name)) yield return (name, h.Data, h.Shape);
    }

    [Fact]
    public void Phi3_fused_qkv_and_gate_up_give_the_reference_logits()
    {
        var tensors = RandomModel.Create(Phi3, seed: 13);
        string dir = WriteFolder(Path.Combine(_dir, "phi3"), Phi3.ToHuggingFaceJson(), Fused(Phi3, tensors));
        int[] tokens = RandomModel.Tokens(Phi3, 17, seed: 4);
        var expected = ReferenceForward.Run(Phi3, tensors, tokens);

        using var source = ModelFiles.Open(dir);
        Assert.Equal(Architecture.Phi3, source.Config.Architecture);
        Assert.DoesNotContain(source.Tensors.Keys, n => n.Contains("qkv_proj") || n.Contains("gate_up_proj"));
        using var h = new ForwardHarness(source);
        using var seq = new Sequence(h.Pool);
        var actual = h.Run(seq, tokens);
        // As TransformerTests: f32 accumulation errors ~1e-5; a wrong split errs by O(1).
        for (int t = 0; t < tokens.Length; t++)
            TestTolerance.AssertClose([.. Enumerable.Range(0, Phi3.Vocab).Select(v => expected[t, v])], actual[t], 2e-4, 1e-3, $"Phi-3 position {t}");
    }

    [Fact]
    public void A_fused_projection_of_the_wrong_height_is_refused_by_name()
    {
        var tensors = RandomModel.Create(Phi3, seed: 1);
        var files = Fused(Phi3, tensors).Select(x => x.Item1 == TensorNames.FusedQkv(1) ? (x.Item1, x.Item2[..^Phi3.DModel], new[] { x.Item3[0] - 1, x.Item3[1] }) : x);
        string dir = WriteFolder(Path.Combine(_dir, "bad"), Phi3.ToHuggingFaceJson(), files);
        var e = Assert.Throws<InvalidDataException>(() => ModelFiles.Open(dir));
        Assert.Contains("'model.layers.1.self_attn.qkv_proj.weight' has shape [191, 64], expected [192, 64]", e.Message);
    }

    static string Config(Action<JsonObject> edit, ModelConfig? config = null)
    {
        var obj = JsonNode.Parse((config ?? TestConfigs.Tiny).ToHuggingFaceJson())!.AsObject();
        edit(obj);
        return obj.ToJsonString();
    }

    [Theory]
    [InlineData("hidden_act", "\"gelu_pytorch_tanh\"", "hidden_act 'gelu_pytorch_tanh'")]
    [InlineData("mlp_bias", "true", "mlp_bias = true")]
    [InlineData("partial_rotary_factor", "0.5", "partial_rotary_factor = 0.5")]
    [InlineData("rope_scaling", "{\"rope_type\": \"longrope\", \"short_factor\": [1], \"long_factor\": [1]}", "rope_scaling type 'longrope'")]
    public void Config_fields_the_forward_would_ignore_are_refused_by_name(string key, string json, string message)
    {
        string text = Config(o => o[key] = JsonNode.Parse(json));
        var e = Assert.Throws<NotSupportedException>(() => ModelConfig.FromHuggingFaceJson(text, "config.json"));
        Assert.Contains(message, e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void A_tensor_the_forward_would_ignore_is_refused_by_name()
    {
        // Llama's attention_bias puts a bias on o_proj too, which the forward pass does not add.
        var config = TestConfigs.Tiny;
        var tensors = RandomModel.Create(config, seed: 2).Select(kv => (kv.Key, kv.Value.Data, kv.Value.Shape))
            .Append((TensorNames.O(0).Replace(".weight", ".bias"), new float[config.DModel], [config.DModel]));
        string dir = WriteFolder(Path.Combine(_dir, "obias"), config.ToHuggingFaceJson(), tensors);
        var e = Assert.Throws<NotSupportedException>(() => ModelFiles.Open(dir));
        Assert.Contains("tensor 'model.layers.0.self_attn.o_proj.bias' is not part of a Llama model", e.Message);
    }

    [Fact]
    public void A_sliding_window_caps_the_context_where_it_applies()
    {
        var mistral = TestConfigs.Tiny with { Architecture = Architecture.Mistral, MaxPositions = 32768 };
        Assert.Equal(4096, ModelConfig.FromHuggingFaceJson(Config(o => o["sliding_window"] = 4096, mistral), "m").MaxPositions);
        Assert.Equal(32768, ModelConfig.FromHuggingFaceJson(Config(o => o["sliding_window"] = null, mistral), "m").MaxPositions);
        // Phi-3-mini-4k: window 2047 of 4096 positions.
        Assert.Equal(2047, ModelConfig.FromHuggingFaceJson(Config(o => o["sliding_window"] = 2047, Phi3 with { MaxPositions = 4096 }), "p").MaxPositions);
        // Qwen2/3 name a window but use it only with use_sliding_window.
        var qwen3 = TestConfigs.TinyQwen3 with { MaxPositions = 40960 };
        Assert.Equal(40960, ModelConfig.FromHuggingFaceJson(Config(o => { o["sliding_window"] = 4096; o["use_sliding_window"] = false; }, qwen3), "q").MaxPositions);
        Assert.Equal(4096, ModelConfig.FromHuggingFaceJson(Config(o => { o["sliding_window"] = 4096; o["use_sliding_window"] = true; }, qwen3), "q").MaxPositions);
    }

    [Theory]
    [InlineData("llama.rope.scaling.type", "linear", "'llama.rope.scaling.type' = 'linear'")]
    [InlineData("llama.rope.dimension_count", 8u, "'llama.rope.dimension_count' = 8 (RoPE on part of each 16-wide head)")]
    [InlineData("llama.expert_count", 8u, "'llama.expert_count' = 8 (mixture of experts)")]
    [InlineData("llama.attention.value_length", 32u, "'llama.attention.value_length' = 32")]
    public void GGUF_metadata_the_forward_would_ignore_is_refused_by_name(string key, object value, string message)
    {
        string path = Path.Combine(_dir, "meta.gguf");
        Ponder.Models.Gguf.GgufWriter.Write(path, TestConfigs.Tiny, RandomModel.Create(TestConfigs.Tiny, 1), extraMetadata: new Dictionary<string, object> { [key] = value });
        var e = Assert.Throws<NotSupportedException>(() => ModelFiles.Open(path));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void A_GGUF_sliding_window_caps_the_context()
    {
        string path = Path.Combine(_dir, "window.gguf");
        Ponder.Models.Gguf.GgufWriter.Write(path, TestConfigs.Tiny, RandomModel.Create(TestConfigs.Tiny, 1), extraMetadata: new Dictionary<string, object> { ["llama.attention.sliding_window"] = 64u });
        using var source = ModelFiles.Open(path);
        Assert.Equal(64, source.Config.MaxPositions);
    }

    [Fact]
    public void Qwen3_config_reads_head_dim_and_q_k_norms()
    {
        var c = ModelConfig.FromHuggingFaceJson(TestConfigs.TinyQwen3.ToHuggingFaceJson(), "q");
        Assert.Equal((Architecture.Qwen3, true, false, 32, 64), (c.Architecture, c.QkNorm, c.QkvBias, c.HeadDim, c.DModel));
    }
}
