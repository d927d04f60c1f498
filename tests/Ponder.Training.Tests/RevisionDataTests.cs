using Ponder.Tasks;
using Ponder.Training;
using Ponder.Tokenization;

namespace Ponder.Training.Tests;

public sealed class RevisionDataTests
{
    [Theory]
    [InlineData("kitten", "sitting", 3)]
    [InlineData("", "abc", 3)]
    [InlineData("A: 47\n", "A: 47\n", 0)]
    [InlineData("53-6=46", "53-6=47", 1)]
    public void Edit_distance_matches_hand_worked_values(string a, string b, int expected)
    {
        Assert.Equal(expected, RevisionData.EditDistance(a, b));
        Assert.Equal(expected, RevisionData.EditDistance(b, a));
    }

    [Fact]
    public void Context_has_zero_to_four_wrong_attempts_with_the_closest_last()
    {
        string target = "4*9=36\n17+36=53\n53-6=47\nA: 47\n";
        var wrong = new[] { "A: 1\n", "4*9=36\n17+36=53\n53-6=46\nA: 46\n", "4*9=35\nA: 9\n", "17+4=21\nA: 21\n", "x\n", "9*9=81\nA: 81\n" };
        var rng = new DeterministicRandom(4);
        var counts = new int[5];
        for (int trial = 0; trial < 200; trial++)
        {
            var ctx = RevisionData.ChooseContext(target, wrong, rng);
            counts[ctx.Count]++;
            if (ctx.Count > 0) Assert.Equal(wrong[1], ctx[^1]);
            Assert.Equal(ctx.Count, ctx.Distinct().Count());
        }
        Assert.All(counts, c => Assert.True(c > 10));
    }

    [Fact]
    public void Build_makes_one_example_per_correct_attempt_trained_on_the_revision_only()
    {
        var task = new ArithmeticChainTask();
        var samples = new List<Attempt> { new("A: 5\n", false), new("1+2=3\nA: 3\n", true), new("A: 4\n", false) };
        var examples = RevisionData.Build(task, "1+2", samples, new DeterministicRandom(1));
        Assert.Single(examples);
        string prompt = ByteTokenizer.Ponder.Decode(examples[0].Tokens.AsSpan(1, examples[0].PromptLength - 1));
        Assert.StartsWith("Q: 1+2\n", prompt);
        Assert.EndsWith("Revision:\n", prompt);
        Assert.Equal("1+2=3\nA: 3\n", ByteTokenizer.Ponder.Decode(examples[0].Tokens.AsSpan(examples[0].PromptLength)));
        Assert.Empty(RevisionData.Build(task, "1+2", [new("A: 5\n", false)], new DeterministicRandom(1)));
    }
}
