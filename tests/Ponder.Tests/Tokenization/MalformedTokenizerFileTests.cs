using System.Text.Json.Nodes;
using Ponder.Tokenization;

namespace Ponder.Tests.Tokenization;

/// <summary>
/// Malformed tokenizer files, one per class of field: a SentencePiece tokenizer.model (protobuf, written byte by byte
/// here so that fields the writer never emits can be wrong), a tokenizer.json and its GGUF export. Each is refused with
/// the loader's own exception naming the file and the field.
/// </summary>
public sealed class MalformedTokenizerFileTests
{
    // Protobuf by hand: a field's tag is (number << 3 | wire type), lengths and integers are varints.
    static byte[] Varint(ulong v)
    {
        var bytes = new List<byte>();
        for (; v >= 0x80; v >>= 7) bytes.Add((byte)(v | 0x80));
        bytes.Add((byte)v);
        return [.. bytes];
    }

    static byte[] Field(int number, ulong value) => [.. Varint((ulong)number << 3), .. Varint(value)];

    static byte[] Field(int number, byte[] message) => [.. Varint((ulong)number << 3 | 2), .. Varint((ulong)message.Length), .. message];

    static byte[] Piece(byte[] text, ulong type) => Field(1, [.. Field(1, text), .. Field(3, type)]);

    static byte[] Piece(string text, PieceType type) => Piece(System.Text.Encoding.UTF8.GetBytes(text), (ulong)type);

    /// <summary>unk, s, /s: a valid start for a model (SentencePiece's default ids 0, 1, 2).</summary>
    static readonly byte[] Controls = [.. Piece("<unk>", PieceType.Unknown), .. Piece("<s>", PieceType.Control), .. Piece("</s>", PieceType.Control)];

    // trainer_spec (field 2): 3 is model_type (1 Unigram, the default; 2 BPE), 35 byte_fallback, 40-43 the unk, bos,
    // eos and pad ids; then an empty normalizer_spec (field 3: its defaults).
    static byte[] Specs(params (int Number, long Value)[] fields) => [.. Field(2, [.. fields.SelectMany(f => Field(f.Number, (ulong)f.Value))]), .. Field(3, [])];

    public static TheoryData<string, byte[], string> BadModels() => new()
    {
        { "piece text not UTF-8", [.. Controls, .. Piece([0x61, 0xFF], (ulong)PieceType.Normal)], "pieces[3].piece is not valid UTF-8" },
        { "piece type 7", [.. Controls, .. Piece("a"u8.ToArray(), 7)], "pieces[3].type 7 is not a SentencePiece piece type" },
        { "piece type 0", [.. Controls, .. Piece("a"u8.ToArray(), 0)], "pieces[3].type 0" },
        { "unk_id past the pieces", [.. Controls, .. Specs((40, 3))], "trainer_spec.unk_id 3 is outside the pieces [0, 3)" },
        { "unk_id not an int32", [.. Controls, .. Specs((40, 1L << 40))], "trainer_spec.unk_id 1099511627776 is not an int32" },
        { "bos_id below -1", [.. Controls, .. Specs((41, -5))], "trainer_spec.bos_id -5 is outside the pieces [0, 3) and not -1" },
        { "eos_id past the pieces", [.. Controls, .. Specs((42, 3))], "trainer_spec.eos_id 3 is outside" },
        { "pad_id past the pieces", [.. Controls, .. Specs((43, 9))], "trainer_spec.pad_id 9 is outside" },
        { "byte piece without byte_fallback", [.. Controls, .. Piece("<0x41>", PieceType.Byte), .. Specs()], "pieces[3] is a byte piece but trainer_spec.byte_fallback is off" },
        { "empty piece", [.. Controls, .. Piece("", PieceType.Normal), .. Specs()], "pieces[3].piece is empty or holds a NUL character" },
        { "repeated piece", [.. Controls, .. Piece("a", PieceType.Normal), .. Piece("a", PieceType.Normal), .. Specs()], "pieces[4].piece \"a\" repeats pieces[3]" },
        { "two unknown pieces", [.. Controls, .. Piece("<unk2>", PieceType.Unknown), .. Specs()], "pieces[3] is a second unknown piece (pieces[0] is one)" },
        { "no unknown piece", [.. Piece("<s>", PieceType.Control), .. Piece("</s>", PieceType.Control), .. Piece("a", PieceType.Normal), .. Specs()], "no piece has type UNKNOWN (2)" },
        { "no trainer_spec", [.. Controls, .. Field(3, [])], "no trainer_spec (field 2)" },
        { "no normalizer_spec", [.. Controls, .. Field(2, [])], "no normalizer_spec (field 3)" },
        { "byte_fallback without byte pieces", [.. Controls, .. Piece("a", PieceType.Normal), .. Specs((3, 2), (35, 1))], "byte fallback is on but there is no byte piece <0x00>" },
        { "byte pieces out of order", [.. Controls, .. Enumerable.Range(0, 256).SelectMany(b => Piece($"<0x{(b is 0x41 or 0x42 ? b ^ 3 : b):X2}>", PieceType.Byte)), .. Specs((3, 2), (35, 1))],
            "id 68 is not the byte piece <0x41>" },
    };

    [Theory]
    [MemberData(nameof(BadModels))]
    public void Tokenizer_model_field_is_named(string what, byte[] model, string message)
    {
        using var folder = new TempFolder();
        File.WriteAllBytes(folder.File("tokenizer.model"), model);
        var e = Assert.Throws<InvalidDataException>(() => TokenizerFactory.FromSentencePiece(folder.Path));
        Assert.True(e.Message.Contains(folder.File("tokenizer.model")) && e.Message.Contains(message), $"{what}: {e.Message}");
    }

    [Fact]
    public void Tokenizer_model_the_checks_accept_a_valid_model_and_refuse_unigram_byte_fallback()
    {
        // The same model the refusals above start from, made valid: the checks do not refuse what is right.
        byte[] bytes = [.. Controls, .. Enumerable.Range(0, 256).SelectMany(b => Piece($"<0x{b:X2}>", PieceType.Byte)), .. Piece("\u2581a", PieceType.Normal), .. Specs((3, 2), (35, 1))];
        using var folder = new TempFolder();
        File.WriteAllBytes(folder.File("tokenizer.model"), bytes);
        ITokenizer tok = TokenizerFactory.FromSentencePiece(folder.Path);
        // "a" is one piece after the dummy prefix; "é" falls back to its two UTF-8 bytes, the byte pieces at 3 + byte.
        Assert.Equal(new[] { 1, 259, 3 + 0xC3, 3 + 0xA9 }, tok.Encode("aé"));

        // Microsoft.ML.Tokenizers 2.0 offsets a Unigram model's byte pieces from the last one: refused, not mis-encoded.
        File.WriteAllBytes(folder.File("tokenizer.model"), [.. bytes, .. Specs((3, 1))]);
        var e = Assert.Throws<NotSupportedException>(() => TokenizerFactory.FromSentencePiece(folder.Path));
        Assert.Contains(folder.File("tokenizer.model"), e.Message);
        Assert.Contains("Unigram", e.Message);
    }

    // --- tokenizer.json and its GGUF export ---------------------------------------------------------------------

    static JsonObject Tiny() => JsonNode.Parse(File.ReadAllText(TempFolder.TinyByteLevelJson))!.AsObject();

    // Edits on the compact text (non-ASCII written as \uXXXX): a lone surrogate cannot be written through JsonNode.
    [Theory]
    [InlineData("\"type\":\"BPE\"", "\"type\":5", "model.type is a Number, not a string")]
    [InlineData("\"\\u0120the\":258", "\"\\u0120the\":258,\"x\\ud800\":262", "line 1: a property name escapes a lone UTF-16 surrogate")]
    [InlineData("\"\\u0120 t\"", "\"\\u0120 \\udc00\"", "line 1: a string escapes a lone UTF-16 surrogate")]
    public void Tokenizer_json_field_is_named(string find, string replace, string message)
    {
        using var folder = new TempFolder();
        string json = Tiny().ToJsonString();
        Assert.Contains(find, json);
        string path = folder.Write("tokenizer.json", json.Replace(find, replace));
        var e = Assert.Throws<InvalidDataException>(() => TokenizerFactory.FromHuggingFace(path));
        Assert.Contains($"{path}: {message}", e.Message);
    }

    [Fact]
    public void Gguf_export_refuses_what_gguf_cannot_hold_by_name()
    {
        using var folder = new TempFolder();
        // An added token on a vocabulary token's id: Hugging Face encodes both to it, GGUF has one token per id.
        var onVocabId = Tiny();
        onVocabId["added_tokens"]!.AsArray().Add(new JsonObject { ["id"] = 65, ["content"] = "<|x|>", ["special"] = true });
        string path = folder.Write("tokenizer.json", onVocabId.ToJsonString());
        Assert.NotNull(TokenizerFactory.FromHuggingFace(path));
        var e = Assert.Throws<InvalidDataException>(() => TokenizerFiles.ToGgufMetadata(path));
        Assert.Contains($"{path}: added_tokens[2] \"<|x|>\" has id 65, which model.vocab gives to \"A\"", e.Message);

        // A gap in the ids: llama.cpp's vocabulary is dense.
        var gap = Tiny();
        gap["added_tokens"]![1]!["id"] = 270;
        path = folder.Write("tokenizer.json", gap.ToJsonString());
        e = Assert.Throws<InvalidDataException>(() => TokenizerFiles.ToGgufMetadata(path));
        Assert.Contains($"{path}: no model.vocab or added_tokens entry has id 261", e.Message);

        // add_prefix_space: llama.cpp's "gpt2" pre-tokenizer has none, so the export would encode differently.
        var prefix = Tiny();
        prefix["pre_tokenizer"]!["add_prefix_space"] = true;
        path = folder.Write("tokenizer.json", prefix.ToJsonString());
        var n = Assert.Throws<NotSupportedException>(() => TokenizerFiles.ToGgufMetadata(path));
        Assert.Contains($"{path}: pre_tokenizer add_prefix_space", n.Message);
    }

    [Fact]
    public void Sentencepiece_style_json_drops_a_character_it_cannot_encode_as_the_tokenizers_library_does()
    {
        // No byte fallback and no unk_token: Hugging Face's BPE (models/bpe/model.rs, merge_word) leaves such a
        // character out of the word, and merges go on across the gap: "h😀i" is "▁hi" (id 4), as "hi" is.
        const string json = """
            {"normalizer": null, "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": true},
             "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": true},
             "model": {"type": "BPE", "vocab": {"\u2581": 0, "h": 1, "i": 2, "\u2581h": 3, "\u2581hi": 4}, "merges": ["\u2581 h", "\u2581h i"]}}
            """;
        using var folder = new TempFolder();
        ITokenizer tok = TokenizerFactory.FromHuggingFace(folder.Write("tokenizer.json", json));
        Assert.Equal(new[] { 4 }, tok.Encode("hi", addSpecialTokens: false));
        Assert.Equal(new[] { 4 }, tok.Encode("h\U0001F600i", addSpecialTokens: false));
        Assert.Equal(new[] { 0 }, tok.Encode("\U0001F600", addSpecialTokens: false));
    }
}
