using System.Text;
using Microsoft.ML.Tokenizers;

namespace Ponder.Tokenization;

/// <summary>A token that is matched whole in the text before BPE runs (HF "added_tokens", GGUF control tokens).</summary>
/// <param name="Content">The exact text of the token.</param>
/// <param name="Id">Its id.</param>
/// <param name="Special">True for control tokens (skipped by <c>Decode(..., skipSpecialTokens: true)</c>).</param>
public readonly record struct AddedToken(string Content, int Id, bool Special);

/// <summary>
/// Byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM, Ponder's own byte vocabulary) on top of Microsoft.ML.Tokenizers'
/// <see cref="BpeTokenizer"/>. Decoding is done here from each token's bytes, so it is exact and streamable.
/// </summary>
public sealed class ByteLevelBpeTokenizer : ITokenizer
{
    private readonly BpeTokenizer _bpe;
    private readonly Lazy<BpeTokenizer> _ordinaryBpe;  // the same BPE matching only non-special added tokens (user text)
    private readonly AddedToken[] _specialTokens;
    private readonly byte[][] _tokenBytes;   // (vocab) raw bytes of each id; empty for unused ids
    private readonly bool[] _isSpecial;      // (vocab)
    private readonly Dictionary<string, int> _tokenToId;
    private readonly bool _nfc;
    private readonly bool _addPrefixSpace;

    internal ByteLevelBpeTokenizer(
        string source,
        IReadOnlyDictionary<string, int> vocab,
        IReadOnlyList<(string Left, string Right)> merges,
        IReadOnlyList<AddedToken> addedTokens,
        SplitPreTokenizer preTokenizer,
        SpecialTokenIds specialIds,
        bool nfc = false,
        bool addPrefixSpace = false)
    {
        Source = source;
        PreTokenizer = preTokenizer;
        _nfc = nfc;
        _addPrefixSpace = addPrefixSpace;

        int maxId = -1;
        foreach (var (token, id) in vocab)
        {
            if (id < 0) throw new InvalidDataException($"{source}: token \"{token}\" has negative id {id}");
            maxId = Math.Max(maxId, id);
        }
        foreach (AddedToken added in addedTokens)
        {
            if (added.Id < 0) throw new InvalidDataException($"{source}: added token \"{added.Content}\" has negative id {added.Id}");
            maxId = Math.Max(maxId, added.Id);
        }
        if (maxId < 0) throw new InvalidDataException($"{source}: the vocabulary is empty");
        VocabSize = maxId + 1;

        _tokenBytes = new byte[VocabSize][];
        Array.Fill(_tokenBytes, Array.Empty<byte>());
        _isSpecial = new bool[VocabSize];
        _tokenToId = new Dictionary<string, int>(vocab.Count + addedTokens.Count, StringComparer.Ordinal);
        var owner = new string?[VocabSize];
        foreach (var (token, id) in vocab)
        {
            // Two tokens on one id would decode ambiguously (and the BPE model cannot be built).
            if (owner[id] is { } other) throw new InvalidDataException($"{source}: tokens \"{other}\" and \"{token}\" both have id {id} in the vocabulary");
            owner[id] = token;
            // A vocabulary entry outside the byte alphabet (rare: some files list special tokens there) stands for its UTF-8.
            _tokenBytes[id] = ByteLevelAlphabet.TryDecode(token) ?? Encoding.UTF8.GetBytes(token);
            _tokenToId[token] = id;
        }
        var special = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (AddedToken added in addedTokens)
        {
            _tokenBytes[added.Id] = Encoding.UTF8.GetBytes(added.Content);
            _isSpecial[added.Id] = added.Special;
            _tokenToId[added.Content] = added.Id;
            special[added.Content] = added.Id;
        }

        var mergeLines = new List<string>(merges.Count);
        for (int i = 0; i < merges.Count; i++)
        {
            var (left, right) = merges[i];
            foreach (string part in new[] { left, right, left + right })
            {
                if (!vocab.ContainsKey(part))
                    throw new InvalidDataException($"{source}: merge {i} (\"{left}\" + \"{right}\") refers to \"{part}\", which is not in the vocabulary");
            }
            if (left.Contains(' ') || right.Contains(' '))
                throw new NotSupportedException($"{source}: merge {i} has a token containing a space, which Microsoft.ML.Tokenizers cannot represent");
            mergeLines.Add(left + " " + right);
        }

        foreach (int id in specialIds.All())
        {
            if (id < 0 || id >= VocabSize) throw new InvalidDataException($"{source}: special token id {id} is outside the vocabulary [0, {VocabSize})");
        }
        BosId = specialIds.Bos;
        EosIds = specialIds.Eos;
        AddBos = specialIds.AddBos && BosId is not null;

        try
        {
            _bpe = BpeTokenizer.Create(new BpeOptions(vocab)
            {
                Merges = mergeLines,
                ByteLevel = true,
                SpecialTokens = special,
                PreTokenizer = preTokenizer,
            });
        }
        catch (ArgumentException e)
        {
            // What the checks above do not catch, Microsoft.ML.Tokenizers refuses with an unnamed ArgumentException.
            throw new InvalidDataException($"{source}: the BPE model cannot be built ({e.Message})", e);
        }
        _specialTokens = [.. addedTokens.Where(a => a.Special)];
        var ordinary = addedTokens.Where(a => !a.Special).ToDictionary(a => a.Content, a => a.Id, StringComparer.Ordinal);
        // Built on first use (a server encoding user text): most hosts never need a second copy of the merge table.
        _ordinaryBpe = _specialTokens.Length == 0 ? new Lazy<BpeTokenizer>(_bpe) : new Lazy<BpeTokenizer>(() => BpeTokenizer.Create(new BpeOptions(vocab)
        {
            Merges = mergeLines,
            ByteLevel = true,
            SpecialTokens = ordinary.Count == 0 ? null : ordinary,
            PreTokenizer = preTokenizer,
        }));
    }

    /// <inheritdoc/>
    public IReadOnlyList<AddedToken> SpecialTokens => _specialTokens;

    /// <inheritdoc/>
    public int[] EncodeOrdinary(string text) => EncodeWith(_ordinaryBpe.Value, text, addSpecialTokens: false);

    internal SplitPreTokenizer PreTokenizer { get; }

    /// <summary>Whether a space is put before text that does not start with one (ByteLevel's add_prefix_space).</summary>
    internal bool AddPrefixSpace => _addPrefixSpace;

    /// <summary>Where the vocabulary came from (a path, or a GGUF file name), for error messages.</summary>
    public string Source { get; }
    /// <inheritdoc/>
    public int VocabSize { get; }
    /// <inheritdoc/>
    public int? BosId { get; }
    /// <inheritdoc/>
    public IReadOnlyList<int> EosIds { get; }
    /// <inheritdoc/>
    public bool AddBos { get; }

    /// <summary>The id of a token given in its vocabulary spelling (byte alphabet) or an added token's text; null when absent.</summary>
    public int? TokenToId(string token) => _tokenToId.TryGetValue(token, out int id) ? id : null;

    /// <summary>Whether <paramref name="id"/> is a special (control) token.</summary>
    public bool IsSpecial(int id) => (uint)id < (uint)VocabSize && _isSpecial[id];

    /// <inheritdoc/>
    public int[] Encode(string text, bool addSpecialTokens = true) => EncodeWith(_bpe, text, addSpecialTokens);

    private int[] EncodeWith(BpeTokenizer bpe, string text, bool addSpecialTokens)
    {
        ArgumentNullException.ThrowIfNull(text);
        // Under InvariantGlobalization, string.Normalize leaves non-ASCII text as is (see NOTES); text is almost always NFC already.
        if (_nfc) text = text.Normalize(NormalizationForm.FormC);
        if (_addPrefixSpace && text.Length > 0 && !char.IsWhiteSpace(text[0])) text = " " + text;
        IReadOnlyList<int> ids = text.Length == 0 ? [] : bpe.EncodeToIds(text, considerPreTokenization: true, considerNormalization: false);
        return SpecialTokenIds.WithBos(ids, addSpecialTokens && AddBos ? BosId : null);
    }

    /// <inheritdoc/>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var bytes = new List<byte>(ids.Length * 4);
        foreach (int id in ids)
        {
            CheckId(id);
            if (skipSpecialTokens && _isSpecial[id]) continue;
            bytes.AddRange(_tokenBytes[id]);
        }
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
    }

    /// <inheritdoc/>
    public byte[] TokenBytes(int id)
    {
        CheckId(id);
        return (byte[])_tokenBytes[id].Clone();
    }

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)VocabSize)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is outside the vocabulary [0, {VocabSize}) of {Source}");
    }
}
