using Ponder.Models;
using Ponder.Models.Gguf;
using Ponder.Models.Safetensors;
using Ponder.Tensors;
using Ponder.TestSupport;

namespace Ponder.Tests.Formats;

/// <summary>Random models written by our writers read back equal, within each format's rounding.</summary>
public sealed class RoundTripTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ponder-formats-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> AllConfigs => new(TestConfigs.Forward.Keys);

    [Theory]
    [MemberData(nameof(AllConfigs))]
    public void F32IsExactInBothFormatsAndConfigSurvives(string configName)
    {
        var config = TestConfigs.Forward[configName];
        var tensors = RandomModel.Create(config, seed: 1);
        string folder = Path.Combine(_dir, "st");
        string gguf = Path.Combine(_dir, "m.gguf");
        SafetensorsWriter.WriteFolder(folder, config, tensors);
        GgufWriter.Write(gguf, config, tensors);

        foreach (string path in new[] { folder, gguf })
        {
            using var source = ModelFiles.Open(path);
            AssertSameConfig(config, source.Config);
            AssertTensors(tensors, source, (_, _) => 0);
        }
    }

    [Theory]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public void HalfPrecisionRoundsWithinHalfAnUlp(DType dtype)
    {
        var config = TestConfigs.TinyUntied;
        var tensors = RandomModel.Create(config, seed: 2);
        // Round to nearest: error <= half a unit in the last place, i.e. 2^-11 (f16, 10 mantissa bits) or
        // 2^-8 (bf16, 7 bits) of |x|; f16 subnormals (|x| < 2^-14) add an absolute 2^-25.
        double rel = dtype == DType.F16 ? Math.Pow(2, -11) : Math.Pow(2, -8);
        double abs = dtype == DType.F16 ? Math.Pow(2, -25) : 0;
        string folder = Path.Combine(_dir, "st-" + dtype);
        SafetensorsWriter.WriteFolder(folder, config, tensors, dtype);
        using (var st = new SafetensorsSource(folder))
        {
            Assert.All(st.Tensors.Values, t => Assert.Equal(dtype, t.Type));
            AssertTensors(tensors, st, (x, _) => abs + rel * Math.Abs(x), requireError: true);
        }
        string gguf = Path.Combine(_dir, dtype + ".gguf");
        GgufWriter.Write(gguf, config, tensors, dtype);
        using var g = new GgufSource(gguf);
        // Norms and other 1-D tensors stay F32 in GGUF, as llama.cpp keeps them.
        Assert.All(g.Tensors.Values, t => Assert.Equal(t.Shape.Length == 1 ? DType.F32 : dtype, t.Type));
        AssertTensors(tensors, g, (x, _) => abs + rel * Math.Abs(x), requireError: true);
    }

    [Fact]
    public void Q8_0StaysWithinTheBlockQuantizationBound()
    {
        var config = TestConfigs.TinyQwen2Bias;
        var tensors = RandomModel.Create(config, seed: 3);
        string gguf = Path.Combine(_dir, "q8.gguf");
        GgufWriter.Write(gguf, config, tensors, DType.Q8_0);
        using var g = new GgufSource(gguf);
        Assert.Equal(DType.Q8_0, g.Tensors[TensorNames.Q(0)].Type);
        Assert.Equal(DType.F32, g.Tensors[TensorNames.QBias(0)].Type);
        // Per block of 32 with amax = max |x|: d = amax/127, q = round(x/d), stored scale d' = f16(d), x' = d' q.
        // |x - x'| <= |x - d q| + |d - d'| |q| <= d/2 + 127 * 2^-11 d (f16 rounding of d), plus f32 rounding.
        AssertTensors(tensors, g, (_, amax) => amax / 127 * (0.5 + 127 * Math.Pow(2, -11)) + 1e-6 * amax, requireError: true, blockOf: 32);
    }

    [Fact]
    public void ShardedSafetensorsReadBackWithIndex()
    {
        var config = TestConfigs.Tiny;
        var tensors = RandomModel.Create(config, seed: 4);
        string folder = Path.Combine(_dir, "sharded");
        SafetensorsWriter.WriteFolder(folder, config, tensors, DType.BF16, maxShardBytes: 20_000);
        string[] shards = Directory.GetFiles(folder, "model-*-of-*.safetensors");
        Assert.True(shards.Length >= 3, $"expected several shards, got {shards.Length}");
        Assert.All(shards, s => Assert.True(new FileInfo(s).Length <= 20_000 + 4096 || s.Contains("00001"), $"{s} is too large"));
        Assert.True(File.Exists(Path.Combine(folder, "model.safetensors.index.json")));
        Assert.False(File.Exists(Path.Combine(folder, "model.safetensors")));
        using var source = ModelFiles.Open(folder);
        AssertTensors(tensors, source, (x, _) => Math.Pow(2, -8) * Math.Abs(x));
    }

    [Fact]
    public void SafetensorsHeaderIsAlignedAndMarkedPyTorch()
    {
        string folder = Path.Combine(_dir, "hdr");
        SafetensorsWriter.WriteFolder(folder, TestConfigs.Tiny, RandomModel.Create(TestConfigs.Tiny, 5), DType.F16);
        byte[] bytes = File.ReadAllBytes(Path.Combine(folder, "model.safetensors"));
        ulong n = BitConverter.ToUInt64(bytes, 0);
        Assert.Equal(0UL, (8 + n) % 8);
        string header = System.Text.Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.Contains("\"__metadata__\":{\"format\":\"pt\"}", header);
        Assert.Contains("\"dtype\":\"F16\"", header);
    }

    [Fact]
    public void GgufStoresQAndKInLlamaCppRopeOrder()
    {
        // Hand-worked: per head, GGUF row 2i + half holds HF row half * headDim/2 + i.
        var config = TestConfigs.Tiny; // headDim 16
        var tensors = RandomModel.Create(config, seed: 6);
        var q = tensors[TensorNames.Q(0)];
        for (int r = 0; r < q.Rows; r++) q.Data.AsSpan(r * q.Cols, q.Cols).Fill(r); // row r holds the value r
        string path = Path.Combine(_dir, "perm.gguf");
        GgufWriter.Write(path, config, tensors);
        using var file = new GgufFile(path);
        var info = file.Tensors.Single(t => t.Name == "blk.0.attn_q.weight");
        Assert.Equal(new long[] { config.DModel, config.QDim }, info.Dims);
        var stored = new float[q.Data.Length];
        file.ReadF32(info, stored);
        float[] firstColumn = Enumerable.Range(0, q.Rows).Select(r => stored[r * q.Cols]).ToArray();
        float[] expectedHead0 = [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15];
        Assert.Equal(expectedHead0, firstColumn[..16]);
        Assert.Equal(expectedHead0.Select(v => v + 16).ToArray(), firstColumn[16..32]);
        Assert.Equal(q.Data, Read(new GgufSource(path), TensorNames.Q(0)));
    }

    [Fact]
    public void GgufMetadataHasLlamaCppTypesAndExtraMetadataRoundTrips()
    {
        var config = TestConfigs.Tiny;
        var extra = new Dictionary<string, object>
        {
            ["tokenizer.ggml.model"] = "gpt2",
            ["tokenizer.ggml.tokens"] = new[] { "a", "b", "ü" },
            ["tokenizer.ggml.token_type"] = new[] { 1, 1, 3 },
            ["x.uints"] = new uint[] { 1, uint.MaxValue },
            ["x.floats"] = new[] { 0.5f, -2f },
            ["x.bool"] = true,
            ["x.int"] = -3,
            ["x.long"] = long.MinValue,
            ["x.ulong"] = ulong.MaxValue,
            ["x.double"] = Math.PI,
        };
        string path = Path.Combine(_dir, "meta.gguf");
        GgufWriter.Write(path, config, RandomModel.Create(config, 7), extraMetadata: extra);
        using var file = new GgufFile(path);
        var md = file.Metadata;
        Assert.Equal("llama", md["general.architecture"]);
        Assert.Equal(2u, md["llama.block_count"]);
        Assert.Equal(64u, md["llama.embedding_length"]);
        Assert.Equal(2u, md["llama.attention.head_count_kv"]);
        Assert.Equal(1e-5f, md["llama.attention.layer_norm_rms_epsilon"]);
        Assert.Equal(10000f, md["llama.rope.freq_base"]);
        Assert.Equal(256u, md["llama.vocab_size"]);
        Assert.Equal(2u, md["tokenizer.ggml.eos_token_id"]);
        Assert.Equal("gpt2", md["tokenizer.ggml.model"]); // extra wins over no_vocab
        foreach (var (key, value) in extra) Assert.Equal(value, md[key]);
        Assert.Equal(GgufValueType.Int32, file.MetadataTypes["x.int"]);
        Assert.Equal(32, file.Alignment);
        Assert.All(file.Tensors, t => Assert.Equal(0, (t.Offset - file.DataOffset) % 32));

        string noVocab = Path.Combine(_dir, "novocab.gguf");
        GgufWriter.Write(noVocab, config, RandomModel.Create(config, 7));
        using var plain = new GgufFile(noVocab);
        Assert.Equal("no_vocab", plain.Metadata["tokenizer.ggml.model"]);
    }

    [Fact]
    public void WritersRejectMissingOrMisshapenTensors()
    {
        var config = TestConfigs.Tiny;
        var tensors = RandomModel.Create(config, 8);
        tensors.Remove(TensorNames.Up(1));
        var e = Assert.Throws<ArgumentException>(() => GgufWriter.Write(Path.Combine(_dir, "x.gguf"), config, tensors));
        Assert.Contains(TensorNames.Up(1), e.Message);
        tensors[TensorNames.Up(1)] = new HostTensor([96, 63]);
        e = Assert.Throws<ArgumentException>(() => SafetensorsWriter.WriteFolder(Path.Combine(_dir, "x"), config, tensors));
        Assert.Contains("[96, 63], expected [96, 64]", e.Message);
        Assert.Throws<NotSupportedException>(() => SafetensorsWriter.WriteFolder(Path.Combine(_dir, "y"), config, RandomModel.Create(config, 8), DType.Q8_0));
    }

    private static float[] Read(ITensorSource source, string name)
    {
        using (source)
        {
            var data = new float[source.Tensors[name].ElementCount];
            source.ReadF32(name, data);
            return data;
        }
    }

    private static void AssertSameConfig(ModelConfig expected, ModelConfig actual)
    {
        Assert.Equal(expected with { EosTokenIds = [] }, actual with { EosTokenIds = [] });
        Assert.Equal(expected.EosTokenIds, actual.EosTokenIds);
    }

    /// <summary>
    /// Checks every tensor element against its tolerance, given (x, amax) where amax is the largest |x| in the
    /// element's block of <paramref name="blockOf"/> values along the row (the whole row when 0).
    /// </summary>
    private static void AssertTensors(Dictionary<string, HostTensor> expected, ITensorSource source, Func<double, double, double> tolerance,
        bool requireError = false, int blockOf = 0)
    {
        double worstError = 0;
        foreach (var (name, t) in expected)
        {
            var info = source.Tensors[name];
            Assert.Equal(t.Shape.Select(d => (long)d), info.Shape);
            var actual = new float[t.Data.Length];
            source.ReadF32(name, actual);
            int block = blockOf > 0 && info.Type == DType.Q8_0 ? blockOf : t.Cols;
            for (int start = 0; start < actual.Length; start += block)
            {
                int len = Math.Min(block, actual.Length - start);
                double amax = 0;
                for (int i = start; i < start + len; i++) amax = Math.Max(amax, Math.Abs(t.Data[i]));
                for (int i = start; i < start + len; i++)
                {
                    double err = Math.Abs(t.Data[i] - (double)actual[i]);
                    worstError = Math.Max(worstError, err);
                    if (!(err <= tolerance(t.Data[i], amax)))
                        Assert.Fail($"{source.Location}: {name}[{i}] expected {t.Data[i]:G9}, read {actual[i]:G9} (error {err:G3} > {tolerance(t.Data[i], amax):G3})");
                }
            }
        }
        if (requireError) Assert.True(worstError > 0, "a lossy format should have changed some value");
    }
}
