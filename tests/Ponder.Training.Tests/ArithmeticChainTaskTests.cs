using Ponder.Tasks;

namespace Ponder.Training.Tests;

public sealed class ArithmeticChainTaskTests
{
    readonly ArithmeticChainTask task = new();

    // Independent evaluator: recursive descent over expr := term (('+'|'-') term)*, term := atom ('*' atom)*, atom := n | '(' expr ')'.
    static long Evaluate(string s)
    {
        int i = 0;
        long Expr() { long v = Term(); while (i < s.Length && (s[i] == '+' || s[i] == '-')) { char op = s[i++]; long r = Term(); v = op == '+' ? v + r : v - r; } return v; }
        long Term() { long v = Atom(); while (i < s.Length && s[i] == '*') { i++; v *= Atom(); } return v; }
        long Atom()
        {
            if (s[i] == '(') { i++; long v = Expr(); Assert.Equal(')', s[i]); i++; return v; }
            bool neg = s[i] == '-'; if (neg) i++;
            long n = 0; int start = i;
            while (i < s.Length && char.IsAsciiDigit(s[i])) n = n * 10 + (s[i++] - '0');
            Assert.True(i > start, $"number expected at {start} in '{s}'");
            return neg ? -n : n;
        }
        long result = Expr();
        Assert.Equal(s.Length, i);
        return result;
    }

    [Fact]
    public void Worked_example_from_the_method()
    {
        var (answer, solution) = ArithmeticChainTask.Solve("17+4*9-6");
        Assert.Equal(47, answer);
        Assert.Equal("4*9=36\n17+36=53\n53-6=47\nA: 47\n", solution);
        Assert.Equal("Q: 17+4*9-6\n", task.Prompt("17+4*9-6"));
        Assert.Equal("3+4=7\n7*2=14\nA: 14\n", ArithmeticChainTask.Solve("(3+4)*2").Solution);
        Assert.Equal("5-7=-2\n2*-2=-4\n10--4=14\nA: 14\n", ArithmeticChainTask.Solve("10-2*(5-7)").Solution);
    }

    [Fact]
    public void Every_step_line_is_correct_and_the_answer_matches_an_independent_parser()
    {
        foreach (var p in ArithmeticChainSplits.Test(11, 300))
        {
            Assert.Equal(Evaluate(p.Question), p.Answer);
            var lines = p.Solution.TrimEnd('\n').Split('\n');
            Assert.Equal(p.Difficulty.Ops, lines.Length - 1);
            Assert.Equal($"A: {p.Answer}", lines[^1]);
            foreach (string line in lines[..^1])
            {
                int eq = line.IndexOf('=');
                Assert.Equal(long.Parse(line[(eq + 1)..]), Evaluate(line[..eq]));
            }
            Assert.True(task.Grade(p.Question, p.Solution));
        }
    }

    [Fact]
    public void Generator_is_deterministic_per_seed_and_golden()
    {
        var a = ArithmeticChainSplits.Test(42, 50).Select(p => p.Question).ToList();
        var b = ArithmeticChainSplits.Test(42, 50).Select(p => p.Question).ToList();
        var c = ArithmeticChainSplits.Test(43, 50).Select(p => p.Question).ToList();
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.Equal("7*3", ArithmeticChainSplits.Test(42, 500)[0].Question);
        Assert.Equal("122+5-438-(231-77*44-90-921)+711", ArithmeticChainSplits.Test(42, 500)[^1].Question);
    }

    [Fact]
    public void Test_split_spans_the_ladder_and_train_excludes_held_out_questions()
    {
        var test = ArithmeticChainSplits.Test(5);
        Assert.Equal(500, test.Count);
        Assert.Equal(new ArithmeticDifficulty(1, 1, 0), test[0].Difficulty);
        Assert.Equal(new ArithmeticDifficulty(8, 3, 0.5), test[^1].Difficulty);
        var held = test.Select(p => p.Question).Concat(ArithmeticChainSplits.Validation(5).Select(p => p.Question)).ToHashSet();
        Assert.DoesNotContain(ArithmeticChainSplits.Train(5, 2000), p => held.Contains(p.Question));
    }

    [Fact]
    public void Train_split_level_range_confines_levels_and_the_full_range_is_the_old_split()
    {
        var ranged = ArithmeticChainSplits.Train(5, 300, 1, 0.2, 0.3);
        Assert.All(ranged, p => Assert.InRange(p.Level, 0.2, 0.3));
        // Levels in [0.2, 0.3] give 2-3 operations on single digits (ArithmeticDifficulty.AtLevel).
        Assert.All(ranged, p => Assert.InRange(p.Difficulty.Ops, 2, 3));
        // The default range keeps the level exactly u^levelPower, u the stream's first draw, so existing splits do not move.
        double u = DeterministicRandom.ForStream(5, 3).NextDouble();
        Assert.Equal(Math.Pow(u, 1.5), ArithmeticChainSplits.Train(5, 1, 1.5)[0].Level);
        Assert.Equal(0.2 + 0.1 * Math.Pow(u, 1.5), ArithmeticChainSplits.Train(5, 1, 1.5, 0.2, 0.3)[0].Level, 15);
        Assert.Throws<ArgumentOutOfRangeException>(() => ArithmeticChainSplits.Train(5, 1, 1, 0.5, 0.4));
    }

    [Theory]
    [InlineData("4*9=36\n", null)]                    // no A: line
    [InlineData("A: 4x\n", null)]                     // not an integer
    [InlineData("A: 47 apples\n", null)]              // garbage on the line
    [InlineData("A: 47\nA: 48\n", null)]              // trailing garbage after the answer
    [InlineData("A: \n", null)]
    [InlineData("A: 99999999999999999999\n", null)]   // overflows 64 bits
    [InlineData("1+2=3\nA: 47\n", "47")]
    [InlineData("A: -0012", "-12")]
    [InlineData("A: 47\n\n", "47")]
    public void Extractor_accepts_only_well_formed_answers(string completion, string? expected)
        => Assert.Equal(expected, task.ExtractAnswer(completion));

    [Fact]
    public void Grader_rejects_wrong_and_malformed_answers_and_bad_questions()
    {
        Assert.True(task.Grade("2+3*4", "3*4=12\n2+12=14\nA: 14\n"));
        Assert.False(task.Grade("2+3*4", "A: 20\n"));
        Assert.False(task.Grade("2+3*4", "A: 14 ok\n"));
        Assert.Throws<ArgumentException>(() => task.Grade("2+*4", "A: 8"));
        Assert.Throws<ArgumentException>(() => task.Grade("(2+4", "A: 6"));
    }

    [Fact]
    public void Jsonl_dataset_round_trips_splits_and_plugs_in_a_boxed_extractor()
    {
        string dir = Path.Combine(Path.GetTempPath(), "ponder-tasks-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string path = Path.Combine(dir, "test.jsonl");
            var problems = ArithmeticChainSplits.Test(3, 20);
            ArithmeticChainSplits.WriteJsonl(path, problems);
            Assert.Equal(problems.Select(p => p.Question), ArithmeticChainSplits.ReadJsonl(path).Select(p => p.Question));
            var ds = JsonlDataset.Load(path);
            Assert.Equal(20, ds.Items.Count);
            Assert.True(ds.Grade(problems[7].Question, problems[7].Solution));
            Assert.False(ds.Grade(problems[7].Question, "A: 123456789\n"));

            string math = Path.Combine(dir, "math.jsonl");
            File.WriteAllText(math, "{\"problem\":\"What is 1/2+1/2?\",\"answer\":\"1\"}\n");
            var boxed = JsonlDataset.Load(math, extractor: AnswerExtractors.LastBoxed);
            Assert.True(boxed.Grade("What is 1/2+1/2?", "so \\boxed{1}"));
            Assert.False(boxed.Grade("What is 1/2+1/2?", "no box"));
            File.WriteAllText(math, "{\"problem\":\"x\"}\n");
            var e = Assert.Throws<InvalidDataException>(() => JsonlDataset.Load(math));
            Assert.Contains("math.jsonl:1", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Generator_resamples_expressions_whose_intermediates_overflow()
    {
        // 16 operations on 6-digit operands overflow a long often; the generator must resample, not throw.
        var rng = new DeterministicRandom(11);
        var hard = new ArithmeticDifficulty(16, 6, 0.5);
        Assert.Throws<OverflowException>(() => ArithmeticChainTask.Solve("999999*999999*999999*999999"));
        for (int i = 0; i < 30; i++)
        {
            var p = ArithmeticChainTask.Generate(rng, hard);
            Assert.Equal(p.Answer, ArithmeticChainTask.Solve(p.Question).Answer);
        }
    }
}
