using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Ponder.Tokenization;

/// <summary>
/// Hugging Face pre-tokenization as a chain of regex splits with the "Isolated" behaviour: each stage splits every
/// piece of the previous stage into its matches and the gaps between them (the gaps are kept, unlike
/// <see cref="RegexPreTokenizer"/>, which drops them). Special tokens are cut out first and never split further.
/// </summary>
internal sealed class SplitPreTokenizer : PreTokenizer
{
    /// <summary>GPT-2's pattern, used by the ByteLevel pre-tokenizer when use_regex is true.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    /// <summary>Llama 3's Split pattern (llama.cpp pre "llama-bpe", "smaug-bpe").</summary>
    public const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    /// <summary>Qwen2's Split pattern (llama.cpp pre "qwen2"): like Llama 3 but one digit per piece.</summary>
    public const string Qwen2Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>llama.cpp's stages for tokenizer.ggml.pre = "default" (applied in sequence).</summary>
    public static readonly string[] LlamaCppDefaultPatterns = [@"[\p{P}\$\+<=>\^~\|]+", Gpt2Pattern, @"\p{N}+", "[0-9][0-9][0-9]"];

    private readonly Regex? _special;
    private readonly Regex[] _stages;

    public SplitPreTokenizer(IEnumerable<string> specialTokens, IEnumerable<Regex> stages)
    {
        // Longest first, so "<|im_end|>" wins over a shorter special token that is its prefix.
        string[] specials = specialTokens.Where(s => s.Length > 0).Distinct().OrderByDescending(s => s.Length).ToArray();
        _special = specials.Length == 0 ? null : new Regex(string.Join('|', specials.Select(Regex.Escape)), RegexOptions.CultureInvariant);
        _stages = stages.ToArray();
    }

    /// <summary>The stages, in order (for tests and diagnostics).</summary>
    public IReadOnlyList<Regex> Stages => _stages;

    /// <summary>
    /// The tokenizer.ggml.pre name under which llama.cpp splits text exactly as these stages do; null when none does.
    /// </summary>
    public string? LlamaCppPreName()
    {
        string[] patterns = _stages.Select(r => r.ToString()).ToArray();
        if (patterns.SequenceEqual([Gpt2Pattern])) return "gpt-2";
        if (patterns.SequenceEqual([Llama3Pattern])) return "llama-bpe";
        if (patterns.SequenceEqual([Qwen2Pattern])) return "qwen2";
        if (patterns.SequenceEqual([@"\p{N}", Gpt2Pattern])) return "smollm";
        if (patterns.SequenceEqual(LlamaCppDefaultPatterns)) return "default";
        return null;
    }

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => PreTokenize(new string(text));

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text)
    {
        var result = new List<(int Offset, int Length)>();
        if (string.IsNullOrEmpty(text)) return result;
        int start = 0;
        if (_special is not null)
        {
            foreach (ValueMatch m in _special.EnumerateMatches(text))
            {
                SplitPlain(text, start, m.Index - start, result);
                result.Add((m.Index, m.Length));
                start = m.Index + m.Length;
            }
        }
        SplitPlain(text, start, text.Length - start, result);
        return result;
    }

    private void SplitPlain(string text, int offset, int length, List<(int Offset, int Length)> result)
    {
        if (length == 0) return;
        var pieces = new List<(int Offset, int Length)> { (offset, length) };
        foreach (Regex stage in _stages)
        {
            var next = new List<(int Offset, int Length)>(pieces.Count * 2);
            foreach (var (pOffset, pLength) in pieces) SplitIsolated(stage, text, pOffset, pLength, next);
            pieces = next;
        }
        result.AddRange(pieces);
    }

    // Matching on the slice alone keeps lookarounds such as \s+(?!\S) from seeing past the piece, as in HF.
    private static void SplitIsolated(Regex regex, string text, int offset, int length, List<(int Offset, int Length)> into)
    {
        int cursor = 0;
        foreach (ValueMatch m in regex.EnumerateMatches(text.AsSpan(offset, length)))
        {
            if (m.Length == 0) continue;
            if (m.Index > cursor) into.Add((offset + cursor, m.Index - cursor));
            into.Add((offset + m.Index, m.Length));
            cursor = m.Index + m.Length;
        }
        if (cursor < length) into.Add((offset + cursor, length - cursor));
    }
}
