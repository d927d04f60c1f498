using System.Text;
using Ponder.Tokenization;

namespace Ponder.Tests.Tokenization;

public sealed class StreamingDecoderTests
{
    private static ITokenizer Tiny() => TokenizerFactory.FromHuggingFace(TempFolder.TinyByteLevelJson);

    [Fact]
    public void EmojiSplitAcrossByteTokens_IsHeldUntilComplete()
    {
        ITokenizer tok = Tiny();
        var decoder = new StreamingDecoder(tok);
        int[] ids = tok.Encode("a😀b");
        Assert.Equal(new[] { 97, 0xF0, 0x9F, 0x98, 0x80, 98 }, ids);
        string[] outputs = ids.Select(decoder.Push).ToArray();
        Assert.Equal(new[] { "a", "", "", "", "😀", "b" }, outputs);
        Assert.Equal(0, decoder.PendingBytes);
        Assert.Equal("", decoder.Flush());
    }

    [Fact]
    public void ConcatenatedPushes_EqualDecode_ForCjkAndMerges()
    {
        ITokenizer tok = Tiny();
        const string text = "the 中文 17 é<|im_end|> the";
        int[] ids = tok.Encode(text);
        var decoder = new StreamingDecoder(tok, skipSpecialTokens: false);
        var sb = new StringBuilder();
        foreach (int id in ids)
        {
            string piece = decoder.Push(id);
            Assert.DoesNotContain('\uFFFD', piece);
            sb.Append(piece);
        }
        sb.Append(decoder.Flush());
        Assert.Equal(text, sb.ToString());
        var skipping = new StreamingDecoder(tok);
        Assert.Equal("the 中文 17 é the", string.Concat(ids.Select(skipping.Push)));
    }

    [Fact]
    public void UnfinishedCharacterAtEnd_FlushesAsReplacement()
    {
        var decoder = new StreamingDecoder(Tiny());
        Assert.Equal("", decoder.Push(0xE4));
        Assert.Equal("", decoder.Push(0xB8));
        Assert.Equal(2, decoder.PendingBytes);
        Assert.Equal("\uFFFD", decoder.Flush());
        // An invalid byte is not held (nothing could complete it).
        Assert.Equal("\uFFFD", decoder.Push(0xFF));
    }

    [Theory]
    [InlineData(new byte[] { 0x61 }, 1)]
    [InlineData(new byte[] { 0x61, 0xC3 }, 1)]
    [InlineData(new byte[] { 0xC3, 0xA9 }, 2)]
    [InlineData(new byte[] { 0xF0, 0x9F, 0x98 }, 0)]
    [InlineData(new byte[] { 0xF0, 0x9F, 0x98, 0x80 }, 4)]
    [InlineData(new byte[] { 0x80, 0x80, 0x80, 0x80 }, 4)]
    public void CompletePrefixLength_HandWorked(byte[] bytes, int expected) =>
        Assert.Equal(expected, StreamingDecoder.CompletePrefixLength(bytes));
}

public sealed class TextStopMatcherTests
{
    [Fact]
    public void StopSplitAcrossPushes_HoldsPrefix_ThenStopsBeforeIt()
    {
        var m = new TextStopMatcher(["\nA:", "<end>"]);
        Assert.Equal("4*9=36", m.Push("4*9=36"));
        Assert.Equal("", m.Push("\n"));          // could be the start of "\nA:"
        Assert.Equal("", m.Push("A"));
        Assert.False(m.Stopped);
        Assert.Equal("", m.Push(": 47"));
        Assert.True(m.Stopped);
        Assert.Equal("\nA:", m.MatchedStop);
        Assert.Equal("", m.Push("more"));
        Assert.Equal("", m.Flush());
    }

    [Fact]
    public void FalseStart_IsReleased()
    {
        var m = new TextStopMatcher(["\nA:"]);
        Assert.Equal("x", m.Push("x\n"));
        Assert.Equal("\nB", m.Push("B"));
        Assert.Equal("y", m.Push("y\nA"));
        Assert.Equal("\nA", m.Flush());
        Assert.False(m.Stopped);
    }

    [Fact]
    public void EarliestStopWins_AndTextBeforeItIsEmitted()
    {
        var m = new TextStopMatcher(["cd", "b"]);
        Assert.Equal("a", m.Push("abcd"));
        Assert.Equal("b", m.MatchedStop);
        Assert.Throws<ArgumentException>(() => new TextStopMatcher([""]));
    }
}
