using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Ponder.Tokenization;

/// <summary>
/// The encoder of a SentencePiece-style Hugging Face tokenizer.json (Llama 2, Mistral: BPE with byte fallback, "▁" for
/// spaces), as the tokenizers library runs it: added tokens are cut out of the raw text first; each other piece goes
/// through the normalizer (Prepend, Replace, Unicode forms) and the pre-tokenizer (Metaspace); each word is split into
/// characters (unknown ones become their UTF-8 byte pieces "&lt;0xNN&gt;", else the unknown token) and pairs are merged
/// by merge rank, lowest rank first and leftmost first among equal ranks. (SentencePiece itself merges by the score of
/// the merged piece, which orders long runs of one character differently.)
/// </summary>
internal sealed class HuggingFaceBpe
{
    const char Meta = '\u2581';

    readonly Dictionary<string, int> _vocab;
    readonly Dictionary<int, int> _charIds = [];                 // code point -> id of the one-character piece
    readonly Dictionary<long, (int Rank, int Id)> _merges = new(PairComparer.Instance);  // (left id << 32 | right id) -> rank, merged id
    readonly int[] _byteIds = new int[256];                      // -1 when "<0xNN>" is not in the vocabulary
    readonly bool _byteFallback, _fuseUnk, _ignoreMerges;
    readonly int? _unkId;
    readonly SplitPreTokenizer _addedSplitter;
    readonly SplitPreTokenizer _ordinarySplitter;  // non-special added tokens only: user text
    readonly Dictionary<string, int> _ordinaryAdded;
    readonly Dictionary<string, int> _added;
    readonly List<Func<string, string>> _normalizers = [];
    readonly Metaspace? _metaspace;

    sealed record Metaspace(char Replacement, string PrependScheme, bool Split);

    public HuggingFaceBpe(string path, IReadOnlyDictionary<string, int> vocab, IReadOnlyList<(string Left, string Right)> merges,
        IReadOnlyList<AddedToken> added, JsonElement model, JsonElement normalizer, JsonElement preTokenizer)
    {
        _vocab = new Dictionary<string, int>(vocab, StringComparer.Ordinal);
        foreach (var (token, id) in vocab)
        {
            if (token.Length == 1 || (token.Length == 2 && char.IsSurrogatePair(token[0], token[1]))) _charIds[char.ConvertToUtf32(token, 0)] = id;
        }
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (left, right) = merges[rank];
            if (!vocab.TryGetValue(left, out int l) || !vocab.TryGetValue(right, out int r) || !vocab.TryGetValue(left + right, out int m))
                throw new InvalidDataException($"{path}: merge {rank} (\"{left}\" + \"{right}\") refers to a token that is not in the vocabulary");
            _merges.TryAdd(Key(l, r), (rank, m));
        }
        for (int b = 0; b < 256; b++) _byteIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1;
        _byteFallback = model.TryGetProperty("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True;
        _fuseUnk = model.TryGetProperty("fuse_unk", out var fu) && fu.ValueKind == JsonValueKind.True;
        _ignoreMerges = model.TryGetProperty("ignore_merges", out var im) && im.ValueKind == JsonValueKind.True;
        if (model.TryGetProperty("unk_token", out var unk) && unk.ValueKind == JsonValueKind.String)
        {
            string unkToken = unk.GetString()!;
            _unkId = vocab.TryGetValue(unkToken, out int u) ? u : added.Where(a => a.Content == unkToken).Select(a => (int?)a.Id).FirstOrDefault()
                ?? throw new InvalidDataException($"{path}: model.unk_token \"{unkToken}\" is not in the vocabulary");
        }
        _added = added.GroupBy(a => a.Content, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First().Id, StringComparer.Ordinal);
        _addedSplitter = new SplitPreTokenizer(_added.Keys, []);
        _ordinaryAdded = added.Where(a => !a.Special).GroupBy(a => a.Content, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First().Id, StringComparer.Ordinal);
        _ordinarySplitter = new SplitPreTokenizer(_ordinaryAdded.Keys, []);

        foreach (JsonElement n in HuggingFaceTokenizerJson.Flatten(normalizer, "normalizers"))
        {
            string type = HuggingFaceTokenizerJson.TypeOf(n);
            switch (type)
            {
                case "Prepend":
                {
                    string prefix = n.TryGetProperty("prepend", out var pre) && pre.ValueKind == JsonValueKind.String ? pre.GetString()!
                        : throw new InvalidDataException($"{path}: the Prepend normalizer has no string 'prepend'");
                    _normalizers.Add(s => s.Length == 0 ? s : prefix + s);
                    break;
                }
                case "Replace":
                {
                    var (pattern, content) = ReplaceRule(path, n);
                    _normalizers.Add(s => pattern.Replace(s, content));
                    break;
                }
                case "NFC": _normalizers.Add(s => s.Normalize(NormalizationForm.FormC)); break;
                case "NFD": _normalizers.Add(s => s.Normalize(NormalizationForm.FormD)); break;
                case "NFKC": _normalizers.Add(s => s.Normalize(NormalizationForm.FormKC)); break;
                case "NFKD": _normalizers.Add(s => s.Normalize(NormalizationForm.FormKD)); break;
                default:
                    throw new NotSupportedException($"{path}: normalizer \"{type}\" is not supported for SentencePiece-style BPE (Prepend, Replace, NFC, NFD, NFKC, NFKD, Sequence are)");
            }
        }
        foreach (JsonElement p in HuggingFaceTokenizerJson.Flatten(preTokenizer, "pretokenizers"))
        {
            string type = HuggingFaceTokenizerJson.TypeOf(p);
            if (type != "Metaspace" || _metaspace is not null)
                throw new NotSupportedException($"{path}: pre-tokenizer \"{type}\" is not supported for SentencePiece-style BPE (one Metaspace is)");
            string replacement = p.TryGetProperty("replacement", out var rep) && rep.ValueKind == JsonValueKind.String ? rep.GetString()! : Meta.ToString();
            if (replacement.Length != 1) throw new NotSupportedException($"{path}: Metaspace replacement \"{replacement}\" is not one character");
            string scheme = p.TryGetProperty("prepend_scheme", out var ps) && ps.ValueKind == JsonValueKind.String ? ps.GetString()!
                : p.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.False ? "never" : "always";
            if (scheme is not ("always" or "first" or "never")) throw new NotSupportedException($"{path}: Metaspace prepend_scheme \"{scheme}\" is not supported");
            bool split = !p.TryGetProperty("split", out var sp) || sp.ValueKind != JsonValueKind.False;
            _metaspace = new Metaspace(replacement[0], scheme, split);
        }
    }

    static (Regex Pattern, string Content) ReplaceRule(string path, JsonElement n)
    {
        string content = n.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()! : "";
        if (n.TryGetProperty("pattern", out var pattern) && pattern.ValueKind == JsonValueKind.Object)
        {
            if (pattern.TryGetProperty("String", out var s) && s.ValueKind == JsonValueKind.String)
                return (new Regex(Regex.Escape(s.GetString()!), RegexOptions.CultureInvariant), content.Replace("$", "$$", StringComparison.Ordinal));
            if (pattern.TryGetProperty("Regex", out var r) && r.ValueKind == JsonValueKind.String)
                return (HuggingFaceTokenizerJson.MakeRegex(path, r.GetString()!), content.Replace("$", "$$", StringComparison.Ordinal));
        }
        throw new InvalidDataException($"{path}: Replace normalizer has no String or Regex pattern");
    }

    static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    // long's own hash (high ^ low) maps (a, b) and (b, a), and every pair with the same XOR, to one bucket: a
    // vocabulary's merges then chain up to ~150 deep. A multiplicative mix spreads them.
    sealed class PairComparer : IEqualityComparer<long>
    {
        public static readonly PairComparer Instance = new();
        public bool Equals(long x, long y) => x == y;
        public int GetHashCode(long key) => (int)((ulong)key * 0x9E3779B97F4A7C15UL >> 32);
    }

    /// <summary>Appends the ids of <paramref name="text"/> (no BOS) to <paramref name="ids"/>; special added tokens are matched only when <paramref name="parseSpecial"/>.</summary>
    public void Encode(string text, List<int> ids, bool parseSpecial = true)
    {
        var (splitter, added) = parseSpecial ? (_addedSplitter, _added) : (_ordinarySplitter, _ordinaryAdded);
        foreach (var (offset, length) in splitter.PreTokenize(text))
        {
            string piece = text.Substring(offset, length);
            if (added.TryGetValue(piece, out int addedId)) { ids.Add(addedId); continue; }
            foreach (var n in _normalizers) piece = n(piece);
            if (_metaspace is null) { EncodeWord(piece, ids); continue; }
            piece = piece.Replace(' ', _metaspace.Replacement);
            bool prepend = _metaspace.PrependScheme == "always" || (_metaspace.PrependScheme == "first" && offset == 0);
            if (prepend && piece.Length > 0 && piece[0] != _metaspace.Replacement) piece = _metaspace.Replacement + piece;
            if (!_metaspace.Split) { EncodeWord(piece, ids); continue; }
            // Split before each replacement character (the delimiter is merged with what follows it).
            int start = 0;
            for (int i = 1; i <= piece.Length; i++)
            {
                if (i < piece.Length && piece[i] != _metaspace.Replacement) continue;
                EncodeWord(piece[start..i], ids);
                start = i;
            }
        }
    }

    /// <summary>BPE over one word: characters (byte fallback or unknown for those outside the vocabulary), then merges by rank.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void EncodeWord(string word, List<int> ids)
    {
        if (word.Length == 0) return;
        if (_ignoreMerges && _vocab.TryGetValue(word, out int whole)) { ids.Add(whole); return; }
        var symbols = new List<int>(word.Length);
        bool lastWasUnk = false;
        for (int i = 0; i < word.Length; i++)
        {
            int width = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            int cp = width == 2 ? char.ConvertToUtf32(word[i], word[i + 1]) : word[i];
            if (_charIds.TryGetValue(cp, out int id))
            {
                symbols.Add(id);
                lastWasUnk = false;
            }
            else if (_byteFallback && ByteIds(word.AsSpan(i, width), symbols)) lastWasUnk = false;
            else if (_unkId is int unk)
            {
                if (!(_fuseUnk && lastWasUnk)) symbols.Add(unk);
                lastWasUnk = true;
            }
            // else: no piece, no byte piece and no unknown token: the tokenizers library drops the character, and so do we.
            i += width - 1;
        }
        MergeAll(symbols);
        ids.AddRange(symbols);
    }

    bool ByteIds(ReadOnlySpan<char> ch, List<int> into)
    {
        Span<byte> utf8 = stackalloc byte[4];
        int n = Encoding.UTF8.GetBytes(ch, utf8);
        for (int k = 0; k < n; k++)
            if (_byteIds[utf8[k]] < 0) return false;
        for (int k = 0; k < n; k++) into.Add(_byteIds[utf8[k]]);
        return true;
    }

    // The merge loop of the tokenizers library's Word::merge_all: a heap of candidate pairs ordered by (rank, position),
    // entries invalidated lazily when either side has changed since they were pushed. An entry is just rank << 32 | pos:
    // a pair's rank identifies its merge, so "the pair at pos still has this rank" is the library's validity check.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void MergeAll(List<int> symbols)
    {
        int n = symbols.Count;
        if (n < 2) return;
        var id = symbols.ToArray();
        var prev = new int[n];
        var next = new int[n];
        var alive = new bool[n];
        for (int i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; alive[i] = true; }
        var heap = new MinHeap(n);
        for (int i = 0; i + 1 < n; i++)
            if (_merges.TryGetValue(Key(id[i], id[i + 1]), out var m)) heap.Push(Priority(m.Rank, i));
        while (heap.Count > 0)
        {
            long top = heap.Pop();
            int pos = (int)(uint)top, rank = (int)(top >> 32);
            if (!alive[pos] || next[pos] < 0) continue;
            int right = next[pos];
            if (!_merges.TryGetValue(Key(id[pos], id[right]), out var current) || current.Rank != rank) continue;
            id[pos] = current.Id;
            alive[right] = false;
            next[pos] = next[right];
            if (next[pos] >= 0) prev[next[pos]] = pos;
            if (prev[pos] >= 0 && _merges.TryGetValue(Key(id[prev[pos]], id[pos]), out var before)) heap.Push(Priority(before.Rank, prev[pos]));
            if (next[pos] >= 0 && _merges.TryGetValue(Key(id[pos], id[next[pos]]), out var after)) heap.Push(Priority(after.Rank, pos));
        }
        symbols.Clear();
        for (int i = 0; i >= 0; i = next[i]) symbols.Add(id[i]);
    }

    /// <summary>A binary min-heap of longs (rank &lt;&lt; 32 | position: lowest rank, then leftmost, first).</summary>
    struct MinHeap(int capacity)
    {
        long[] _items = new long[Math.Max(4, capacity)];
        public int Count { get; private set; }

        public void Push(long item)
        {
            if (Count == _items.Length) Array.Resize(ref _items, _items.Length * 2);
            int i = Count++;
            while (i > 0)
            {
                int parent = (i - 1) >> 1;
                if (_items[parent] <= item) break;
                _items[i] = _items[parent];
                i = parent;
            }
            _items[i] = item;
        }

        public long Pop()
        {
            long top = _items[0], last = _items[--Count];
            int i = 0;
            while (true)
            {
                int child = 2 * i + 1;
                if (child >= Count) break;
                if (child + 1 < Count && _items[child + 1] < _items[child]) child++;
                if (_items[child] >= last) break;
                _items[i] = _items[child];
                i = child;
            }
            if (Count > 0) _items[i] = last;
            return top;
        }
    }

    static long Priority(int rank, int pos) => ((long)rank << 32) | (uint)pos;
}
