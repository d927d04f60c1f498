using CsCheck;
using Ponder.Tokenization;

namespace Ponder.Tests.Tokenization;

/// <summary>The library's raw-byte tokenizer against the tokenizer.json Ponder's own models ship (the independent reference).</summary>
public sealed class ByteTokenizerTests
{
    [Fact]
    public void MatchesTheShippedByteLevelTokenizerJson()
    {
        using var folder = new TempFolder();
        TokenizerFiles.WriteByteLevel(folder.File("tokenizer.json"), [.. ByteTokenizer.PonderSpecials.OrderBy(kv => kv.Value).Select(kv => kv.Key)]);
        var reference = TokenizerFactory.FromModelFolder(folder.Path);
        var bytes = ByteTokenizer.Ponder;
        Assert.Equal(reference.VocabSize, bytes.VocabSize);
        Assert.Equal(reference.BosId, bytes.BosId);
        Assert.Equal(reference.EosIds, bytes.EosIds);
        Gen.String.Sample(text =>
        {
            int[] ids = bytes.Encode(text);
            Assert.Equal(reference.Encode(text, addSpecialTokens: false), ids);
            Assert.Equal(reference.Decode(ids), bytes.Decode(ids));
            for (int id = 0; id < 8; id++) Assert.Equal(reference.TokenBytes(id), bytes.TokenBytes(id));
        }, iter: 200);
    }

    [Fact]
    public void SpecialsHaveNoTextAndBytesBeyondTheVocabularyAreNamed()
    {
        Assert.Equal("ab", ByteTokenizer.Ponder.Decode([ByteTokenizer.PonderBos, 'a', ByteTokenizer.PonderEos, 'b', ByteTokenizer.PonderPad]));
        Assert.Empty(ByteTokenizer.Ponder.TokenBytes(ByteTokenizer.PonderEos));
        var ascii = new ByteTokenizer(128);
        Assert.Equal([81, 58, 32], ascii.Encode("Q: "));
        var e = Assert.Throws<ArgumentException>(() => ascii.Encode("é"));
        Assert.Contains("0xC3", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new ByteTokenizer(259, [300]));
    }
}
