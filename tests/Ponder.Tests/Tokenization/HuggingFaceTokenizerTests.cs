using Ponder.Tokenization;

namespace Ponder.Tests.Tokenization;

public sealed class HuggingFaceTokenizerTests
{
    // Ids worked out by hand from the merge ranks: 0 "Ġ t" -> 256, 1 "h e" -> 257, 2 "Ġt he" -> 258, 3 "1 7" -> 259.
    [Theory]
    [InlineData("the", new[] { 116, 257 })]                  // t h e -> t [he]; no merge "t he"
    [InlineData(" the", new[] { 258 })]                      // Ġ t h e -> [Ġt] h e -> [Ġt][he] -> [Ġthe]
    [InlineData("the the", new[] { 116, 257, 258 })]         // pre-tokens "the", " the"
    [InlineData("Q: 17", new[] { 81, 58, 32, 259 })]         // "Q" ":" " 17": Ġ stays alone, 1 7 -> 259
    [InlineData("171", new[] { 259, 49 })]
    [InlineData("é", new[] { 195, 169 })]                    // UTF-8 C3 A9
    [InlineData("hi<|im_end|>", new[] { 104, 105, 261 })]
    [InlineData("<|endoftext|><|im_end|>", new[] { 260, 261 })]
    [InlineData("", new int[0])]
    public void TinyByteLevel_EncodesToHandWorkedIds(string text, int[] expected)
    {
        ITokenizer tok = TokenizerFactory.FromHuggingFace(TempFolder.TinyByteLevelJson);
        Assert.Equal(expected, tok.Encode(text));
        Assert.Equal(text, tok.Decode(expected));
    }

    [Fact]
    public void TinyByteLevel_WithoutConfig_RecognisesEosNames_AndAddsNoBos()
    {
        ITokenizer tok = TokenizerFactory.FromHuggingFace(TempFolder.TinyByteLevelJson);
        Assert.Equal(262, tok.VocabSize);
        Assert.Null(tok.BosId);
        Assert.False(tok.AddBos);
        Assert.Equal(new[] { 260, 261 }, tok.EosIds);
        Assert.Equal(new[] { 116, 257 }, tok.Encode("the", addSpecialTokens: true));
    }

    [Fact]
    public void TokenizerConfig_SetsBosAndAddBos()
    {
        using var folder = TempFolder.WithTiny(("tokenizer_config.json",
            """{"bos_token": {"content": "<|endoftext|>"}, "eos_token": "<|im_end|>", "add_bos_token": true}"""));
        ITokenizer tok = TokenizerFactory.FromHuggingFace(folder.Path);
        Assert.Equal(260, tok.BosId);
        Assert.True(tok.AddBos);
        Assert.Equal(new[] { 261 }, tok.EosIds);
        Assert.Equal(new[] { 260, 258 }, tok.Encode(" the"));
        Assert.Equal(new[] { 258 }, tok.Encode(" the", addSpecialTokens: false));
    }

    [Fact]
    public void GenerationAndModelConfig_EosIdsAreUnited()
    {
        using var folder = TempFolder.WithTiny(
            ("generation_config.json", """{"bos_token_id": 260, "eos_token_id": [261, 260]}"""),
            ("config.json", """{"eos_token_id": 261}"""));
        ITokenizer tok = TokenizerFactory.FromHuggingFace(folder.Path);
        Assert.Equal(new[] { 261, 260 }, tok.EosIds);
        Assert.Equal(260, tok.BosId);
        Assert.False(tok.AddBos);
    }

    [Fact]
    public void Decode_SkipSpecialTokens_DropsOnlySpecials()
    {
        ITokenizer tok = TokenizerFactory.FromHuggingFace(TempFolder.TinyByteLevelJson);
        int[] ids = [260, 116, 257, 261];
        Assert.Equal("<|endoftext|>the<|im_end|>", tok.Decode(ids));
        Assert.Equal("the", tok.Decode(ids, skipSpecialTokens: true));
        Assert.Equal(" t"u8.ToArray(), tok.TokenBytes(256));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.TokenBytes(262));
    }

    [Fact]
    public void SequencePreTokenizer_SplitThenByteLevel_IsApplied()
    {
        // Llama 3 / Qwen2 shape: Split(regex, Isolated) + ByteLevel(use_regex: false). With Qwen2's one-digit
        // pattern, "17" must not merge into 259 because "1" and "7" are separate pre-tokens.
        using var folder = new TempFolder();
        var root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(TempFolder.TinyByteLevelJson))!;
        root["pre_tokenizer"] = System.Text.Json.Nodes.JsonNode.Parse("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
            + System.Text.Json.JsonSerializer.Serialize(@"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
            + "}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}]}");
        string json = root.ToJsonString();
        string path = folder.Write("tokenizer.json", json);
        ITokenizer tok = TokenizerFactory.FromHuggingFace(path);
        Assert.Equal(new[] { 49, 55 }, tok.Encode("17"));
        Assert.Equal(new[] { 258 }, tok.Encode(" the"));       // [^\r\n\p{L}\p{N}]?\p{L}+ keeps the space with the word
        Assert.Equal(new[] { 116, 257, 10, 10, 258 }, tok.Encode("the\n\n the"));
    }

    [Fact]
    public void MissingFile_NamesThePath()
    {
        string path = Path.Combine(Path.GetTempPath(), "ponder-no-such-dir-" + Guid.NewGuid().ToString("N"), "tokenizer.json");
        var ex = Assert.Throws<FileNotFoundException>(() => TokenizerFactory.FromHuggingFace(path));
        Assert.Contains(path, ex.Message);
        using var empty = new TempFolder();
        var ex2 = Assert.Throws<FileNotFoundException>(() => TokenizerFactory.FromModelFolder(empty.Path));
        Assert.Contains(empty.Path, ex2.Message);
    }

    [Theory]
    [InlineData("{ \"model\": { \"type\": \"BPE\", ")]
    [InlineData("[1, 2, 3]")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}}}")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}")]
    public void InvalidFile_InvalidDataException_NamesThePath(string content)
    {
        using var folder = new TempFolder();
        string path = folder.Write("tokenizer.json", content);
        var ex = Assert.Throws<InvalidDataException>(() => TokenizerFactory.FromHuggingFace(path));
        Assert.Contains(path, ex.Message);
    }

    [Theory]
    [InlineData("Unigram")]
    [InlineData("WordPiece")]
    public void UnsupportedModelType_NotSupported_NamesFileAndType(string type)
    {
        using var folder = new TempFolder();
        string path = folder.Write("tokenizer.json", "{\"model\": {\"type\": \"" + type + "\", \"vocab\": {}}}");
        var ex = Assert.Throws<NotSupportedException>(() => TokenizerFactory.FromHuggingFace(path));
        Assert.Contains(path, ex.Message);
        Assert.Contains(type, ex.Message);
    }

    [Fact]
    public void MergeWithUnknownToken_NamesFileAndToken()
    {
        using var folder = new TempFolder();
        string json = File.ReadAllText(TempFolder.TinyByteLevelJson).Replace("\"1 7\"", "\"1 Zq\"");
        string path = folder.Write("tokenizer.json", json);
        var ex = Assert.Throws<InvalidDataException>(() => TokenizerFactory.FromHuggingFace(path));
        Assert.Contains(path, ex.Message);
        Assert.Contains("\"Zq\"", ex.Message);
    }
}
