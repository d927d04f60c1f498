using Ponder.Tasks;
using Ponder.Tokenization;

namespace Ponder.Training;

/// <summary>A sampled solution with one soft label per step (the fraction of rollouts from that step's prefix that end correct).</summary>
public sealed record PrmSample(string Question, string Solution, bool Correct, float[] StepLabels);

/// <summary>
/// Math-Shepherd process labels (docs/method.md "PRM training"): a solution's steps are its lines; the label of step i is
/// the fraction of <c>rollouts</c> policy completions from the prefix ending at step i that reach the correct answer.
/// The last step's label is the solution's own grade (its prefix is the whole solution). Identical prefixes (common
/// on easy questions) share one set of rollouts.
/// </summary>
public static class PrmLabels
{
    /// <summary>The steps of <paramref name="solution"/>: each line with its '\n' (a last line without one is a step too).</summary>
    public static List<string> Steps(string solution)
    {
        var steps = new List<string>();
        int start = 0;
        for (int i = 0; i < solution.Length; i++)
            if (solution[i] == '\n') { steps.Add(solution[start..(i + 1)]); start = i + 1; }
        if (start < solution.Length) steps.Add(solution[start..]);
        return steps;
    }

    /// <summary>
    /// Labels every solution. <paramref name="complete"/> continues full prompts (question prompt + step prefix)
    /// and returns each continuation, or null when it did not finish (graded incorrect); it is called once with
    /// every rollout, so the caller can batch.
    /// </summary>
    public static List<PrmSample> Build(ITask task, IReadOnlyList<(string Question, string Solution)> solutions, int rollouts,
        Func<IReadOnlyList<string>, IReadOnlyList<string?>> complete)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rollouts, 1);
        var prefixes = new Dictionary<(string Question, string Prefix), int>();
        var order = new List<(string Question, string Prefix)>();
        foreach (var (q, s) in solutions)
        {
            var steps = Steps(s);
            string prefix = "";
            for (int i = 0; i < steps.Count - 1; i++)
            {
                prefix += steps[i];
                if (prefixes.TryAdd((q, prefix), order.Count)) order.Add((q, prefix));
            }
        }
        var prompts = new List<string>(order.Count * rollouts);
        foreach (var (q, prefix) in order)
            for (int r = 0; r < rollouts; r++) prompts.Add(task.Prompt(q) + prefix);
        var outs = prompts.Count > 0 ? complete(prompts) : [];
        if (outs.Count != prompts.Count) throw new InvalidOperationException($"the rollout policy returned {outs.Count} completions for {prompts.Count} prompts");
        var value = new float[order.Count];
        for (int k = 0; k < order.Count; k++)
        {
            var (q, prefix) = order[k];
            int hits = 0;
            for (int r = 0; r < rollouts; r++)
                if (outs[k * rollouts + r] is { } c && task.Grade(q, prefix + c)) hits++;
            value[k] = (float)hits / rollouts;
        }
        var result = new List<PrmSample>(solutions.Count);
        foreach (var (q, s) in solutions)
        {
            var steps = Steps(s);
            var labels = new float[steps.Count];
            bool correct = task.Grade(q, s);
            string prefix = "";
            for (int i = 0; i < steps.Count - 1; i++)
            {
                prefix += steps[i];
                labels[i] = value[prefixes[(q, prefix)]];
            }
            if (steps.Count > 0) labels[^1] = correct ? 1f : 0f;
            result.Add(new PrmSample(q, s, correct, labels));
        }
        return result;
    }

    /// <summary>
    /// The value-head training example of <paramref name="sample"/>: [BOS] prompt solution [EOS], with each step's
    /// label on its last token (the '\n' that ends it), NaN elsewhere.
    /// </summary>
    public static SftExample Example(ITask task, PrmSample sample) => Example(task, sample.Question, sample.Solution, sample.StepLabels);

    /// <summary>As <see cref="Example(ITask, PrmSample)"/> from parts; <paramref name="labels"/> null gives every step label 0 (for scoring).</summary>
    public static SftExample Example(ITask task, string question, string solution, float[]? labels)
    {
        var basic = SftExample.FromText(task.Prompt(question), solution);
        var perToken = new float[basic.Tokens.Length];
        Array.Fill(perToken, float.NaN);
        int at = basic.PromptLength;
        var steps = Steps(solution);
        for (int i = 0; i < steps.Count; i++)
        {
            at += ByteTokenizer.Ponder.Encode(steps[i]).Length;
            perToken[at - 1] = labels?[i] ?? 0f;
        }
        return basic with { Labels = perToken };
    }
}
