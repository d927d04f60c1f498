using System.Text;
using System.Text.Json.Nodes;
using Ponder.Hosting;
using Ponder.Models;
using Ponder.Models.Gguf;
using Ponder.Models.Safetensors;
using Ponder.TestSupport;
using Ponder.Tokenization;

namespace Ponder.Tests.Formats;

/// <summary>
/// One malformed file per class of field, for every format a model comes in: each is refused at load with an
/// exception that names the file and the field (or tensor), and token ids beyond the vocabulary are refused where
/// they are read (config.json, generation_config.json, tokenizer.json, GGUF metadata) and where the tokenizer meets
/// the model.
/// </summary>
public sealed class MalformedFileTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ponder-malformed-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static readonly ModelConfig Tiny = TestConfigs.Tiny;

    /// <summary>A valid Hugging Face folder of <see cref="Tiny"/>, then <paramref name="edit"/> applied to config.json's object.</summary>
    string Folder(Action<JsonObject>? edit = null)
    {
        string folder = Path.Combine(_dir, Guid.NewGuid().ToString("N"));
        SafetensorsWriter.WriteFolder(folder, Tiny, RandomModels.Create(Tiny, seed: 1));
        if (edit is not null)
        {
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "config.json")))!.AsObject();
            edit(config);
            File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());
        }
        return folder;
    }

    static void AssertNames(Exception e, params string[] parts)
    {
        foreach (string part in parts) Assert.Contains(part, e.Message);
    }

    // --- config.json: a wrong JSON type, a duplicate key, a missing field, ids beyond vocab_size -----------------

    [Theory]
    [InlineData("hidden_size", "\"128\"", "'hidden_size' is not an integer")]
    [InlineData("tie_word_embeddings", "1", "'tie_word_embeddings' is not true or false")]
    [InlineData("rope_theta", "\"big\"", "'rope_theta' is not a number")]
    [InlineData("rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": \"8\"}", "'rope_scaling.factor' is not a number")]
    [InlineData("eos_token_id", "[1, \"2\"]", "'eos_token_id[1]' is not an integer token id")]
    [InlineData("eos_token_id", "100000", "eos_token_id 100000 is outside the vocabulary")]
    [InlineData("bos_token_id", "-1", "bos_token_id -1 is outside the vocabulary")]
    [InlineData("architectures", "[7]", "'architectures[0]' is not a string")]
    public void Config_field_of_the_wrong_type_or_beyond_the_vocabulary_is_named(string key, string json, string message)
    {
        string folder = Folder(c => c[key] = JsonNode.Parse(json));
        var e = Assert.ThrowsAny<Exception>(() => ModelFiles.Open(folder));
        Assert.IsType<InvalidDataException>(e);
        AssertNames(e, Path.Combine(folder, "config.json"), message);
    }

    [Fact]
    public void Config_with_a_duplicate_or_missing_key_is_named()
    {
        var dup = Assert.Throws<InvalidDataException>(() => ModelConfig.FromHuggingFaceJson("""{"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "hidden_size": 16}""", "m/config.json"));
        AssertNames(dup, "m/config.json", "'hidden_size'");
        var missing = Assert.Throws<InvalidDataException>(() => ModelConfig.FromHuggingFaceJson("""{"architectures": ["LlamaForCausalLM"], "hidden_size": 8}""", "m/config.json"));
        AssertNames(missing, "m/config.json", "'num_attention_heads' is missing");
    }

    // --- safetensors: the header's length, its JSON, a tensor's dtype, shape and offsets ----------------------

    [Theory]
    [InlineData("length", "model.safetensors")]
    [InlineData("json", "model.safetensors")]
    [InlineData("dtype", "model.norm.weight")]
    [InlineData("shape", "model.norm.weight")]
    [InlineData("offsets", "model.norm.weight")]
    public void Safetensors_header_and_tensor_fields_are_named(string field, string named)
    {
        string folder = Folder();
        string file = Path.Combine(folder, SafetensorsSource.SingleFile);
        byte[] bytes = File.ReadAllBytes(file);
        long headerLength = BitConverter.ToInt64(bytes, 0);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)headerLength);
        int dataBytes = bytes.Length - 8 - (int)headerLength;
        var json = JsonNode.Parse(header)!.AsObject();
        var norm = json["model.norm.weight"]!.AsObject();
        switch (field)
        {
            case "length": SafetensorsBytes.Write(file, header, dataBytes, claimedHeaderLength: (ulong)bytes.Length * 2); break;
            case "json": SafetensorsBytes.Write(file, header[..header.LastIndexOf('}')], dataBytes); break;
            case "dtype": norm["dtype"] = "F8_E4M3"; SafetensorsBytes.Write(file, json.ToJsonString(), dataBytes); break;
            case "shape": norm["shape"] = new JsonArray(Tiny.DModel + 1); SafetensorsBytes.Write(file, json.ToJsonString(), dataBytes); break;
            case "offsets": norm["data_offsets"] = new JsonArray(0, (long)dataBytes + 4); SafetensorsBytes.Write(file, json.ToJsonString(), dataBytes); break;
        }
        var e = Assert.ThrowsAny<Exception>(() => ModelFiles.Open(folder));
        Assert.True(e is InvalidDataException or NotSupportedException, e.ToString());
        AssertNames(e, named);
        Assert.Contains(folder, e.Message);
    }

    // --- GGUF: the magic, a truncated string, a metadata value of the wrong type, a tensor's dims and offset ---

    [Fact]
    public void Gguf_header_metadata_and_tensor_fields_are_named()
    {
        string path = Path.Combine(_dir, "model.gguf");
        void Refused(GgufBytes bytes, params string[] parts)
        {
            bytes.WriteTo(path);
            var e = Assert.ThrowsAny<Exception>(() => { using var _ = ModelFiles.Open(path); });
            Assert.True(e is InvalidDataException or NotSupportedException, e.ToString());
            AssertNames(e, [path, .. parts]);
        }
        Refused(new GgufBytes(magic: 0x12345678), "magic");
        Refused(new GgufBytes(kvCount: 1).String("general.architecture", claimedLength: 1000), "metadata key #0");
        Refused(new GgufBytes(kvCount: 1).String("general.architecture").Raw(99, 0, 0, 0), "metadata 'general.architecture' has unknown value type 99");
        Refused(new GgufBytes(kvCount: 2).KvString("general.architecture", "llama").KvString("llama.embedding_length", "two"), "metadata 'llama.embedding_length' = two is not an integer");
        Refused(new GgufBytes(tensorCount: 1, kvCount: 1).KvString("general.architecture", "llama").Tensor("token_embd.weight", [4, 4, 4, 4, 4], 0, 0), "token_embd.weight");
        Refused(new GgufBytes(tensorCount: 1, kvCount: 1).KvString("general.architecture", "llama").Tensor("token_embd.weight", [4, 4], 0, 1 << 20).Data(64), "token_embd.weight");
    }

    [Fact]
    public void Gguf_special_token_id_beyond_the_vocabulary_is_named()
    {
        string path = Path.Combine(_dir, "model.gguf");
        var meta = new Dictionary<string, object>
        {
            ["tokenizer.ggml.model"] = "llama",
            ["tokenizer.ggml.tokens"] = new[] { "<unk>", "<s>", "</s>", "a" },
            ["tokenizer.ggml.eos_token_id"] = 4u,
        };
        GgufWriter.Write(path, Tiny, RandomModels.Create(Tiny, seed: 1), extraMetadata: meta);
        var e = Assert.Throws<InvalidDataException>(() => PonderModel.OpenFiles(path));
        AssertNames(e, path, "special token id 4 is outside the vocabulary");
    }

    // --- tokenizer.json: vocab ids, merges, added tokens; ids beyond the model's vocab_size ---------------------

    [Theory]
    [InlineData("vocab", "model.vocab[\"a\"]")]
    [InlineData("merges", "model.merges[0]")]
    [InlineData("added", "added_tokens[0]")]
    public void Tokenizer_json_fields_are_named(string field, string named)
    {
        using var folder = new Tokenization.TempFolder();
        var json = JsonNode.Parse(File.ReadAllText(Tokenization.TempFolder.TinyByteLevelJson))!.AsObject();
        switch (field)
        {
            case "vocab": json["model"]!["vocab"] = new JsonObject { ["a"] = -3 }; break;
            case "merges": json["model"]!["merges"] = new JsonArray("a"); break;
            case "added": json["added_tokens"] = new JsonArray(new JsonObject { ["id"] = "x", ["content"] = "<x>" }); break;
        }
        string path = folder.Write("tokenizer.json", json.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => TokenizerFactory.FromHuggingFace(path));
        AssertNames(e, path, named);
    }

    [Fact]
    public void Tokenizer_ids_beyond_the_models_vocabulary_are_refused_at_load()
    {
        // The tiny byte-level tokenizer has 262 ids; the tiny model's embedding has fewer rows.
        Assert.True(Tiny.Vocab < 262);
        string folder = Folder();
        File.Copy(Tokenization.TempFolder.TinyByteLevelJson, Path.Combine(folder, "tokenizer.json"));
        var e = Assert.Throws<InvalidDataException>(() => PonderModel.OpenFiles(folder));
        AssertNames(e, Path.Combine(folder, "tokenizer.json"), "262 token ids", $"vocab_size {Tiny.Vocab}");
    }

    [Theory]
    [InlineData("generation_config.json", "{\"eos_token_id\": [261, 9999]}", "eos_token_id", "9999")]
    [InlineData("generation_config.json", "{\"bos_token_id\": 1e30}", "bos_token_id", "1e30")]
    [InlineData("config.json", "{\"eos_token_id\": \"</s>\"}", "eos_token_id", "</s>")]
    public void Special_token_ids_in_generation_config_are_checked_against_the_tokenizer(string file, string json, string field, string value)
    {
        using var folder = new Tokenization.TempFolder();
        File.Copy(Tokenization.TempFolder.TinyByteLevelJson, folder.File("tokenizer.json"));
        string path = folder.Write(file, json);
        var e = Assert.Throws<InvalidDataException>(() => TokenizerFactory.FromModelFolder(folder.Path));
        AssertNames(e, path, field, value);
    }

    // --- tokenizer.model and chat templates -------------------------------------------------------------------

    [Fact]
    public void Tokenizer_model_truncated_inside_a_piece_is_named()
    {
        using var folder = new Tokenization.TempFolder();
        // Field 1 (pieces), length 5, but only 2 bytes follow.
        File.WriteAllBytes(folder.File("tokenizer.model"), [0x0A, 0x05, 0x0A, 0x01]);
        var e = Assert.Throws<InvalidDataException>(() => TokenizerFactory.FromSentencePiece(folder.Path));
        AssertNames(e, folder.File("tokenizer.model"));
    }

    [Fact]
    public void Chat_template_errors_name_the_file_and_the_place()
    {
        using var folder = new Tokenization.TempFolder();
        string path = folder.Write("tokenizer_config.json", "{\"chat_template\": 42}");
        AssertNames(Assert.Throws<InvalidDataException>(() => ChatTemplate.FromTokenizerConfig(path)), path, "chat_template");
        folder.Write("tokenizer_config.json", "{\"chat_template\": \"{% for m in messages %}{{ m.content }\"}");
        var e = Assert.ThrowsAny<Exception>(() => ChatTemplate.FromTokenizerConfig(path));
        AssertNames(e, path, "line 1, column");
        // A lone surrogate escaped in a string (System.Text.Json would throw unnamed only when the string is read).
        folder.Write("tokenizer_config.json", "{\"chat_template\": \"{{ bos_token }}\", \"bos_token\": \"\\ud800\"}");
        AssertNames(Assert.Throws<InvalidDataException>(() => ChatTemplate.FromTokenizerConfig(path)), path, "surrogate");
    }
}
