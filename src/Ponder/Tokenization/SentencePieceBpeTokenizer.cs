using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace Ponder.Tokenization;

/// <summary>
/// SentencePiece BPE (Llama 2 family: "▁" for spaces, byte-fallback pieces "&lt;0xNN&gt;"). A tokenizer.model or a GGUF
/// "llama" vocabulary (written as a SentencePiece model) is encoded by Microsoft.ML.Tokenizers'
/// <see cref="SentencePieceTokenizer"/> (merges by piece score, as SentencePiece does); a Llama-2-style tokenizer.json
/// by <see cref="HuggingFaceBpe"/> (merges by rank, as Hugging Face's tokenizers library does).
/// </summary>
public sealed class SentencePieceBpeTokenizer : ITokenizer
{
    private const char Meta = '\u2581'; // "▁", SentencePiece's visible space

    private readonly SentencePieceTokenizer? _sp;   // SentencePiece models (tokenizer.model, GGUF "llama")
    private readonly HuggingFaceBpe? _hf;           // a SentencePiece-style tokenizer.json: the tokenizers library's BPE
    private readonly byte[][] _tokenBytes;  // (vocab)
    private readonly PieceType[] _types;    // (vocab)
    private readonly bool _addDummyPrefix;
    private readonly AddedToken[] _specialTokens;           // control pieces with text
    private readonly Lazy<SentencePieceTokenizer>? _ordinarySp;  // _sp matching only user-defined pieces (user text)

    private SentencePieceBpeTokenizer(string source, byte[]? modelBytes, SentencePieceModelProto proto, IReadOnlyList<int> eosIds, bool addBos, HuggingFaceBpe? hf = null)
    {
        Source = source;
        VocabSize = proto.Pieces.Count;
        _types = new PieceType[VocabSize];
        _tokenBytes = new byte[VocabSize][];
        var special = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < VocabSize; id++)
        {
            var piece = proto.Pieces[id];
            _types[id] = piece.Type;
            _tokenBytes[id] = PieceBytes(piece);
            if (piece.Type is PieceType.Control or PieceType.UserDefined && piece.Text.Length > 0) special.TryAdd(piece.Text, id);
        }
        foreach (int id in eosIds.Append(proto.BosId).Append(proto.EosId).Where(i => i >= 0))
        {
            if (id >= VocabSize) throw new InvalidDataException($"{source}: special token id {id} is outside the vocabulary [0, {VocabSize})");
        }
        _addDummyPrefix = proto.AddDummyPrefix;
        _specialTokens = [.. Enumerable.Range(0, VocabSize).Where(id => _types[id] == PieceType.Control && proto.Pieces[id].Text.Length > 0)
            .Select(id => new AddedToken(proto.Pieces[id].Text, id, Special: true))];
        BosId = proto.BosId >= 0 ? proto.BosId : null;
        EosIds = eosIds.Count > 0 ? eosIds : proto.EosId >= 0 ? [proto.EosId] : [];
        AddBos = addBos && BosId is not null;
        _hf = hf;
        if (hf is not null) return;
        if (proto.ByteFallback) CheckBytePieces(source, proto);
        try
        {
            byte[] bytes = modelBytes ?? throw new ArgumentNullException(nameof(modelBytes));
            using var stream = new MemoryStream(bytes, writable: false);
            _sp = SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: false, specialTokens: special);
            var userDefined = special.Where(kv => _types[kv.Value] == PieceType.UserDefined).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
            _ordinarySp = _specialTokens.Length == 0 ? new Lazy<SentencePieceTokenizer>(_sp) : new Lazy<SentencePieceTokenizer>(() =>
            {
                using var again = new MemoryStream(bytes, writable: false);
                return SentencePieceTokenizer.Create(again, addBeginningOfSentence: false, addEndOfSentence: false, specialTokens: userDefined);
            });
        }
        catch (Exception ex) when (ex is not (InvalidDataException or NotSupportedException))
        {
            throw new InvalidDataException($"{source}: Microsoft.ML.Tokenizers rejected the SentencePiece model ({ex.GetType().Name}: {ex.Message})", ex);
        }
    }

    // Microsoft.ML.Tokenizers encodes a byte b without a piece as (the id of "<0x00>") + b, whatever pieces are there:
    // byte fallback needs the 256 byte pieces in order at consecutive ids (as SentencePiece's trainer writes them), or
    // encoding returns wrong ids, even ones outside the vocabulary.
    static void CheckBytePieces(string source, SentencePieceModelProto proto)
    {
        if (proto.Unigram)
            throw new NotSupportedException($"{source}: a Unigram SentencePiece model with byte fallback is not supported (Microsoft.ML.Tokenizers 2.0 offsets its byte pieces from the last one, not <0x00>)");
        int first = proto.Pieces.FindIndex(p => p.Text == "<0x00>");
        if (first < 0) throw new InvalidDataException($"{source}: byte fallback is on but there is no byte piece <0x00>");
        for (int b = 0; b < 256; b++)
        {
            int id = first + b;
            if (id >= proto.Pieces.Count || proto.Pieces[id].Type != PieceType.Byte || proto.Pieces[id].Text != $"<0x{b:X2}>")
                throw new InvalidDataException($"{source}: byte fallback needs the byte pieces <0x00>..<0xFF> at consecutive ids from {first}: id {id} is not the byte piece <0x{b:X2}>");
        }
    }

    /// <summary>Where the vocabulary came from, for error messages.</summary>
    public string Source { get; }
    /// <inheritdoc/>
    public int VocabSize { get; }
    /// <inheritdoc/>
    public int? BosId { get; }
    /// <inheritdoc/>
    public IReadOnlyList<int> EosIds { get; }
    /// <inheritdoc/>
    public bool AddBos { get; }

    /// <summary>The type of piece <paramref name="id"/>.</summary>
    public PieceType TypeOf(int id)
    {
        CheckId(id);
        return _types[id];
    }

    /// <inheritdoc/>
    public IReadOnlyList<AddedToken> SpecialTokens => _specialTokens;

    /// <inheritdoc/>
    public int[] Encode(string text, bool addSpecialTokens = true) => Encode(text, addSpecialTokens, parseSpecial: true);

    /// <inheritdoc/>
    public int[] EncodeOrdinary(string text) => Encode(text, addSpecialTokens: false, parseSpecial: false);

    private int[] Encode(string text, bool addSpecialTokens, bool parseSpecial)
    {
        ArgumentNullException.ThrowIfNull(text);
        bool bos = addSpecialTokens && AddBos;
        if (text.Length == 0) return bos ? [BosId!.Value] : [];
        if (_hf is not null)
        {
            var list = new List<int>(text.Length / 3 + 2);
            if (bos) list.Add(BosId!.Value);
            _hf.Encode(text, list, parseSpecial);
            return [.. list];
        }
        IReadOnlyList<int> ids = (parseSpecial ? _sp! : _ordinarySp!.Value).EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false, considerPreTokenization: true, considerNormalization: true);
        return SpecialTokenIds.WithBos(ids, bos ? BosId : null);
    }

    /// <inheritdoc/>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var bytes = new List<byte>(ids.Length * 4);
        bool first = true;
        foreach (int id in ids)
        {
            CheckId(id);
            if (skipSpecialTokens && IsSpecialType(_types[id])) continue;
            byte[] tokenBytes = _tokenBytes[id];
            // The dummy prefix the encoder added comes back as a leading space on the first piece; drop it (as HF's Strip decoder does).
            if (first && _addDummyPrefix && _types[id] == PieceType.Normal && tokenBytes.Length > 0 && tokenBytes[0] == (byte)' ')
                bytes.AddRange(tokenBytes.AsSpan(1));
            else
                bytes.AddRange(tokenBytes);
            first = false;
        }
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
    }

    /// <inheritdoc/>
    public byte[] TokenBytes(int id)
    {
        CheckId(id);
        return (byte[])_tokenBytes[id].Clone();
    }

    private static bool IsSpecialType(PieceType type) => type is PieceType.Control or PieceType.Unknown or PieceType.Unused;

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)VocabSize)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is outside the vocabulary [0, {VocabSize}) of {Source}");
    }

    private static byte[] PieceBytes(SentencePieceModelProto.Piece piece)
    {
        string text = piece.Text;
        if (piece.Type == PieceType.Byte && text.Length == 6 && text.StartsWith("<0x", StringComparison.Ordinal) && text[5] == '>'
            && byte.TryParse(text.AsSpan(3, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out byte b))
            return [b];
        return Encoding.UTF8.GetBytes(piece.Type is PieceType.Normal or PieceType.UserDefined ? text.Replace(Meta, ' ') : text);
    }

    // ---- construction from the three sources ----

    /// <summary>Loads a SentencePiece tokenizer.model (protobuf).</summary>
    internal static SentencePieceBpeTokenizer FromModelFile(string path, Func<Func<string, int?>, SpecialTokenIds>? resolve)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"tokenizer file not found: {path}", path);
        byte[] bytes = File.ReadAllBytes(path);
        SentencePieceModelProto proto = SentencePieceModelProto.Read(bytes, path);
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < proto.Pieces.Count; i++) ids.TryAdd(proto.Pieces[i].Text, i);
        SpecialTokenIds? special = resolve?.Invoke(name => ids.TryGetValue(name, out int id) ? id : null);
        if (special?.Bos is int bos) proto.BosId = bos;
        return new SentencePieceBpeTokenizer(path, bytes, proto, special?.Eos ?? [], special?.AddBos ?? true);
    }

    /// <summary>Builds from GGUF "llama" vocabulary arrays (token_type uses the same numbering as SentencePiece).</summary>
    internal static SentencePieceBpeTokenizer FromPieces(
        string source, IReadOnlyList<string> tokens, IReadOnlyList<float> scores, IReadOnlyList<int> types,
        int unkId, int bosId, int eosId, IReadOnlyList<int> eosIds, bool addBos, bool addDummyPrefix)
    {
        var proto = new SentencePieceModelProto { UnkId = unkId, BosId = bosId, EosId = eosId, AddDummyPrefix = addDummyPrefix };
        for (int i = 0; i < tokens.Count; i++)
        {
            var type = (PieceType)types[i];
            if (!Enum.IsDefined(type)) throw new InvalidDataException($"{source}: token {i} (\"{tokens[i]}\") has unknown token type {types[i]}");
            proto.Pieces.Add(new SentencePieceModelProto.Piece(tokens[i], scores[i], type));
            if (type == PieceType.Byte) proto.ByteFallback = true;
        }
        return new SentencePieceBpeTokenizer(source, proto.Write(), proto, eosIds, addBos);
    }

    /// <summary>
    /// A Llama-2-style tokenizer.json (BPE with byte_fallback, "▁" for spaces): encoded by <see cref="HuggingFaceBpe"/>
    /// (merges by rank, as the tokenizers library does); pieces, types and bytes for decoding as for a SentencePiece model.
    /// </summary>
    internal static SentencePieceBpeTokenizer FromHuggingFaceBpe(
        string path, IReadOnlyDictionary<string, int> vocab, IReadOnlyList<(string Left, string Right)> merges,
        IReadOnlyList<AddedToken> added, JsonElement model, JsonElement normalizer, JsonElement preTokenizer, SpecialTokenIds ids)
    {
        int vocabSize = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max() + 1, added.Count == 0 ? 0 : added.Max(a => a.Id) + 1);
        var text = new string?[vocabSize];
        foreach (var (token, id) in vocab) text[id] = token;
        foreach (AddedToken a in added) text[a.Id] = a.Content;
        for (int i = 0; i < vocabSize; i++)
        {
            if (text[i] is null) throw new InvalidDataException($"{path}: id {i} has no token; a SentencePiece vocabulary must be dense");
        }
        var encoder = new HuggingFaceBpe(path, vocab, merges, added, model, normalizer, preTokenizer);

        var specialIds = new HashSet<int>(added.Where(a => a.Special).Select(a => a.Id));
        var userIds = new HashSet<int>(added.Where(a => !a.Special).Select(a => a.Id));
        int unkId = -1;
        var proto = new SentencePieceModelProto();
        for (int id = 0; id < vocabSize; id++)
        {
            string piece = text[id]!;
            PieceType type = piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>' ? PieceType.Byte
                : piece == "<unk>" ? PieceType.Unknown
                : specialIds.Contains(id) ? PieceType.Control
                : userIds.Contains(id) ? PieceType.UserDefined
                : PieceType.Normal;
            if (type == PieceType.Unknown && unkId < 0) unkId = id;
            if (type == PieceType.Byte) proto.ByteFallback = true;
            proto.Pieces.Add(new SentencePieceModelProto.Piece(piece, 0, type));
        }
        proto.UnkId = unkId < 0 ? 0 : unkId;
        proto.BosId = ids.Bos ?? -1;
        proto.EosId = ids.Eos.Count > 0 ? ids.Eos[0] : -1;
        proto.AddDummyPrefix = HasDummyPrefix(normalizer, preTokenizer);
        return new SentencePieceBpeTokenizer(path, null, proto, ids.Eos, ids.AddBos, encoder);
    }

    private static bool HasDummyPrefix(JsonElement normalizer, JsonElement preTokenizer)
    {
        foreach (JsonElement n in HuggingFaceTokenizerJson.Flatten(normalizer, "normalizers"))
        {
            if (HuggingFaceTokenizerJson.TypeOf(n) == "Prepend") return true;
        }
        foreach (JsonElement p in HuggingFaceTokenizerJson.Flatten(preTokenizer, "pretokenizers"))
        {
            if (HuggingFaceTokenizerJson.TypeOf(p) != "Metaspace") continue;
            if (p.TryGetProperty("prepend_scheme", out JsonElement scheme) && scheme.ValueKind == JsonValueKind.String) return scheme.GetString() != "never";
            if (p.TryGetProperty("add_prefix_space", out JsonElement aps)) return aps.ValueKind == JsonValueKind.True;
            return true;
        }
        return false;
    }
}
