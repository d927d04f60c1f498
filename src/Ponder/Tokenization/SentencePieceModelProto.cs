using System.Buffers.Binary;
using System.Text;

namespace Ponder.Tokenization;

/// <summary>Piece types shared by SentencePiece's ModelProto and GGUF's tokenizer.ggml.token_type.</summary>
public enum PieceType
{
    /// <summary>An ordinary piece.</summary>
    Normal = 1,
    /// <summary>The unknown-token piece.</summary>
    Unknown = 2,
    /// <summary>A control token (BOS, EOS, chat markers).</summary>
    Control = 3,
    /// <summary>A user-defined piece, matched whole in the text.</summary>
    UserDefined = 4,
    /// <summary>An unused slot.</summary>
    Unused = 5,
    /// <summary>A byte-fallback piece "&lt;0xNN&gt;".</summary>
    Byte = 6,
}

/// <summary>
/// The subset of sentencepiece_model.proto that a BPE tokenizer needs, read from and written to protobuf bytes by hand
/// (field numbers from sentencepiece_model.proto), so that GGUF and tokenizer.json vocabularies can be handed to
/// Microsoft.ML.Tokenizers' SentencePiece implementation, which only loads a serialized model.
/// </summary>
internal sealed class SentencePieceModelProto
{
    public readonly record struct Piece(string Text, float Score, PieceType Type);

    public List<Piece> Pieces { get; } = [];
    public bool ByteFallback { get; set; }
    public int UnkId { get; set; }
    public int BosId { get; set; } = 1;
    public int EosId { get; set; } = 2;
    public int PadId { get; set; } = -1;
    public bool AddDummyPrefix { get; set; } = true;
    public bool RemoveExtraWhitespaces { get; set; }
    public bool EscapeWhitespaces { get; set; } = true;
    /// <summary>trainer_spec.model_type as read: Unigram, the proto's default, unless it says BPE; <see cref="Write"/> always writes BPE.</summary>
    public bool Unigram { get; private set; }

    private const int ModelTypeUnigram = 1;
    private const int ModelTypeBpe = 2;

    public byte[] Write()
    {
        var model = new ProtoWriter();
        foreach (Piece p in Pieces)
        {
            var piece = new ProtoWriter();
            piece.String(1, p.Text);
            piece.Float(2, p.Score);
            piece.Varint(3, (ulong)p.Type);
            model.Message(1, piece);
        }
        var trainer = new ProtoWriter();
        trainer.Varint(3, ModelTypeBpe);
        trainer.Varint(4, (ulong)Pieces.Count);
        trainer.Varint(35, ByteFallback ? 1UL : 0UL);
        trainer.Varint(40, (ulong)(long)UnkId);   // int32 fields: negatives are sign-extended to 64 bits
        trainer.Varint(41, (ulong)(long)BosId);
        trainer.Varint(42, (ulong)(long)EosId);
        trainer.Varint(43, (ulong)(long)PadId);
        model.Message(2, trainer);
        var normalizer = new ProtoWriter();
        normalizer.String(1, "identity");
        normalizer.Varint(3, AddDummyPrefix ? 1UL : 0UL);
        normalizer.Varint(4, RemoveExtraWhitespaces ? 1UL : 0UL);
        normalizer.Varint(5, EscapeWhitespaces ? 1UL : 0UL);
        model.Message(3, normalizer);
        return model.ToArray();
    }

    /// <summary>Reads the pieces and the flags we use; other fields are skipped.</summary>
    public static SentencePieceModelProto Read(ReadOnlySpan<byte> data, string source)
    {
        var proto = new SentencePieceModelProto { Unigram = true };
        bool hasTrainer = false, hasNormalizer = false;
        var reader = new ProtoReader(data, source);
        while (reader.Next(out int field, out int wire))
        {
            switch (field, wire)
            {
                case (1, 2):
                    {
                        var pr = new ProtoReader(reader.Bytes(), source);
                        string text = "";
                        float score = 0;
                        var type = PieceType.Normal;
                        int index = proto.Pieces.Count;
                        while (pr.Next(out int f, out int w))
                        {
                            if (f == 1 && w == 2)
                            {
                                // A protobuf string is UTF-8; decoding bad bytes to U+FFFD would make a piece no text can match.
                                ReadOnlySpan<byte> utf8 = pr.Bytes();
                                if (!System.Text.Unicode.Utf8.IsValid(utf8)) throw new InvalidDataException($"{source}: pieces[{index}].piece is not valid UTF-8");
                                text = Encoding.UTF8.GetString(utf8);
                            }
                            else if (f == 2 && w == 5) score = pr.Fixed32Float();
                            else if (f == 3 && w == 0)
                            {
                                ulong v = pr.Varint();
                                type = v is >= (ulong)PieceType.Normal and <= (ulong)PieceType.Byte ? (PieceType)(int)v
                                    : throw new InvalidDataException($"{source}: pieces[{index}].type {(long)v} is not a SentencePiece piece type (1-6)");
                            }
                            else pr.Skip(w);
                        }
                        proto.Pieces.Add(new Piece(text, score, type));
                        break;
                    }
                case (2, 2):
                    {
                        hasTrainer = true;
                        var tr = new ProtoReader(reader.Bytes(), source);
                        while (tr.Next(out int f, out int w))
                        {
                            if (w != 0) { tr.Skip(w); continue; }
                            long v = (long)tr.Varint();
                            switch (f)
                            {
                                case 3 when v is not (ModelTypeUnigram or ModelTypeBpe):
                                    throw new NotSupportedException($"{source}: SentencePiece model type {v} is not supported (Unigram = 1 and BPE = 2 are)");
                                case 3: proto.Unigram = v == ModelTypeUnigram; break;
                                case 35: proto.ByteFallback = v != 0; break;
                                case 40: proto.UnkId = Int32(source, "trainer_spec.unk_id", v); break;
                                case 41: proto.BosId = Int32(source, "trainer_spec.bos_id", v); break;
                                case 42: proto.EosId = Int32(source, "trainer_spec.eos_id", v); break;
                                case 43: proto.PadId = Int32(source, "trainer_spec.pad_id", v); break;
                            }
                        }
                        break;
                    }
                case (3, 2):
                    {
                        hasNormalizer = true;
                        var nr = new ProtoReader(reader.Bytes(), source);
                        while (nr.Next(out int f, out int w))
                        {
                            if (w != 0) { nr.Skip(w); continue; }
                            bool v = nr.Varint() != 0;
                            if (f == 3) proto.AddDummyPrefix = v;
                            else if (f == 4) proto.RemoveExtraWhitespaces = v;
                            else if (f == 5) proto.EscapeWhitespaces = v;
                        }
                        break;
                    }
                default:
                    reader.Skip(wire);
                    break;
            }
        }
        int n = proto.Pieces.Count;
        if (n == 0) throw new InvalidDataException($"{source}: SentencePiece model has no pieces");
        // Every SentencePiece model has both; Microsoft.ML.Tokenizers dereferences them unchecked.
        if (!hasTrainer) throw new InvalidDataException($"{source}: SentencePiece model has no trainer_spec (field 2)");
        if (!hasNormalizer) throw new InvalidDataException($"{source}: SentencePiece model has no normalizer_spec (field 3)");
        // What SentencePiece's own loader (ModelInterface::InitializePieces) requires of the pieces.
        var seen = new Dictionary<string, int>(n, StringComparer.Ordinal);
        int unknown = -1;
        for (int i = 0; i < n; i++)
        {
            var (text, _, type) = proto.Pieces[i];
            if (text.Length == 0 || text.Contains('\0')) throw new InvalidDataException($"{source}: pieces[{i}].piece is empty or holds a NUL character");
            if (!seen.TryAdd(text, i)) throw new InvalidDataException($"{source}: pieces[{i}].piece \"{text}\" repeats pieces[{seen[text]}]");
            if (type != PieceType.Unknown) continue;
            if (unknown >= 0) throw new InvalidDataException($"{source}: pieces[{i}] is a second unknown piece (pieces[{unknown}] is one)");
            unknown = i;
        }
        if (unknown < 0) throw new InvalidDataException($"{source}: no piece has type UNKNOWN (2)");
        int bytePiece = proto.Pieces.FindIndex(p => p.Type == PieceType.Byte);
        if (bytePiece >= 0 && !proto.ByteFallback)
            throw new InvalidDataException($"{source}: pieces[{bytePiece}] is a byte piece but trainer_spec.byte_fallback is off (SentencePiece refuses this too)");
        // SentencePiece requires an unknown piece; -1 means "none" for the others.
        if ((uint)proto.UnkId >= (uint)n) throw new InvalidDataException($"{source}: trainer_spec.unk_id {proto.UnkId} is outside the pieces [0, {n})");
        foreach (var (field, id) in new[] { ("bos_id", proto.BosId), ("eos_id", proto.EosId), ("pad_id", proto.PadId) })
        {
            if (id < -1 || id >= n) throw new InvalidDataException($"{source}: trainer_spec.{field} {id} is outside the pieces [0, {n}) and not -1 (none)");
        }
        return proto;
    }

    // An int32 field's varint: negatives are sign-extended to 64 bits, so anything outside int32's range is malformed.
    static int Int32(string source, string field, long value) =>
        value is >= int.MinValue and <= int.MaxValue ? (int)value : throw new InvalidDataException($"{source}: {field} {value} is not an int32");

    private sealed class ProtoWriter
    {
        private readonly MemoryStream _stream = new();

        public void Varint(int field, ulong value)
        {
            Raw((ulong)(field << 3));
            Raw(value);
        }

        public void Float(int field, float value)
        {
            Raw((ulong)(field << 3 | 5));
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteSingleLittleEndian(b, value);
            _stream.Write(b);
        }

        public void String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public void Message(int field, ProtoWriter message) => Bytes(field, message.ToArray());

        public byte[] ToArray() => _stream.ToArray();

        private void Bytes(int field, byte[] value)
        {
            Raw((ulong)(field << 3 | 2));
            Raw((ulong)value.Length);
            _stream.Write(value);
        }

        private void Raw(ulong value)
        {
            while (value >= 0x80)
            {
                _stream.WriteByte((byte)(value | 0x80));
                value >>= 7;
            }
            _stream.WriteByte((byte)value);
        }
    }

    private ref struct ProtoReader
    {
        private readonly ReadOnlySpan<byte> _data;
        private readonly string _source;
        private int _pos;

        public ProtoReader(ReadOnlySpan<byte> data, string source)
        {
            _data = data;
            _source = source;
        }

        public bool Next(out int field, out int wire)
        {
            field = wire = 0;
            if (_pos >= _data.Length) return false;
            ulong tag = Varint();
            field = (int)(tag >> 3);
            wire = (int)(tag & 7);
            if (field == 0) throw Bad("field number 0");
            return true;
        }

        public ulong Varint()
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_pos >= _data.Length) throw Bad("truncated varint");
                byte b = _data[_pos++];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80) return value;
            }
            throw Bad("varint longer than 10 bytes");
        }

        public ReadOnlySpan<byte> Bytes()
        {
            ulong length = Varint();
            if (length > (ulong)(_data.Length - _pos)) throw Bad($"length {length} runs past the end");
            ReadOnlySpan<byte> slice = _data.Slice(_pos, (int)length);
            _pos += (int)length;
            return slice;
        }

        public float Fixed32Float()
        {
            if (_data.Length - _pos < 4) throw Bad("truncated fixed32");
            float v = BinaryPrimitives.ReadSingleLittleEndian(_data[_pos..]);
            _pos += 4;
            return v;
        }

        public void Skip(int wire)
        {
            int size = wire switch { 0 => -1, 1 => 8, 2 => -2, 5 => 4, _ => throw Bad($"unsupported wire type {wire}") };
            if (size == -1) Varint();
            else if (size == -2) Bytes();
            else if (_data.Length - _pos < size) throw Bad("truncated field");
            else _pos += size;
        }

        private readonly InvalidDataException Bad(string what) =>
            new($"{_source}: not a valid SentencePiece model (protobuf: {what} at byte {_pos})");
    }
}
