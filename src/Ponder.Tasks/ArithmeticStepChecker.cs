using System.Globalization;
using Ponder.Search;

namespace Ponder.Tasks;

/// <summary>
/// The exact step verifier of the arithmetic-chain task: a prefix scores 1 when every step so far is the reference
/// solution's line at its position (<see cref="ArithmeticChainTask.CheckSteps"/>), else 0. Reads the question from
/// the verifier prompt (<c>Q: &lt;expr&gt;</c> on its last such line). Ties are the rule, not the exception (every
/// correct prefix scores 1): strategies break them by branch order (the order samples were drawn in, which is
/// independent of their content), and best-of-N weighted falls back to the answer count when every sum is 0.
/// </summary>
public sealed class ArithmeticStepChecker : IStepChecker
{
    /// <summary>The study's verifier value for this checker.</summary>
    public const string ExactName = "exact";

    /// <inheritdoc/>
    public string Name => ExactName;

    /// <inheritdoc/>
    public double Score(string prompt, IReadOnlyList<string> steps)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(steps);
        if (steps.Count == 0) return 1;
        var ok = ArithmeticChainTask.CheckSteps(QuestionOf(prompt), steps);
        return ok[^1] ? 1 : 0;
    }

    /// <summary>The expression of the last <c>Q: </c> line of <paramref name="prompt"/>; throws naming the prompt when there is none.</summary>
    public static string QuestionOf(string prompt)
    {
        int at = prompt.LastIndexOf("Q: ", StringComparison.Ordinal);
        if (at < 0 || (at > 0 && prompt[at - 1] != '\n')) throw new ArgumentException($"verifier prompt '{Shorten(prompt)}' has no 'Q: <expression>' line", nameof(prompt));
        int end = prompt.IndexOf('\n', at);
        return (end < 0 ? prompt[(at + 3)..] : prompt[(at + 3)..end]).Trim();
    }

    static string Shorten(string s) => s.Length <= 60 ? s : s[..60] + "...";

    /// <summary>
    /// The checker a study's <c>"prm"</c> value names, or null when it names a model: "exact", "random" (the exact
    /// checker at AUC 0.5: scores ignore the truth) or "noisy:&lt;auc&gt;" with auc in [0.5, 1].
    /// </summary>
    public static IStepChecker? Parse(string? spec)
    {
        if (spec is null) return null;
        if (spec == ExactName) return new ArithmeticStepChecker();
        if (spec == "random") return new NoisyStepChecker(new ArithmeticStepChecker(), 0.5);
        if (!spec.StartsWith("noisy:", StringComparison.Ordinal)) return null;
        string value = spec["noisy:".Length..];
        if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double auc) || !(auc >= 0.5 && auc <= 1))
            throw new ArgumentException($"verifier '{spec}': '{value}' is not a target AUC in [0.5, 1] (e.g. noisy:0.8)", nameof(spec));
        return new NoisyStepChecker(new ArithmeticStepChecker(), auc);
    }
}
