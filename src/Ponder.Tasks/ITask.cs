namespace Ponder.Tasks;

/// <summary>
/// A verifiable question-answering task: how a question becomes a prompt, how an answer is read from a completion,
/// and whether a completion is correct. Completions are the text the model wrote after the prompt, without EOS.
/// </summary>
public interface ITask
{
    /// <summary>The prompt the policy continues (for arithmetic chains: <c>"Q: &lt;expr&gt;\n"</c>).</summary>
    string Prompt(string question);

    /// <summary>The answer a completion states, normalized; null when the completion is malformed (no answer, or garbage around it).</summary>
    string? ExtractAnswer(string completion);

    /// <summary>True when the completion's extracted answer matches the question's reference answer.</summary>
    bool Grade(string question, string completion);
}

/// <summary>Answer extractors shared by tasks and datasets.</summary>
public static class AnswerExtractors
{
    /// <summary>
    /// Reads the integer of an <c>A: n</c> line. Malformed (null): no line starting with <c>A:</c>, a value that is not
    /// an optionally signed decimal integer fitting in 64 bits, or anything but whitespace after the answer.
    /// The normalized form drops a leading plus sign and leading zeros.
    /// </summary>
    public static string? IntegerAnswerLine(string completion)
    {
        ArgumentNullException.ThrowIfNull(completion);
        int at = completion.StartsWith("A:", StringComparison.Ordinal) ? 0 : completion.IndexOf("\nA:", StringComparison.Ordinal);
        if (at < 0) return null;
        if (at > 0) at++;
        string rest = completion[(at + 2)..];
        int lineEnd = rest.IndexOf('\n');
        string value = (lineEnd < 0 ? rest : rest[..lineEnd]).Trim(' ');
        if (lineEnd >= 0 && !string.IsNullOrWhiteSpace(rest[(lineEnd + 1)..])) return null;
        return ParseInteger(value);
    }

    /// <summary>Parses an optionally signed decimal integer with digits only; null otherwise.</summary>
    public static string? ParseInteger(string value)
    {
        if (value.Length == 0 || value.Length > 20) return null;
        int start = value[0] is '-' or '+' ? 1 : 0;
        if (start == value.Length) return null;
        for (int i = start; i < value.Length; i++)
            if (value[i] is < '0' or > '9') return null;
        return long.TryParse(value, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long v)
            ? v.ToString(System.Globalization.CultureInfo.InvariantCulture) : null;
    }

    /// <summary>The content of the last <c>\boxed{...}</c> (balanced braces), trimmed; null when there is none (MATH-style answers).</summary>
    public static string? LastBoxed(string completion)
    {
        ArgumentNullException.ThrowIfNull(completion);
        int at = completion.LastIndexOf("\\boxed{", StringComparison.Ordinal);
        if (at < 0) return null;
        int depth = 0;
        for (int i = at + 6; i < completion.Length; i++)
        {
            if (completion[i] == '{') depth++;
            else if (completion[i] == '}' && --depth == 0) return completion[(at + 7)..i].Trim();
        }
        return null;
    }
}
