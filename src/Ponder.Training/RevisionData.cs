using Ponder.Tasks;

namespace Ponder.Training;

/// <summary>One sampled attempt at a question and whether it graded correct.</summary>
public sealed record Attempt(string Completion, bool Correct);

/// <summary>
/// Training data for the revision model (docs/method.md "Revisions"): (question, 0 to 4 incorrect attempts, correct
/// attempt). The number of incorrect attempts is uniform in 0..min(4, available); the last one in context is the
/// incorrect attempt closest to the correct one by character edit distance, the others are random. Format:
/// <code>
/// Q: 17+4*9-6
/// Attempt:
/// 4*9=36
/// 17+36=53
/// A: 53
/// Revision:
/// </code>
/// then the correct attempt as the completion (trained on), so a chain of revisions feeds each answer back as the
/// next "Attempt:".
/// </summary>
public static class RevisionData
{
    /// <summary>Most incorrect attempts kept in context.</summary>
    public const int MaxAttemptsInContext = 4;

    /// <summary>The revision prompt for <paramref name="question"/> with <paramref name="attempts"/> in context (oldest first).</summary>
    public static string Prompt(ITask task, string question, IEnumerable<string> attempts)
        => Ponder.Search.RevisionPrompt.Format(task.Prompt(question), attempts.ToList(), MaxAttemptsInContext);

    /// <summary>
    /// One example per correct attempt (at most <paramref name="maxExamples"/>), each with its own random draw of
    /// incorrect attempts. No correct attempt: no examples.
    /// </summary>
    public static List<SftExample> Build(ITask task, string question, IReadOnlyList<Attempt> samples, DeterministicRandom rng, int maxExamples = int.MaxValue)
    {
        var correct = samples.Where(s => s.Correct).Select(s => s.Completion).ToList();
        var wrong = samples.Where(s => !s.Correct).Select(s => s.Completion).Distinct().ToList();
        var result = new List<SftExample>();
        foreach (string target in correct.Take(maxExamples))
        {
            var context = ChooseContext(target, wrong, rng);
            result.Add(SftExample.FromText(Prompt(task, question, context), target));
        }
        return result;
    }

    /// <summary>The incorrect attempts to show before <paramref name="target"/>: random ones, then the closest by edit distance last.</summary>
    public static List<string> ChooseContext(string target, IReadOnlyList<string> wrong, DeterministicRandom rng)
    {
        int k = rng.Next(0, Math.Min(MaxAttemptsInContext, wrong.Count) + 1);
        if (k == 0) return [];
        int closest = 0;
        for (int i = 1; i < wrong.Count; i++)
            if (EditDistance(wrong[i], target) < EditDistance(wrong[closest], target)) closest = i;
        var others = Enumerable.Range(0, wrong.Count).Where(i => i != closest).ToList();
        for (int i = others.Count - 1; i > 0; i--) { int j = rng.Next(0, i + 1); (others[i], others[j]) = (others[j], others[i]); }
        var picked = others.Take(k - 1).Select(i => wrong[i]).ToList();
        picked.Add(wrong[closest]);
        return picked;
    }

    /// <summary>Levenshtein distance (insert, delete, substitute each cost 1) over UTF-16 characters, two rows of memory.</summary>
    public static int EditDistance(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) prev[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }
}
