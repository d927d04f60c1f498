using System.Text.Json;
using System.Text.Json.Nodes;

namespace Ponder.Tasks;

/// <summary>
/// The fixed train / validation / test splits of the arithmetic-chain task, deterministic per seed.
/// Test questions climb the difficulty ladder evenly (question i of n sits at level i/(n-1)), so its fifths run from
/// 1-2 single-digit operations to 7-8 operations on 3-digit operands with parentheses. Validation and train draw
/// levels at random (train as u^<c>levelPower</c>, which tilts it toward easy levels when above 1); no train
/// question repeats a test or validation question.
/// </summary>
public static class ArithmeticChainSplits
{
    /// <summary>The test split: <paramref name="count"/> questions evenly along the ladder.</summary>
    public static List<ArithmeticProblem> Test(ulong seed, int count = 500)
    {
        var rng = DeterministicRandom.ForStream(seed, 1);
        var list = new List<ArithmeticProblem>(count);
        for (int i = 0; i < count; i++)
        {
            double level = count == 1 ? 0 : (double)i / (count - 1);
            list.Add(ArithmeticChainTask.Generate(rng, ArithmeticDifficulty.AtLevel(level), level));
        }
        return list;
    }

    /// <summary>The validation split: levels uniform in [0, 1].</summary>
    public static List<ArithmeticProblem> Validation(ulong seed, int count = 500) => RandomLevels(DeterministicRandom.ForStream(seed, 2), count, 1, null);

    /// <summary>
    /// The train split: levels <paramref name="minLevel"/> + (<paramref name="maxLevel"/> - <paramref name="minLevel"/>)
    /// u^<paramref name="levelPower"/>, u uniform (the default range [0, 1] gives u^levelPower exactly); excludes test
    /// and validation questions.
    /// </summary>
    public static List<ArithmeticProblem> Train(ulong seed, int count, double levelPower = 1, double minLevel = 0, double maxLevel = 1)
    {
        if (!(minLevel >= 0 && minLevel <= maxLevel && maxLevel <= 1))
            throw new ArgumentOutOfRangeException(nameof(maxLevel), $"level range [{minLevel}, {maxLevel}] must lie within [0, 1] with min <= max");
        var held = new HashSet<string>(Test(seed).Select(p => p.Question).Concat(Validation(seed).Select(p => p.Question)));
        return RandomLevels(DeterministicRandom.ForStream(seed, 3), count, levelPower, held, minLevel, maxLevel);
    }

    static List<ArithmeticProblem> RandomLevels(DeterministicRandom rng, int count, double power, HashSet<string>? exclude, double minLevel = 0, double maxLevel = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var list = new List<ArithmeticProblem>(count);
        while (list.Count < count)
        {
            double level = minLevel + (maxLevel - minLevel) * Math.Pow(rng.NextDouble(), power);
            var p = ArithmeticChainTask.Generate(rng, ArithmeticDifficulty.AtLevel(level), level);
            if (exclude is null || !exclude.Contains(p.Question)) list.Add(p);
        }
        return list;
    }

    /// <summary>Writes problems as JSONL: question, answer, solution, ops, digits, paren_probability, level.</summary>
    public static void WriteJsonl(string path, IEnumerable<ArithmeticProblem> problems)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        using var w = new StreamWriter(path, false, new System.Text.UTF8Encoding(false)) { NewLine = "\n" };
        foreach (var p in problems)
        {
            var o = new JsonObject
            {
                ["question"] = p.Question, ["answer"] = p.Answer.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["solution"] = p.Solution, ["ops"] = p.Difficulty.Ops, ["digits"] = p.Difficulty.Digits,
                ["paren_probability"] = p.Difficulty.ParenProbability, ["level"] = Math.Round(p.Level, 6),
            };
            w.WriteLine(o.ToJsonString());
        }
    }

    /// <summary>Reads problems written by <see cref="WriteJsonl"/>; throws <see cref="InvalidDataException"/> naming the line on bad input.</summary>
    public static List<ArithmeticProblem> ReadJsonl(string path)
    {
        var list = new List<ArithmeticProblem>();
        int lineNo = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                var o = JsonNode.Parse(line)!.AsObject();
                var d = new ArithmeticDifficulty(o["ops"]!.GetValue<int>(), o["digits"]!.GetValue<int>(), o["paren_probability"]!.GetValue<double>());
                list.Add(new ArithmeticProblem(o["question"]!.GetValue<string>(), long.Parse(o["answer"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture),
                    o["solution"]!.GetValue<string>(), d, o["level"]?.GetValue<double>() ?? double.NaN));
            }
            catch (Exception e) when (e is JsonException or NullReferenceException or InvalidOperationException or FormatException)
            {
                throw new InvalidDataException($"{path}:{lineNo}: not an arithmetic-chain record ({e.Message})", e);
            }
        }
        return list;
    }
}
