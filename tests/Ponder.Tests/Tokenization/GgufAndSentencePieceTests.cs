using System.Text;
using Ponder.Tokenization;

namespace Ponder.Tests.Tokenization;

public sealed class GgufVocabTests
{
    [Fact]
    public void NoVocab_ReturnsNull_UnknownModel_NotSupported()
    {
        Assert.Null(TokenizerFactory.FromGgufMetadata(new Dictionary<string, object> { ["tokenizer.ggml.model"] = "no_vocab" }, "m.gguf"));
        var ex = Assert.Throws<NotSupportedException>(() =>
            TokenizerFactory.FromGgufMetadata(new Dictionary<string, object> { ["tokenizer.ggml.model"] = "bert" }, "m.gguf"));
        Assert.Contains("m.gguf", ex.Message);
        var missing = Assert.Throws<InvalidDataException>(() =>
            TokenizerFactory.FromGgufMetadata(new Dictionary<string, object> { ["tokenizer.ggml.model"] = "gpt2" }, "m.gguf"));
        Assert.Contains("tokenizer.ggml.tokens", missing.Message);
    }

    [Fact]
    public void Gpt2_AcceptsObjectArraysAndAnyIntegerType()
    {
        // The hand-built vocabulary: bytes 0..255, merges Ġ+t, h+e, Ġt+he, 1+7, then <|endoftext|> (control).
        var tokens = new List<object>();
        for (int b = 0; b < 256; b++) tokens.Add(ByteLevelAlphabet.ByteToChar((byte)b).ToString());
        tokens.AddRange(["Ġt", "he", "Ġthe", "17", "<|endoftext|>"]);
        var types = Enumerable.Repeat<object>((uint)1, 260).Append((byte)3).ToArray();
        var meta = new Dictionary<string, object>
        {
            ["tokenizer.ggml.model"] = "gpt2",
            ["tokenizer.ggml.tokens"] = tokens.ToArray(),
            ["tokenizer.ggml.token_type"] = types,
            ["tokenizer.ggml.merges"] = new object[] { "Ġ t", "h e", "Ġt he", "1 7" },
            ["tokenizer.ggml.eos_token_id"] = 260L,
            ["tokenizer.ggml.bos_token_id"] = (ushort)260,
        };
        ITokenizer tok = TokenizerFactory.FromGgufMetadata(meta, "m.gguf")!;
        Assert.Equal(new[] { 116, 257, 258, 32, 259, 260 }, tok.Encode("the the 17<|endoftext|>"));
        Assert.Equal(new[] { 260 }, tok.EosIds);
        Assert.Equal(260, tok.BosId);
        Assert.False(tok.AddBos);

        meta["tokenizer.ggml.merges"] = new[] { "Ġ t", "h e", "Ġt hx" };
        var ex = Assert.Throws<InvalidDataException>(() => TokenizerFactory.FromGgufMetadata(meta, "m.gguf"));
        Assert.Contains("m.gguf", ex.Message);
        meta["tokenizer.ggml.merges"] = new object[] { 5 };
        Assert.Throws<InvalidDataException>(() => TokenizerFactory.FromGgufMetadata(meta, "m.gguf"));
    }
}

/// <summary>
/// A tiny SentencePiece BPE built by hand: 0 &lt;unk&gt;, 1 &lt;s&gt;, 2 &lt;/s&gt;, 3..258 byte pieces &lt;0x00&gt;..&lt;0xFF&gt;,
/// then 259 "▁" 260 "h" 261 "i" 262 "▁h" (score -1) 263 "▁hi" (score -2) 264 "t" 265 "▁t" (score -3).
/// SentencePiece merges the adjacent pair whose concatenation scores highest.
/// </summary>
public sealed class SentencePieceTests
{
    private static readonly string[] Tail = ["▁", "h", "i", "▁h", "▁hi", "t", "▁t"];
    private static readonly float[] TailScores = [-100, -100, -100, -1, -2, -100, -3];

    private static (string[] Tokens, float[] Scores, int[] Types) Pieces()
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { 2, 3, 3 };
        var scores = new List<float> { 0, 0, 0 };
        for (int b = 0; b < 256; b++) { tokens.Add($"<0x{b:X2}>"); types.Add(6); scores.Add(0); }
        tokens.AddRange(Tail); scores.AddRange(TailScores); types.AddRange(Tail.Select(_ => 1));
        return (tokens.ToArray(), scores.ToArray(), types.ToArray());
    }

    private static void AssertHandWorked(ITokenizer tok)
    {
        Assert.Equal(266, tok.VocabSize);
        Assert.Equal(1, tok.BosId);
        Assert.Contains(2, tok.EosIds);
        Assert.True(tok.AddBos);
        Assert.Equal(new[] { 1, 263 }, tok.Encode("hi"));                       // ▁ h i -> [▁h] i -> [▁hi]
        Assert.Equal(new[] { 263, 265 }, tok.Encode("hi t", addSpecialTokens: false));
        Assert.Equal(new[] { 262, 3 + 0xC3, 3 + 0xA9 }, tok.Encode("hé", addSpecialTokens: false)); // é by byte fallback
        Assert.Equal("hi t", tok.Decode(new[] { 1, 263, 265, 2 }, skipSpecialTokens: true));
        Assert.Equal("hé", tok.Decode(new[] { 262, 3 + 0xC3, 3 + 0xA9 }));
        Assert.Equal(new byte[] { 0xC3 }, tok.TokenBytes(3 + 0xC3));
        Assert.Equal(" hi"u8.ToArray(), tok.TokenBytes(263));
        var stream = new StreamingDecoder(tok);
        Assert.Equal(new[] { "", " h", "", "é" }, new[] { 1, 262, 3 + 0xC3, 3 + 0xA9 }.Select(stream.Push));
    }

    internal static Dictionary<string, object> GgufMetadata()
    {
        var (tokens, scores, types) = Pieces();
        return new Dictionary<string, object>
        {
            ["tokenizer.ggml.model"] = "llama",
            ["tokenizer.ggml.tokens"] = tokens,
            ["tokenizer.ggml.scores"] = scores,
            ["tokenizer.ggml.token_type"] = types,
            ["tokenizer.ggml.bos_token_id"] = 1u,
            ["tokenizer.ggml.eos_token_id"] = 2u,
        };
    }

    [Fact]
    public void GgufLlamaVocab_EncodesToHandWorkedIds()
    {
        Dictionary<string, object> meta = GgufMetadata();
        AssertHandWorked(TokenizerFactory.FromGgufMetadata(meta, "llama.gguf")!);
    }

    [Fact]
    public void TokenizerModelFile_HandWrittenProtobuf_EncodesToHandWorkedIds()
    {
        var (tokens, scores, types) = Pieces();
        var proto = new SentencePieceModelProto { ByteFallback = true };
        for (int i = 0; i < tokens.Length; i++) proto.Pieces.Add(new(tokens[i], scores[i], (PieceType)types[i]));
        using var folder = new TempFolder();
        File.WriteAllBytes(folder.File("tokenizer.model"), proto.Write());
        AssertHandWorked(TokenizerFactory.FromModelFolder(folder.Path));

        File.WriteAllBytes(folder.File("tokenizer.model"), [0x0A, 0xFF, 0x01]);
        var ex = Assert.Throws<InvalidDataException>(() => TokenizerFactory.FromSentencePiece(folder.Path));
        Assert.Contains("tokenizer.model", ex.Message);
    }

    [Fact]
    public void Llama2StyleTokenizerJson_ConvertsToTheSameIds()
    {
        var (tokens, _, _) = Pieces();
        var vocab = string.Join(", ", tokens.Select((t, i) => $"{System.Text.Json.JsonSerializer.Serialize(t)}: {i}"));
        string json = $$$"""
        {
          "added_tokens": [
            {"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true}, {"id": 2, "content": "</s>", "special": true}],
          "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
          "pre_tokenizer": null,
          "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
          "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
          "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true,
                    "vocab": { {{{vocab}}} }, "merges": ["▁ h", "▁h i", "▁ t"]}
        }
        """;
        using var folder = new TempFolder();
        folder.Write("tokenizer.json", json);
        folder.Write("tokenizer_config.json", """{"add_bos_token": true, "bos_token": "<s>", "eos_token": "</s>"}""");
        ITokenizer tok = TokenizerFactory.FromModelFolder(folder.Path);
        Assert.IsType<SentencePieceBpeTokenizer>(tok);
        AssertHandWorked(tok);
        Assert.Equal(new[] { 2 }, tok.EosIds);
        Assert.Equal(Encoding.UTF8.GetBytes("<s>"), tok.TokenBytes(1));
    }
}
