namespace Ponder.Search;

/// <summary>
/// The revision model's prompt: the question, then up to <see cref="Window"/> previous attempts (oldest first, the most
/// recent last, right before the revision), then the revision header. The revision-data builder of the trainer writes
/// its examples in exactly this format, with the attempt closest (edit distance) to the correct one last. Example with
/// two previous attempts:
/// <code>
/// Q: 17+4*9-6
/// Attempt:
/// 17+4=21
/// 21*9=189
/// 189-6=183
/// A: 183
/// Attempt:
/// 4*9=36
/// 17+36=53
/// 53-6=46
/// A: 46
/// Revision:
/// </code>
/// (The revision model then writes the steps of a new attempt.) With no previous attempt the prompt is the question
/// prompt followed by "Revision:\n".
/// </summary>
public static class RevisionPrompt
{
    /// <summary>Attempts kept in context (the paper: 4, a sliding window over the chain).</summary>
    public const int Window = 4;

    /// <summary>Header line before each previous attempt.</summary>
    public const string AttemptHeader = "Attempt:\n";

    /// <summary>Header line after which the revision is generated.</summary>
    public const string RevisionHeader = "Revision:\n";

    /// <summary>
    /// Formats a revision prompt from the question prompt (e.g. "Q: 17+4*9-6\n") and the chain's attempts so far
    /// (oldest first); only the last <paramref name="window"/> attempts are included.
    /// </summary>
    public static string Format(string questionPrompt, IReadOnlyList<string> attempts, int window = Window)
    {
        ArgumentNullException.ThrowIfNull(questionPrompt);
        ArgumentNullException.ThrowIfNull(attempts);
        if (window < 0) throw new ArgumentException($"revision window must be >= 0, got {window}", nameof(window));
        var sb = new System.Text.StringBuilder(questionPrompt);
        if (sb.Length > 0 && sb[^1] != '\n') sb.Append('\n');
        for (int i = Math.Max(0, attempts.Count - window); i < attempts.Count; i++)
        {
            sb.Append(AttemptHeader);
            var attempt = attempts[i].TrimEnd('\n');
            sb.Append(attempt);
            if (attempt.Length > 0) sb.Append('\n');
        }
        return sb.Append(RevisionHeader).ToString();
    }

    /// <summary>Tokens left free for the revision itself when a prompt is fitted (a hard question's attempt is ~100-130 tokens).</summary>
    public const int AnswerRoom = 96;

    /// <summary>
    /// The prompt with the widest window (at most <see cref="Window"/> attempts) whose <paramref name="promptTokens"/>
    /// leave <paramref name="room"/> tokens for the revision within <paramref name="contextTokens"/>; with no attempt
    /// fitting, the question alone (the caller's engine rejects it if even that is too long).
    /// </summary>
    public static string Fit(string questionPrompt, IReadOnlyList<string> attempts, Func<string, int> promptTokens, int contextTokens, int room = AnswerRoom)
    {
        ArgumentNullException.ThrowIfNull(promptTokens);
        for (int w = Window; ; w--)
        {
            string p = Format(questionPrompt, attempts, w);
            if (w == 0 || (long)promptTokens(p) + room <= contextTokens) return p;
        }
    }
}
