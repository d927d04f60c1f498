using System.Text;
using LLama;
using LLama.Common;
using Ponder.Tokenization;

namespace Ponder.Tests.Tokenization;

/// <summary>
/// llama.cpp (through LLamaSharp) as the independent reference: it must accept the GGUF tokenizer metadata we export
/// and tokenize exactly as we do. The GGUF holds only metadata (vocab_only load, no tensors).
/// </summary>
public sealed class LlamaCppVocabTests
{
    private static readonly string[] Texts =
    [
        "Q: 17+4*9-6\n4*9=36\n17+36=53\n53-6=47\nA: 47\n",
        "the the 171 1717 17171717 don't DON'T they'll",
        "Hello,  world!!\n\n  the\tthe   \n",
        "x123456 abc'S $+<=>^~|| (12-3)*45",
        "😀 中文 naïve <|im_end|>the",
        "  two  spaces\t",
    ];

    [Fact]
    public void ExportedByteLevelVocab_LlamaCppAcceptsIt_AndAgreesOnIds()
    {
        using var folder = new TempFolder();
        TokenizerFiles.WriteByteLevel(folder.File("tokenizer.json"), ["<|bos|>", "<|eos|>", "<|pad|>"]);
        ITokenizer ours = TokenizerFactory.FromHuggingFace(folder.Path);
        using LLamaWeights weights = LoadVocab(folder, TokenizerFiles.ToGgufMetadata(folder.File("tokenizer.json")), ours.VocabSize);
        Assert.Equal(ours.VocabSize, weights.Vocab.Count);
        foreach (string text in Texts) Assert.Equal(LlamaCppIds(weights, text), ours.Encode(text, addSpecialTokens: false));
        Assert.Equal(new[] { 256, 65, 257 }, LlamaCppIds(weights, "<|bos|>A<|eos|>"));
    }

    // The hand-built BPE (with merges) exported to GGUF, then read back by us under each llama.cpp pre-tokenizer name.
    [Theory]
    [InlineData(null)]          // as exported: "gpt-2", our tokenizer straight from tokenizer.json
    [InlineData("default")]
    [InlineData("llama-bpe")]
    [InlineData("qwen2")]
    [InlineData("smollm")]
    public void HandBuiltBpe_AgreesWithLlamaCpp_UnderEachPreTokenizer(string? pre)
    {
        using var folder = new TempFolder();
        Dictionary<string, object> meta = TokenizerFiles.ToGgufMetadata(TempFolder.TinyByteLevelJson);
        Assert.Equal("gpt-2", meta["tokenizer.ggml.pre"]);
        ITokenizer ours = TokenizerFactory.FromHuggingFace(TempFolder.TinyByteLevelJson);
        if (pre is not null)
        {
            meta["tokenizer.ggml.pre"] = pre;
            ours = TokenizerFactory.FromGgufMetadata(meta, "tiny.gguf")!;
        }
        using LLamaWeights weights = LoadVocab(folder, meta, ours.VocabSize);
        foreach (string text in Texts) Assert.Equal(LlamaCppIds(weights, text), ours.Encode(text, addSpecialTokens: false));
    }

    [Fact]
    public void HandBuiltSentencePiece_AgreesWithLlamaCpp()
    {
        using var folder = new TempFolder();
        Dictionary<string, object> meta = SentencePieceTests.GgufMetadata();
        ITokenizer ours = TokenizerFactory.FromGgufMetadata(meta, "sp.gguf")!;
        using LLamaWeights weights = LoadVocab(folder, meta, ours.VocabSize);
        foreach (string text in new[] { "hi", "hi t", "hé", "hi hi  t th", " hi", "😀x\n", "<s>hi</s>" })
            Assert.Equal(LlamaCppIds(weights, text), ours.Encode(text, addSpecialTokens: false));
        Assert.Equal(weights.Tokenize("hi", add_bos: true, special: true, Encoding.UTF8).Select(t => (int)t), ours.Encode("hi"));
    }

    private static int[] LlamaCppIds(LLamaWeights weights, string text) =>
        weights.Tokenize(text, add_bos: false, special: true, Encoding.UTF8).Select(t => (int)t).ToArray();

    private static LLamaWeights LoadVocab(TempFolder folder, Dictionary<string, object> tokenizerMetadata, int vocab)
    {
        var meta = new Dictionary<string, object>(tokenizerMetadata)
        {
            ["general.architecture"] = "llama",
            ["llama.context_length"] = 64u,
            ["llama.embedding_length"] = 8u,
            ["llama.block_count"] = 1u,
            ["llama.feed_forward_length"] = 16u,
            ["llama.attention.head_count"] = 2u,
            ["llama.attention.head_count_kv"] = 2u,
            ["llama.attention.layer_norm_rms_epsilon"] = 1e-5f,
            ["llama.vocab_size"] = (uint)vocab,
        };
        string gguf = folder.File("vocab.gguf");
        WriteMetadataOnlyGguf(gguf, meta);
        return LLamaWeights.LoadFromFile(new ModelParams(gguf) { VocabOnly = true, GpuLayerCount = 0 });
    }

    /// <summary>GGUF v3 with metadata and no tensors (types from the GGUF spec: UINT32 4, INT32 5, FLOAT32 6, BOOL 7, STRING 8, ARRAY 9).</summary>
    private static void WriteMetadataOnlyGguf(string path, IReadOnlyDictionary<string, object> metadata)
    {
        using var w = new BinaryWriter(File.Create(path), Encoding.UTF8);
        w.Write("GGUF"u8);
        w.Write(3u);
        w.Write(0UL);
        w.Write((ulong)metadata.Count);
        foreach (var (key, value) in metadata)
        {
            WriteString(w, key);
            switch (value)
            {
                case uint v: w.Write(4u); w.Write(v); break;
                case int v: w.Write(5u); w.Write(v); break;
                case float v: w.Write(6u); w.Write(v); break;
                case bool v: w.Write(7u); w.Write((byte)(v ? 1 : 0)); break;
                case string v: w.Write(8u); WriteString(w, v); break;
                case string[] a: w.Write(9u); w.Write(8u); w.Write((ulong)a.Length); foreach (string s in a) WriteString(w, s); break;
                case int[] a: w.Write(9u); w.Write(5u); w.Write((ulong)a.Length); foreach (int x in a) w.Write(x); break;
                case float[] a: w.Write(9u); w.Write(6u); w.Write((ulong)a.Length); foreach (float x in a) w.Write(x); break;
                default: throw new ArgumentException($"metadata {key} has type {value.GetType().Name}, not handled by this test writer");
            }
        }
        while (w.BaseStream.Position % 32 != 0) w.Write((byte)0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }
}
