using System.Text;
using CsCheck;
using Ponder.Tokenization;

namespace Ponder.Tests.Tokenization;

public sealed class ByteLevelFilesTests
{
    private static readonly string[] Specials = ["<|bos|>", "<|eos|>", "<|pad|>"];

    private static ITokenizer WriteAndLoad(TempFolder folder)
    {
        TokenizerFiles.WriteByteLevel(folder.File("tokenizer.json"), Specials);
        return TokenizerFactory.FromModelFolder(folder.Path);
    }

    [Fact]
    public void ArithmeticPrompt_IdsAreItsBytes()
    {
        using var folder = new TempFolder();
        ITokenizer tok = WriteAndLoad(folder);
        const string text = "Q: 17+4*9-6\n";
        int[] expected = Encoding.ASCII.GetBytes(text).Select(b => (int)b).ToArray();
        Assert.Equal(expected, tok.Encode(text, addSpecialTokens: false));
        Assert.Equal(new[] { 256 }.Concat(expected), tok.Encode(text));
        Assert.Equal(259, tok.VocabSize);
        Assert.Equal(256, tok.BosId);
        Assert.True(tok.AddBos);
        Assert.Equal(new[] { 257 }, tok.EosIds);
    }

    [Fact]
    public void SampleSolution_EveryLineRoundTrips_AndSpecialsMapToIds()
    {
        using var folder = new TempFolder();
        ITokenizer tok = WriteAndLoad(folder);
        string[] lines = ["Q: 17+4*9-6", "4*9=36", "17+36=53", "53-6=47", "A: 47", "Q: (12-3)*45+678", "  spaces\tand tabs  ", ""];
        foreach (string line in lines)
        {
            int[] ids = tok.Encode(line + "\n", addSpecialTokens: false);
            Assert.All(ids, id => Assert.InRange(id, 0, 255));
            Assert.Equal(line + "\n", tok.Decode(ids));
        }
        Assert.Equal(new[] { 256, 65, 257, 258 }, tok.Encode("A<|eos|><|pad|>"));
        Assert.Equal("A", tok.Decode(new[] { 256, 65, 257, 258 }, skipSpecialTokens: true));
    }

    [Fact]
    public void ArbitraryUnicode_RoundTrips()
    {
        using var folder = new TempFolder();
        ITokenizer tok = WriteAndLoad(folder);
        foreach (string s in new[] { "😀 emoji 👩‍👩‍👧", "中文字符 and 日本語", "naïve café", "\u0000\u007f\u00ff", "𠀀𝔘" })
        {
            int[] ids = tok.Encode(s, addSpecialTokens: false);
            Assert.Equal(Encoding.UTF8.GetBytes(s).Select(b => (int)b), ids);
            Assert.Equal(s, tok.Decode(ids));
        }
        // Property: any valid Unicode string survives encode/decode (Gen.String covers all chars; pairs keep surrogates valid).
        Gen.String.Where(s => !HasLoneSurrogate(s)).Sample(s =>
        {
            Assert.Equal(s, tok.Decode(tok.Encode(s, addSpecialTokens: false)));
        }, iter: 2000);
        Gen.Select(Gen.Int[0x20, 0x10FFFF].Where(c => c is < 0xD800 or > 0xDFFF), Gen.Int[0, 3])
            .Array[0, 20]
            .Select(cs => string.Concat(cs.Select(c => char.ConvertFromUtf32(c.Item1) + new string(' ', c.Item2))))
            .Sample(s => Assert.Equal(s, tok.Decode(tok.Encode(s, addSpecialTokens: false))), iter: 2000);
    }

    [Fact]
    public void HandBuiltBpe_RoundTripsRandomUnicode()
    {
        ITokenizer tok = TokenizerFactory.FromHuggingFace(TempFolder.TinyByteLevelJson);
        Gen.Select(Gen.Int[0x20, 0x10FFFF].Where(c => c is < 0xD800 or > 0xDFFF), Gen.OneOf("", " the", "17", "<|im_end|>", "\n"))
            .Array[0, 16]
            .Select(cs => string.Concat(cs.Select(c => char.ConvertFromUtf32(c.Item1) + c.Item2)))
            .Sample(s => Assert.Equal(s, tok.Decode(tok.Encode(s))), iter: 2000);
    }

    [Fact]
    public void GgufMetadata_IsTypedForTheWriter_AndLoadsBackToTheSameIds()
    {
        using var folder = new TempFolder();
        ITokenizer fromJson = WriteAndLoad(folder);
        Dictionary<string, object> meta = TokenizerFiles.ToGgufMetadata(folder.File("tokenizer.json"));
        Assert.Equal("gpt2", meta["tokenizer.ggml.model"]);
        Assert.Equal("gpt-2", meta["tokenizer.ggml.pre"]);
        string[] tokens = Assert.IsType<string[]>(meta["tokenizer.ggml.tokens"]);
        int[] types = Assert.IsType<int[]>(meta["tokenizer.ggml.token_type"]);
        Assert.Empty(Assert.IsType<string[]>(meta["tokenizer.ggml.merges"]));
        Assert.Equal(259, tokens.Length);
        Assert.Equal("Ġ", tokens[' ']);
        Assert.Equal("Ċ", tokens['\n']);
        Assert.Equal("<|pad|>", tokens[258]);
        Assert.All(types[..256], t => Assert.Equal(1, t));
        Assert.All(types[256..], t => Assert.Equal(3, t));
        Assert.Equal(256u, Assert.IsType<uint>(meta["tokenizer.ggml.bos_token_id"]));
        Assert.Equal(257u, Assert.IsType<uint>(meta["tokenizer.ggml.eos_token_id"]));
        Assert.Equal(258u, Assert.IsType<uint>(meta["tokenizer.ggml.padding_token_id"]));

        ITokenizer fromGguf = TokenizerFactory.FromGgufMetadata(meta, "test.gguf")!;
        Assert.Equal(fromJson.VocabSize, fromGguf.VocabSize);
        Assert.Equal(fromJson.BosId, fromGguf.BosId);
        Assert.Equal(fromJson.EosIds, fromGguf.EosIds);
        foreach (string s in new[] { "Q: 17+4*9-6\n", "<|bos|>x<|eos|>", "😀中" })
            Assert.Equal(fromJson.Encode(s), fromGguf.Encode(s));
    }

    private static bool HasLoneSurrogate(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) i++;
            else if (char.IsSurrogate(s[i])) return true;
        }
        return false;
    }
}
