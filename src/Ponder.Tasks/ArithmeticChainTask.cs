using System.Globalization;
using System.Text;

namespace Ponder.Tasks;

/// <summary>Knobs of one arithmetic-chain question: binary operations, largest operand digit count, chance of parentheses.</summary>
public sealed record ArithmeticDifficulty(int Ops, int Digits, double ParenProbability)
{
    /// <summary>Throws <see cref="ArgumentException"/> naming the knob when it is out of range.</summary>
    public ArithmeticDifficulty Validate()
    {
        if (Ops is < 1 or > 16) throw new ArgumentException($"ops = {Ops} is out of range (1..16)", nameof(Ops));
        if (Digits is < 1 or > 6) throw new ArgumentException($"digits = {Digits} is out of range (1..6)", nameof(Digits));
        if (!(ParenProbability >= 0 && ParenProbability <= 1)) throw new ArgumentException($"paren probability = {ParenProbability} is out of range (0..1)", nameof(ParenProbability));
        return this;
    }

    /// <summary>
    /// The difficulty ladder: <paramref name="level"/> 0 is one operation on single digits, 1 is eight operations on
    /// up to 3-digit operands with parentheses half the time. Ops and digits rise in steps; parentheses start at 0.3.
    /// </summary>
    public static ArithmeticDifficulty AtLevel(double level)
    {
        if (!(level >= 0 && level <= 1)) throw new ArgumentOutOfRangeException(nameof(level), $"level {level} is outside [0, 1]");
        int ops = Math.Min(8, 1 + (int)(level * 8));
        int digits = Math.Min(3, 1 + (int)(level * 3));
        return new ArithmeticDifficulty(ops, digits, level < 0.3 ? 0 : 0.5);
    }
}

/// <summary>One generated question with its answer and the reference step-by-step solution (what the model writes after the prompt).</summary>
public sealed record ArithmeticProblem(string Question, long Answer, string Solution, ArithmeticDifficulty Difficulty, double Level);

/// <summary>
/// The reference task (docs/method.md): integer expressions over +, -, * with optional parentheses. The solution does one
/// operation per line: innermost (leftmost) parentheses first, then * before + and -, left to right within equal
/// precedence, and ends with <c>A: n</c>:
/// <code>
/// Q: 17+4*9-6
/// 4*9=36
/// 17+36=53
/// 53-6=47
/// A: 47
/// </code>
/// </summary>
public sealed class ArithmeticChainTask : ITask
{
    /// <summary>Intermediate results larger than this in magnitude are rejected by the generator (keeps lines short).</summary>
    public const long MaxMagnitude = 1_000_000;

    /// <inheritdoc/>
    public string Prompt(string question) => "Q: " + question + "\n";

    /// <inheritdoc/>
    public string? ExtractAnswer(string completion) => AnswerExtractors.IntegerAnswerLine(completion);

    /// <inheritdoc/>
    public bool Grade(string question, string completion)
    {
        string? got = ExtractAnswer(completion);
        return got is not null && got == Solve(question).Answer.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// The task's own step checker (the analogue of human process labels): for each step of <paramref name="steps"/>,
    /// whether it and every step before it are correct. A step is correct when it equals, after trimming white space,
    /// the reference solution's line at the same position (<see cref="Solve"/>: one operation per line in the
    /// reference order, then <c>A: n</c>); a step past the reference's end, or any other text, is wrong, and so is every
    /// step after the first wrong one. The policies are trained on the reference order, so a correct but reordered
    /// step (another valid reduction order) is counted wrong; that is the price of an exact, unambiguous label.
    /// </summary>
    public static bool[] CheckSteps(string question, IReadOnlyList<string> steps)
    {
        ArgumentNullException.ThrowIfNull(steps);
        var reference = Solve(question).Solution.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var result = new bool[steps.Count];
        for (int i = 0; i < steps.Count; i++)
        {
            bool ok = i < reference.Length && steps[i].AsSpan().Trim().SequenceEqual(reference[i]);
            if (!ok) break;
            result[i] = true;
        }
        return result;
    }

    /// <summary>Generates one question at <paramref name="difficulty"/>; resamples until no intermediate exceeds <see cref="MaxMagnitude"/>.</summary>
    public static ArithmeticProblem Generate(DeterministicRandom rng, ArithmeticDifficulty difficulty, double level = double.NaN)
    {
        difficulty.Validate();
        for (int attempt = 0; ; attempt++)
        {
            string question = RandomExpression(rng, difficulty);
            long answer, maxAbs;
            string solution;
            // A chain of 3-digit products can overflow long before the magnitude check sees it: resample those too.
            try { (answer, solution, maxAbs) = SolveCore(question); }
            catch (OverflowException) { continue; }
            if (maxAbs <= MaxMagnitude || attempt > 1000)
                return new ArithmeticProblem(question, answer, solution, difficulty, level);
        }
    }

    static string RandomExpression(DeterministicRandom rng, ArithmeticDifficulty d)
    {
        int n = d.Ops + 1;
        var operands = new long[n];
        for (int i = 0; i < n; i++)
        {
            int digits = rng.Next(1, d.Digits + 1);
            long lo = digits == 1 ? 1 : (long)Math.Pow(10, digits - 1), hi = (long)Math.Pow(10, digits);
            operands[i] = lo + rng.Next(0, (int)(hi - lo));
        }
        var ops = new char[d.Ops];
        for (int i = 0; i < d.Ops; i++) ops[i] = "+-*"[rng.Next(0, 3)];
        // Parentheses: up to two disjoint groups of at least two operands, never the whole expression.
        var open = new int[n]; var close = new int[n];
        int groups = 0;
        for (int g = 0; g < 2 && d.Ops >= 2; g++)
        {
            if (rng.NextDouble() >= d.ParenProbability) break;
            int len = rng.Next(2, n), start = rng.Next(0, n - len + 1);
            bool clash = false;
            for (int i = Math.Max(0, start - 1); i < Math.Min(n, start + len + 1); i++) clash |= open[i] + close[i] > 0;
            if (clash) continue;
            open[start]++; close[start + len - 1]++; groups++;
        }
        var sb = new StringBuilder();
        for (int i = 0; i < n; i++)
        {
            if (i > 0) sb.Append(ops[i - 1]);
            sb.Append('(', open[i]).Append(operands[i].ToString(CultureInfo.InvariantCulture)).Append(')', close[i]);
        }
        return sb.ToString();
    }

    /// <summary>The answer and reference solution of <paramref name="question"/>; throws <see cref="ArgumentException"/> when it is not a valid expression.</summary>
    public static (long Answer, string Solution) Solve(string question)
    {
        var (answer, solution, _) = SolveCore(question);
        return (answer, solution);
    }

    /// <summary>
    /// A solution that slips once and carries on consistently, as a policy does: the result of reduction step
    /// <paramref name="step"/> (0-based; <c>step</c> = the number of operations corrupts only the <c>A:</c> line) is off by
    /// <paramref name="delta"/> (non-zero), every later step works with the wrong value, and the answer is wrong. The
    /// task's checker labels its steps before <paramref name="step"/> correct and the rest wrong: a hard negative that
    /// differs from the reference only in arithmetic.
    /// </summary>
    public static string CorruptedSolution(string question, int step, long delta)
    {
        if (delta == 0) throw new ArgumentOutOfRangeException(nameof(delta), "a corruption needs a non-zero delta");
        return SolveCore(question, step, delta).Solution;
    }

    static (long Answer, string Solution, long MaxAbs) SolveCore(string question, int corruptStep = -1, long delta = 0)
    {
        var items = Lex(question);
        var sb = new StringBuilder();
        long maxAbs = 0;
        int step = 0;
        while (items.Count > 1)
        {
            // The group to work in: the first ')' closes the leftmost innermost group.
            int lo = 0, hi = items.Count;
            int close = items.FindIndex(t => t.Kind == ')');
            if (close >= 0)
            {
                int open = items.FindLastIndex(close, t => t.Kind == '(');
                if (close - open == 2) { items.RemoveAt(close); items.RemoveAt(open); continue; }
                (lo, hi) = (open + 1, close);
            }
            int at = -1;
            for (int i = lo + 1; i < hi; i += 2) if (items[i].Kind == '*') { at = i; break; }
            if (at < 0) at = lo + 1;
            long a = items[at - 1].Value, b = items[at + 1].Value;
            char op = items[at].Kind;
            long r = checked(op switch { '+' => a + b, '-' => a - b, _ => a * b });
            if (corruptStep == step++) r += delta;
            maxAbs = Math.Max(maxAbs, Math.Abs(r));
            sb.Append(CultureInfo.InvariantCulture, $"{a}{op}{b}={r}\n");
            items.RemoveRange(at - 1, 3);
            items.Insert(at - 1, new Item('n', r));
        }
        long answer = items[0].Value;
        if (corruptStep == step) answer += delta;
        sb.Append(CultureInfo.InvariantCulture, $"A: {answer}\n");
        return (answer, sb.ToString(), maxAbs);
    }

    readonly record struct Item(char Kind, long Value);

    // Tokens alternate number / operator inside each group; parentheses must balance.
    static List<Item> Lex(string question)
    {
        ArgumentNullException.ThrowIfNull(question);
        var items = new List<Item>();
        int depth = 0;
        bool expectNumber = true;
        for (int i = 0; i < question.Length;)
        {
            char c = question[i];
            if (expectNumber && c == '(') { items.Add(new Item('(', 0)); depth++; i++; }
            else if (expectNumber && char.IsAsciiDigit(c))
            {
                int j = i;
                while (j < question.Length && char.IsAsciiDigit(question[j])) j++;
                if (j - i > 9) throw new ArgumentException($"question '{question}': operand at {i} has more than 9 digits", nameof(question));
                items.Add(new Item('n', long.Parse(question.AsSpan(i, j - i), CultureInfo.InvariantCulture)));
                i = j; expectNumber = false;
            }
            else if (!expectNumber && c == ')' && depth > 0) { items.Add(new Item(')', 0)); depth--; i++; }
            else if (!expectNumber && c is '+' or '-' or '*') { items.Add(new Item(c, 0)); expectNumber = true; i++; }
            else throw new ArgumentException($"question '{question}': unexpected '{c}' at {i}", nameof(question));
        }
        if (expectNumber || depth != 0) throw new ArgumentException($"question '{question}': incomplete expression", nameof(question));
        return items;
    }
}
