using Ponder.Tasks;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Ponder.Models;
using Ponder.Search;
using Ponder.Tokenization;

namespace Ponder.Training;

/// <summary>
/// pass@1 along sequential revision chains: <see cref="AfterRevisions"/>[k] is the accuracy of the attempt written
/// after k revisions (k = 0: the chain's first attempt); <see cref="PolicyPassAtOne"/> is the base policy's.
/// </summary>
public sealed record RevisionEvaluation(int Questions, int ChainLength, double[] AfterRevisions, double AnyCorrect, double ChainMajority, double PolicyPassAtOne);

/// <summary>What a revision run produced.</summary>
public sealed record RevisionRunResult(FineTuneResult Training, int Examples, int Dropped, double[] ExamplesByAttempts, RevisionEvaluation Evaluation);

/// <summary>
/// Fine-tunes the policy into a revision model (docs/method.md "Revisions") on (question, 0-4 incorrect attempts, correct
/// attempt) examples built from the policy's samples (<see cref="RevisionData"/>), in the prompt format of
/// <see cref="RevisionPrompt"/>, and measures pass@1 along sequential revision chains.
/// </summary>
public static class RevisionTrainer
{
    /// <summary>Runs (or resumes) a revision config; the policy's cached samples are reused.</summary>
    public static RevisionRunResult Run(FineTuneConfig c, IProgress<TrainingProgress>? progress, IProgress<string>? status, CancellationToken ct)
    {
        var task = new ArithmeticChainTask();
        var policy = FineTuneLoop.LoadPolicy(c.PolicyCheckpoint);
        var questions = FineTuneLoop.TrainQuestions(c);
        var samples = PolicySamples.LoadOrSample(c.SamplesFile, policy, task, questions, c.SamplesPerQuestion, c.Seed, policy.Parameters.Config.MaxPositions, status);
        var rng = DeterministicRandom.ForStream(c.Seed, 0x4E71);
        var heldOut = new HashSet<string>(questions.Skip(questions.Count * 9 / 10));
        var trainEx = new List<SftExample>();
        var valEx = new List<SftExample>();
        var byAttempts = new double[RevisionData.MaxAttemptsInContext + 1];
        foreach (var s in samples)
            foreach (var ex in RevisionData.Build(task, s.Question, s.Attempts, rng, c.MaxExamplesPerQuestion))
            {
                (heldOut.Contains(s.Question) ? valEx : trainEx).Add(ex);
                string prompt = ByteTokenizer.Ponder.Decode(ex.Tokens.AsSpan(1, ex.PromptLength - 1).ToArray());
                byAttempts[Math.Min(byAttempts.Length - 1, CountOf(prompt, RevisionPrompt.AttemptHeader))]++;
            }
        var train = new SftData(trainEx, c.BlockSize, c.Seed);
        var val = new SftData(valEx, c.BlockSize, c.Seed);
        var shape = policy.Parameters.Config with { MaxPositions = c.BlockSize };
        string ckpt = Path.Combine(c.OutputDir, PolicyTrainer.CheckpointFile);
        var (parameters, state) = FineTuneLoop.Start(c, ckpt, shape);
        var model = new TrainableLlama(parameters);
        var training = FineTuneLoop.Train(c, model, train, val, ckpt, state, progress, ct);

        status?.Report("evaluating revision chains");
        var evaluation = Evaluate(c, task, policy, model);
        var result = new RevisionRunResult(training, train.Count + val.Count, train.Dropped + val.Dropped, byAttempts, evaluation);
        FineTuneLoop.Export(c, parameters, "revision_eval.json", JsonSerializer.Serialize(result), () => ModelCard(c, parameters.Config, result), TrainedChatTemplates.Revision);
        return result;
    }

    static int CountOf(string s, string part)
    {
        int n = 0;
        for (int i = s.IndexOf(part, StringComparison.Ordinal); i >= 0; i = s.IndexOf(part, i + part.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    /// <summary>
    /// The revision prompt for a chain, with the widest window (at most <see cref="RevisionPrompt.Window"/>) that
    /// leaves <paramref name="room"/> tokens for the answer inside <paramref name="blockSize"/>.
    /// </summary>
    public static string FittingPrompt(ITask task, string question, IReadOnlyList<string> attempts, int blockSize, int room) =>
        RevisionPrompt.Fit(task.Prompt(question), attempts, p => ByteTokenizer.Ponder.Encode(p).Length + 1, blockSize, room);

    /// <summary>Sequential chains at temperature 1 on validation questions; a chain whose attempt did not finish keeps going without it.</summary>
    public static RevisionEvaluation Evaluate(FineTuneConfig c, ITask task, TrainableLlama policy, TrainableLlama reviser)
    {
        var questions = ArithmeticChainSplits.Validation(c.SplitSeed, c.EvalQuestions).Select(p => p.Question).ToList();
        int L = c.EvalSamples, nq = questions.Count;
        var rng = DeterministicRandom.ForStream(c.Seed, 0xC4A1);
        var chains = questions.Select(_ => new List<string>()).ToArray();
        var answers = questions.Select(_ => new List<string?>()).ToArray();
        var after = new double[L + 1];
        for (int k = 0; k <= L; k++)
        {
            var prompts = questions.Select((q, i) => FittingPrompt(task, q, chains[i], c.BlockSize, 96)).ToList();
            var outs = PolicySamples.Complete(reviser, prompts, 1f, rng, c.BlockSize);
            for (int i = 0; i < nq; i++)
            {
                if (outs[i] is not { } a) { answers[i].Add(null); continue; }
                chains[i].Add(a);
                answers[i].Add(task.ExtractAnswer(a));
                if (task.Grade(questions[i], a)) after[k] += 1.0 / nq;
            }
        }
        double any = 0, majority = 0;
        for (int i = 0; i < nq; i++)
        {
            string truth = ArithmeticChainTask.Solve(questions[i]).Answer.ToString(CultureInfo.InvariantCulture);
            any += answers[i].Contains(truth) ? 1.0 / nq : 0;
            majority += Metrics.Select(answers[i], answers[i].Select(_ => 1f).ToList()) == truth ? 1.0 / nq : 0;
        }
        var baseline = PassAtOne.Measure(policy, task, questions, 1f, 4, c.Seed, policy.Parameters.Config.MaxPositions);
        return new RevisionEvaluation(nq, L, after, any, majority, baseline.Overall);
    }

    static string ModelCard(FineTuneConfig c, ModelConfig m, RevisionRunResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        var e = r.Evaluation;
        var card = new ModelCard(c.Name);
        card.Text("Ponder's revision model for the arithmetic-chain task (docs/method.md \"Revisions\"), fine-tuned from policy-small with");
        card.Text("Ponder's pure C# trainer. Prompt format: `src/Ponder/Search/RevisionPrompt.cs` (question, then `Attempt:\\n<text>\\n` for");
        card.Text("each of the most recent up to 4 attempts, oldest first, then `Revision:\\n`); the model writes a new attempt and EOS.");
        card.Blank();
        card.Text("## Architecture");
        card.Line($"LlamaForCausalLM, the policy's shape (dModel {m.DModel}, nLayers {m.NLayers}, nHeads {m.NHeads}, nKvHeads {m.NKvHeads}, dFf {m.DFf}) with context {m.MaxPositions} (the policy's 256 extended: RoPE has no learned positions).");
        card.Text("Files: `config.json` + `model.safetensors` (f32), `model.gguf` (f32), `tokenizer.json`, `tokenizer_config.json` (chat template: the revision prompt), `loss.csv`, `loss.png`, `revision_eval.json`.");
        card.Blank();
        card.Text("## Data");
        card.Line($"- {c.SamplesPerQuestion} policy samples at T=1 per question (paper: 64) on {c.Questions} training questions (level u^{c.LevelPower}); `{c.SamplesFile}`.");
        card.Line($"- Up to {c.MaxExamplesPerQuestion} examples per question, one per correct sample: 0..min(4, wrong samples) incorrect attempts (uniform), the closest by edit distance last, then the correct one as the target.");
        card.Line($"- {r.Examples:N0} examples ({r.Dropped} longer than the context dropped); by incorrect attempts in context 0/1/2/3/4: {string.Join(" / ", r.ExamplesByAttempts.Select(x => x.ToString("F0", inv)))}.");
        card.Blank();
        card.Text("## Training");
        card.Line($"- Command: `ponder train revision --config configs/{c.Name}.json` (resumes from `{c.OutputDir}/checkpoint.bin`).");
        card.Line($"- AdamW lr {c.LearningRate} (warmup {c.WarmupSteps}, cosine to {c.MinLearningRateFraction}x), batch {c.BatchSize} x {c.BlockSize}, weight decay {c.WeightDecay}, {r.Training.Steps} steps; loss on the target attempt only.");
        card.Line($"- Final loss: train {r.Training.TrainLoss:F4}, validation (held-out tenth of the questions) {r.Training.ValidationLoss:F4}; {r.Training.TokensPerSecond:F0} tokens/s, wall {r.Training.WallTime:hh\\:mm\\:ss} (last session).");
        card.Blank();
        card.Line($"## Sequential revisions ({e.Questions} validation questions, one chain of {e.ChainLength} revisions each, T=1)");
        card.Text("The chain's first attempt is written by the revision model from the empty-history prompt; each revision sees the most recent 4 attempts (fewer when they would not fit in the context with 96 tokens to spare).");
        card.Text("| | pass@1 |");
        card.Text("|---|---|");
        card.Line($"| policy-small alone (T=1, 4 samples) | {e.PolicyPassAtOne:P1} |");
        foreach (int k in new[] { 0, 1, 2, 4, 8, 16 })
            if (k < e.AfterRevisions.Length) card.Line($"| attempt after {k} revisions | {e.AfterRevisions[k]:P1} |");
        card.Line($"| any attempt of the chain correct | {e.AnyCorrect:P1} |");
        card.Line($"| majority over the chain's {e.ChainLength + 1} attempts | {e.ChainMajority:P1} |");
        return card.ToString();
    }
}
