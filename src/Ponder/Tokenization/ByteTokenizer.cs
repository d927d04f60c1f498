using System.Text;

namespace Ponder.Tokenization;

/// <summary>
/// Raw UTF-8 bytes as tokens: ids 0..255 are the bytes, ids from 256 up are specials with no text. The vocabulary of
/// Ponder's own models (<see cref="PonderBos"/>, <see cref="PonderEos"/>, <see cref="PonderPad"/>: 259 ids) and the
/// tokenizer of models that ship none (random models).
/// </summary>
public sealed class ByteTokenizer : ITokenizer
{
    /// <summary>Beginning of sequence in Ponder's own models.</summary>
    public const int PonderBos = 256;
    /// <summary>End of sequence in Ponder's own models (the policy stops here).</summary>
    public const int PonderEos = 257;
    /// <summary>Padding in Ponder's own models (never a training target).</summary>
    public const int PonderPad = 258;
    /// <summary>Vocabulary size of Ponder's own models: 256 bytes + 3 specials.</summary>
    public const int PonderVocabSize = 259;

    /// <summary>The special tokens' text forms in Ponder's own models, by id.</summary>
    public static IReadOnlyDictionary<string, int> PonderSpecials { get; } =
        new Dictionary<string, int> { ["<|bos|>"] = PonderBos, ["<|eos|>"] = PonderEos, ["<|pad|>"] = PonderPad };

    /// <summary>Ponder's own models' vocabulary (BOS 256, EOS 257, PAD 258; BOS is written by the caller, not by <see cref="Encode"/>).</summary>
    public static ByteTokenizer Ponder { get; } = new(PonderVocabSize, [PonderEos], PonderBos);

    readonly int[] _eos;

    /// <summary>Creates a byte tokenizer.</summary>
    /// <param name="vocabSize">Ids the model has; at least 128 so every ASCII character has its id (most models: 256 and up).</param>
    /// <param name="eosIds">Ids that end generation (may be empty).</param>
    /// <param name="bosId">Beginning-of-sequence id, if any; <see cref="Encode"/> never writes it.</param>
    public ByteTokenizer(int vocabSize, IReadOnlyList<int>? eosIds = null, int? bosId = null)
    {
        if (vocabSize < 128) throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "a byte tokenizer needs at least the 128 ASCII ids");
        _eos = [.. eosIds ?? []];
        foreach (int id in _eos)
            if (id < 0 || id >= vocabSize) throw new ArgumentOutOfRangeException(nameof(eosIds), id, $"EOS id {id} is outside the vocabulary [0, {vocabSize})");
        if (bosId is < 0 || bosId >= vocabSize) throw new ArgumentOutOfRangeException(nameof(bosId), bosId, $"BOS id is outside the vocabulary [0, {vocabSize})");
        VocabSize = vocabSize;
        BosId = bosId;
    }

    /// <inheritdoc/>
    public int VocabSize { get; }
    /// <inheritdoc/>
    public int? BosId { get; }
    /// <inheritdoc/>
    public IReadOnlyList<int> EosIds => _eos;
    /// <inheritdoc/>
    public bool AddBos => false;

    /// <summary>The UTF-8 bytes of <paramref name="text"/> as ids. A byte the vocabulary lacks (&gt;= <see cref="VocabSize"/>) throws naming it.</summary>
    public int[] Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        var ids = new int[bytes.Length];
        for (int i = 0; i < bytes.Length; i++)
        {
            if (bytes[i] >= VocabSize)
                throw new ArgumentException($"byte 0x{bytes[i]:X2} at {i} has no id in a {VocabSize}-id byte vocabulary", nameof(text));
            ids[i] = bytes[i];
        }
        return ids;
    }

    /// <summary>The text of the byte ids; specials (and ids out of range) have no text.</summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var bytes = new byte[ids.Length];
        int n = 0;
        foreach (int id in ids) if (id is >= 0 and < 256) bytes[n++] = (byte)id;
        return Encoding.UTF8.GetString(bytes, 0, n);
    }

    /// <inheritdoc/>
    public byte[] TokenBytes(int id) => id is >= 0 and < 256 ? [(byte)id] : [];
}
