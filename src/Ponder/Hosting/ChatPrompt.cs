using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Ponder.Tokenization;

namespace Ponder.Hosting;

/// <summary>
/// A prompt's text and where the chat messages' contents lie in it. The template's own text may carry control tokens
/// ("&lt;|im_start|&gt;", "&lt;|eot_id|&gt;"); a message's content never does: control-token text a client writes in a
/// message is tokenized as ordinary characters, so it cannot open a turn or change a role.
/// </summary>
/// <param name="Text">The prompt.</param>
/// <param name="ContentSpans">(start, length) of every message's content in <paramref name="Text"/>, in order; empty for a
/// plain prompt (all of it trusted); null when the template rewrote the contents (they cannot be located), in which case
/// a content with control-token text is refused.</param>
/// <param name="Contents">The messages' contents, to name the one at fault when <paramref name="ContentSpans"/> is null.</param>
public sealed record ChatPrompt(string Text, IReadOnlyList<(int Start, int Length)>? ContentSpans, IReadOnlyList<string>? Contents = null)
{
    static readonly ConditionalWeakTable<ITokenizer, Regex?> SpecialPatterns = [];

    /// <summary>A plain prompt (a completion request): the caller wrote all of it, control tokens included.</summary>
    public static ChatPrompt Plain(string text) => new(text, []);

    /// <summary>
    /// The prompt's ids: BOS when the tokenizer adds it, control tokens where the template wrote them, everything else
    /// (message contents included) as ordinary text. The text is split only at the template's control tokens, as Hugging
    /// Face splits at added tokens, so a prompt without control text in its messages encodes exactly as
    /// <see cref="ITokenizer.Encode"/> encodes it. Throws <see cref="ArgumentException"/> (param <c>messages[i].content</c>)
    /// when the contents cannot be located and one of them carries control-token text.
    /// </summary>
    public int[] Encode(ITokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var specials = tokenizer.SpecialTokens;
        if (specials.Count == 0 || ContentSpans is { Count: 0 }) return tokenizer.Encode(Text, addSpecialTokens: true);
        var pattern = SpecialPatterns.GetValue(tokenizer, static t => t.SpecialTokens.Count == 0 ? null
            : new Regex(string.Join('|', t.SpecialTokens.Select(s => s.Content).Where(c => c.Length > 0).Distinct()
                .OrderByDescending(c => c.Length).Select(Regex.Escape)), RegexOptions.CultureInvariant));
        if (pattern is null) return tokenizer.Encode(Text, addSpecialTokens: true);
        if (ContentSpans is null)
        {
            for (int i = 0; i < (Contents?.Count ?? 0); i++)
                if (pattern.Match(Contents![i]) is { Success: true } m)
                    throw new ArgumentException($"messages[{i}].content contains the control token '{m.Value}', and this model's chat template rewrites messages, so it cannot be kept apart from the template's own", $"messages[{i}].content");
            return tokenizer.Encode(Text, addSpecialTokens: true);
        }
        var ids = new List<int>(Text.Length / 3 + 2);
        if (tokenizer.AddBos && tokenizer.BosId is int bos) ids.Add(bos);
        var byContent = specials.GroupBy(s => s.Content, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First().Id, StringComparer.Ordinal);
        int gapStart = 0, at = 0;
        while (at < Text.Length && pattern.Match(Text, at) is { Success: true } m)
        {
            // A control token that overlaps a message's content is the client's text: search on from the next character,
            // so a template token right after it is still found.
            if (Overlaps(m.Index, m.Length)) { at = m.Index + 1; continue; }
            if (m.Index > gapStart) ids.AddRange(tokenizer.EncodeOrdinary(Text[gapStart..m.Index]));
            ids.Add(byContent[m.Value]);
            gapStart = at = m.Index + m.Length;
        }
        if (gapStart < Text.Length) ids.AddRange(tokenizer.EncodeOrdinary(Text[gapStart..]));
        return [.. ids];
    }

    bool Overlaps(int start, int length)
    {
        foreach (var (s, l) in ContentSpans!)
            if (start < s + l && s < start + length) return true;
        return false;
    }
}
