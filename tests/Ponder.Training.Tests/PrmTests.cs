using Ponder.Evaluation;
using Ponder.Tasks;
using Ponder.Models;
using Ponder.Search;
using Ponder.Training;
using Ponder.Tokenization;

namespace Ponder.Training.Tests;

public sealed class PrmTests
{
    static readonly ArithmeticChainTask Task = new();
    const string Right = "2*3=6\n1+6=7\nA: 7\n";
    const string Wrong = "2*3=5\n1+5=6\nA: 6\n";

    // A scripted rollout policy for "1+2*3": after the correct first step it finishes correctly on even rollouts and
    // answers 8 on odd ones (so the soft label must be 1/2); after the wrong first step it always continues wrongly;
    // after two correct steps it answers correctly except that the last rollout never finishes (null: incorrect).
    static List<string?> Script(IReadOnlyList<string> prompts, List<string> seen)
    {
        var outs = new List<string?>();
        var counts = new Dictionary<string, int>();
        foreach (string p in prompts)
        {
            seen.Add(p);
            int r = counts[p] = counts.GetValueOrDefault(p) + 1;
            outs.Add(p.EndsWith("Q: 1+2*3\n2*3=6\n", StringComparison.Ordinal) ? (r % 2 == 1 ? "1+6=7\nA: 7\n" : "1+6=8\nA: 8\n")
                : p.EndsWith("2*3=6\n1+6=7\n", StringComparison.Ordinal) ? (r == 4 ? null : "A: 7\n")
                : p.EndsWith("2*3=5\n", StringComparison.Ordinal) ? "1+5=6\nA: 6\n"
                : "A: 6\n");
        }
        return outs;
    }

    [Fact]
    public void Soft_labels_are_the_fraction_of_correct_rollouts_per_step_prefix()
    {
        var seen = new List<string>();
        var labelled = PrmLabels.Build(Task, [("1+2*3", Right), ("1+2*3", Wrong), ("1+2*3", Right)], 4, p => Script(p, seen));
        Assert.Equal([0.5f, 0.75f, 1f], labelled[0].StepLabels);
        Assert.Equal([0f, 0f, 0f], labelled[1].StepLabels);
        Assert.Equal(labelled[0].StepLabels, labelled[2].StepLabels);
        Assert.True(labelled[0].Correct);
        Assert.False(labelled[1].Correct);
        // Unique prefixes only: "2*3=6\n", "2*3=6\n1+6=7\n", "2*3=5\n", "2*3=5\n1+5=6\n", 4 rollouts each.
        Assert.Equal(16, seen.Count);
        Assert.All(seen, p => Assert.StartsWith("Q: 1+2*3\n", p, StringComparison.Ordinal));
    }

    [Fact]
    public void Steps_keep_their_newlines_and_a_final_unterminated_line()
    {
        Assert.Equal(["a\n", "b\n", "c"], PrmLabels.Steps("a\nb\nc"));
        Assert.Equal(["2*3=6\n", "1+6=7\n", "A: 7\n"], PrmLabels.Steps(Right));
        Assert.Empty(PrmLabels.Steps(""));
    }

    [Fact]
    public void Example_puts_each_label_on_the_newline_that_ends_its_step_and_batches_mask_only_those()
    {
        var ex = PrmLabels.Example(Task, new PrmSample("1+2*3", Right, true, [0.25f, 0.5f, 1f]));
        var at = Enumerable.Range(0, ex.Tokens.Length).Where(i => !float.IsNaN(ex.Labels![i])).ToList();
        Assert.Equal(3, at.Count);
        Assert.All(at, i => Assert.Equal('\n', (char)ex.Tokens[i]));
        Assert.Equal("Q: 1+2*3\n2*3=6\n", ByteTokenizer.Ponder.Decode(ex.Tokens.AsSpan(1, at[0])));
        Assert.Equal([0.25f, 0.5f, 1f], at.Select(i => ex.Labels![i]));
        // The row packs copies of the one example; the first copy fills positions [0, len).
        int len = ex.Tokens.Length - 1;
        var (batch, _) = new SftData([ex], 64, 1).Next(0, 1);
        Assert.Equal(at, Enumerable.Range(0, len).Where(i => batch.Mask[i] > 0));
        Assert.Equal(1.75f, batch.Labels.AsSpan(0, len).ToArray().Sum());
    }

    [Fact]
    public void Bce_training_steps_teach_a_value_head_to_score_right_and_wrong_steps()
    {
        var model = TinyModels.ByteValueModel(3);
        var data = new SftData([
            PrmLabels.Example(Task, new PrmSample("1+2*3", Right, true, [1f, 1f, 1f])),
            PrmLabels.Example(Task, new PrmSample("1+2*3", Wrong, false, [0f, 0f, 0f]))], 64, 1);
        var adam = new AdamWOptions(WeightDecay: 0);
        var (first, _) = data.Next(0, 2);
        double start = model.Forward(first);
        Assert.Equal(Math.Log(2), start, 4);   // zero head: sigmoid 0.5 everywhere
        long cursor = 0;
        double loss = double.NaN;
        for (int step = 0; step < 60; step++)
        {
            var (batch, next) = data.Next(cursor, 2);
            cursor = next;
            loss = PolicyTrainer.TrainStep(model, batch, adam, 1e-2f, step, 1.0, new DeterministicRandom(1), out _);
        }
        Assert.True(loss < 0.05, $"BCE after 60 steps is {loss}, expected < 0.05");
        var scores = PrmTrainer.StepScores(model, Task, [("1+2*3", Right), ("1+2*3", Wrong)]);
        Assert.All(scores[0], s => Assert.True(s > 0.9f, $"right step scored {s}"));
        Assert.True(scores[1][^1] < 0.1f, $"wrong final step scored {scores[1][^1]}");
    }

    [Fact]
    public void Auc_and_weighted_selection_match_hand_worked_values()
    {
        // Positives 0.9, 0.4; negatives 0.4, 0.1: pairs (0.9>0.4, 0.9>0.1, 0.4=0.4 half, 0.4>0.1) = 3.5 of 4.
        Assert.Equal(0.875, Metrics.Auc([0.9f, 0.4f, 0.4f, 0.1f], [true, true, false, false]), 12);
        Assert.True(double.IsNaN(Metrics.Auc([0.1f], [true])));
        Assert.Equal("5", Metrics.Select(["5", "6", "6", null], [0.9f, 0.3f, 0.3f, 5f]));
        Assert.Equal("6", Metrics.Select(["5", "6", "6"], [1f, 1f, 1f]));
        Assert.Equal("5", Metrics.Select(["5", "6"], [1f, 1f]));
    }

    [Fact]
    public void Revision_examples_use_exactly_the_search_codes_prompt()
    {
        var attempts = new List<Attempt> { new(Right, true), new("2*3=6\n1+6=8\nA: 8", false), new(Wrong, false) };
        var rng = new DeterministicRandom(2);
        for (int trial = 0; trial < 20; trial++)
        {
            var ex = RevisionData.Build(Task, "1+2*3", attempts, rng)[0];
            string prompt = ByteTokenizer.Ponder.Decode(ex.Tokens.AsSpan(1, ex.PromptLength - 1));
            string[] wrongs = ["2*3=6\n1+6=8\nA: 8", Wrong];
            var expected = new[]
            {
                RevisionPrompt.Format(Task.Prompt("1+2*3"), []),
                RevisionPrompt.Format(Task.Prompt("1+2*3"), [wrongs[0]]),
                RevisionPrompt.Format(Task.Prompt("1+2*3"), [wrongs[1], wrongs[0]]),
            };
            Assert.Contains(prompt, expected);
            Assert.Equal(Right, ByteTokenizer.Ponder.Decode(ex.Tokens.AsSpan(ex.PromptLength, ex.Tokens.Length - ex.PromptLength - 1)));
        }
        Assert.Equal("Q: 1+2*3\nAttempt:\nx\nRevision:\n", RevisionData.Prompt(Task, "1+2*3", ["x"]));
    }

    [Fact]
    public void Fitting_prompt_narrows_the_window_until_the_answer_has_room()
    {
        var chain = Enumerable.Range(0, 6).Select(i => new string((char)('a' + i), 40) + "\n").ToList();
        string full = RevisionTrainer.FittingPrompt(Task, "1+2", chain, 1000, 50);
        Assert.Equal(RevisionPrompt.Format("Q: 1+2\n", chain), full);
        string narrow = RevisionTrainer.FittingPrompt(Task, "1+2", chain, 150, 50);
        Assert.Equal(RevisionPrompt.Format("Q: 1+2\n", chain, 1), narrow);
    }

    [Fact]
    public void Policy_loads_back_from_its_exported_weights_folder_exactly()
    {
        var config = new ModelConfig
        {
            Vocab = ByteTokenizer.PonderVocabSize, DModel = 16, NLayers = 1, NHeads = 2, NKvHeads = 1, HeadDim = 8, DFf = 24,
            MaxPositions = 32, TiedEmbeddings = true, BosTokenId = ByteTokenizer.PonderBos, EosTokenIds = [ByteTokenizer.PonderEos],
        }.Validate("export");
        var p = new ParameterSet(config);
        p.Initialize(7);
        string dir = Path.Combine(Path.GetTempPath(), "ponder-export-" + Guid.NewGuid().ToString("N"));
        try
        {
            ModelExport.WriteWeights(dir, p);
            var back = FineTuneLoop.LoadPolicy(dir).Parameters;
            Assert.Equal(p.All.Select(t => t.Name), back.All.Select(t => t.Name));
            foreach (var t in p.All) Assert.Equal(t.Data, back[t.Name].Data);
        }
        finally { Directory.Delete(dir, true); }
    }
}
