using System.Text;

namespace Ponder.Tokenization;

/// <summary>
/// Turns one sequence's token ids, fed one at a time, into text as soon as it is complete UTF-8: a token can end in
/// the middle of a multi-byte character (byte-level BPE, byte fallback), so trailing bytes of an unfinished
/// character are held back until the next token completes them. One instance per sequence; not thread-safe.
/// </summary>
public sealed class StreamingDecoder
{
    private readonly ITokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly byte[] _pending = new byte[4]; // an unfinished UTF-8 character is at most 3 bytes; 4 leaves room
    private int _pendingCount;
    private readonly List<byte> _buffer = new(64);

    /// <summary>Creates a decoder for one sequence.</summary>
    /// <param name="tokenizer">The tokenizer whose <see cref="ITokenizer.TokenBytes"/> define each token's bytes.</param>
    /// <param name="skipSpecialTokens">Whether special tokens (EOS, chat markers) produce no text.</param>
    public StreamingDecoder(ITokenizer tokenizer, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>Adds one token; returns the text it completes (possibly empty).</summary>
    public string Push(int id)
    {
        if (_skipSpecialTokens && IsSpecial(id)) return "";
        byte[] bytes = _tokenizer.TokenBytes(id);
        _buffer.Clear();
        for (int i = 0; i < _pendingCount; i++) _buffer.Add(_pending[i]);
        _buffer.AddRange(bytes);
        int complete = CompletePrefixLength(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_buffer));
        _pendingCount = _buffer.Count - complete;
        for (int i = 0; i < _pendingCount; i++) _pending[i] = _buffer[complete + i];
        return complete == 0 ? "" : Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_buffer)[..complete]);
    }

    /// <summary>Ends the sequence: returns any held-back bytes (an unfinished character decodes to U+FFFD).</summary>
    public string Flush()
    {
        string text = _pendingCount == 0 ? "" : Encoding.UTF8.GetString(_pending, 0, _pendingCount);
        _pendingCount = 0;
        return text;
    }

    /// <summary>Number of bytes held back, waiting for the rest of a character.</summary>
    public int PendingBytes => _pendingCount;

    private bool IsSpecial(int id) => _tokenizer switch
    {
        ByteLevelBpeTokenizer b => b.IsSpecial(id),
        SentencePieceBpeTokenizer s => s.TypeOf(id) is PieceType.Control or PieceType.Unknown or PieceType.Unused,
        _ => false,
    };

    /// <summary>
    /// Length of the longest prefix that does not end inside a character that later bytes could still complete.
    /// Only an incomplete but so-far-valid sequence at the very end is held; invalid bytes pass through (to U+FFFD).
    /// </summary>
    internal static int CompletePrefixLength(ReadOnlySpan<byte> bytes)
    {
        int n = bytes.Length;
        // Look back at most 3 bytes for the lead byte of the last character.
        for (int back = 1; back <= Math.Min(3, n); back++)
        {
            byte b = bytes[n - back];
            if ((b & 0xC0) == 0x80) continue; // continuation byte: keep looking for the lead
            int need = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xC2 && b <= 0xDF ? 2 : 1;
            return need > back ? n - back : n;
        }
        return n;
    }
}
