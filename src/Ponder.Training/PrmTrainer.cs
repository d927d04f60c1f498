using Ponder.Tasks;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Ponder.Models;
using Ponder.Tokenization;

namespace Ponder.Training;

/// <summary>How well a PRM ranks the policy's samples on held-out questions.</summary>
public sealed record PrmEvaluation(int Questions, int SamplesPerQuestion, double Auc, double MeanPassAtOne, double MajorityAccuracy,
    double WeightedBestOfNAccuracy, double BestOfNMaxAccuracy, double OracleAccuracy, double WithinQuestionAuc, int MixedQuestions);

/// <summary>
/// How the PRM's training data was made: wall times of sampling (null when the samples came from the cache) and of
/// the rollouts, and how many rollouts on how many distinct step prefixes. Kept in data_stats.json beside the labels it describes.
/// </summary>
public sealed record PrmDataStats(TimeSpan? SamplingTime, TimeSpan RolloutTime, int Rollouts, int RolledPrefixes);

/// <summary>What a PRM run produced.</summary>
/// <remarks>MixedQuestions: training questions with both correct and incorrect samples (only those teach ranking within a question).</remarks>
public sealed record PrmRunResult(FineTuneResult Training, int LabelledSolutions, int Prefixes, double MeanStepLabel, PrmEvaluation Evaluation, TimeSpan DataTime, int UnsolvedQuestions,
    PrmDataStats? Data = null, int MixedQuestions = 0);

/// <summary>
/// Trains a process reward model (docs/method.md "PRM training", Math-Shepherd): policy samples on training questions,
/// Monte Carlo rollouts from every step prefix for soft labels, then a value head (initialised from the policy's
/// trunk) trained with binary cross-entropy at each step's last token. The score of a prefix is sigmoid(logit) at
/// the '\n' that ends its last step.
/// </summary>
public static class PrmTrainer
{
    /// <summary>Runs (or resumes) a PRM config: cached samples and labels are reused.</summary>
    public static PrmRunResult Run(FineTuneConfig c, IProgress<TrainingProgress>? progress, IProgress<string>? status, CancellationToken ct)
    {
        var task = new ArithmeticChainTask();
        var policy = FineTuneLoop.LoadPolicy(c.PolicyCheckpoint);
        int maxLength = policy.Parameters.Config.MaxPositions;
        var dataClock = Stopwatch.StartNew();
        Directory.CreateDirectory(c.OutputDir);
        var questions = FineTuneLoop.TrainQuestions(c);
        bool sampled = !File.Exists(c.SamplesFile);
        var samples = PolicySamples.LoadOrSample(c.SamplesFile, policy, task, questions, c.SamplesPerQuestion, c.Seed, maxLength, status);
        var samplingTime = dataClock.Elapsed;
        var (labelled, stats) = LoadOrBuildLabels(c, task, policy, samples, status, sampled ? samplingTime : null);
        var dataTime = dataClock.Elapsed;
        int prefixes = labelled.Select(l => (l.Question, PrmLabels.Steps(l.Solution).Count)).Sum(x => Math.Max(0, x.Item2 - 1));

        // Hold out the last tenth of the questions for the validation loss.
        var heldOut = new HashSet<string>(questions.Skip(questions.Count * 9 / 10));
        var hardNegatives = HardNegatives(c, questions.Where(q => !heldOut.Contains(q)));
        var train = new SftData(labelled.Where(l => !heldOut.Contains(l.Question)).Concat(hardNegatives).Select(l => PrmLabels.Example(task, l)), c.BlockSize, c.Seed);
        var val = new SftData(labelled.Where(l => heldOut.Contains(l.Question)).Select(l => PrmLabels.Example(task, l)), c.BlockSize, c.Seed);
        var shape = policy.Parameters.Config with { Head = HeadKind.Value, NumLabels = 1, MaxPositions = c.BlockSize };
        string ckpt = Path.Combine(c.OutputDir, PolicyTrainer.CheckpointFile);
        var (parameters, state) = FineTuneLoop.Start(c, ckpt, shape);
        var prm = new TrainableLlama(parameters);
        Func<TrainableLlama, double>? selection = null;
        if (c.EarlyStoppingMetric == FineTuneConfig.WithinQuestionAucMetric)
        {
            var heldOutSolutions = labelled.Where(l => heldOut.Contains(l.Question)).ToList();
            selection = m => -WithinQuestionAuc(m, task, heldOutSolutions);
        }
        var training = FineTuneLoop.Train(c, prm, train, val, ckpt, state, progress, ct, selection);

        status?.Report("evaluating");
        var evaluation = Evaluate(c, task, policy, prm, maxLength);
        double meanLabel = labelled.SelectMany(l => l.StepLabels).DefaultIfEmpty(0).Average();
        int unsolvedQuestions = samples.Count(s => !s.Attempts.Any(a => a.Correct));
        int mixedQuestions = samples.Count(s => s.Attempts.Any(a => a.Correct) && s.Attempts.Any(a => !a.Correct));
        var result = new PrmRunResult(training, labelled.Count, prefixes, meanLabel, evaluation, dataTime, unsolvedQuestions, stats, mixedQuestions);
        var baseline = c.BaselineEval is { } b ? JsonSerializer.Deserialize<PrmRunResult>(File.ReadAllText(b)) : null;
        FineTuneLoop.Export(c, parameters, "prm_eval.json", JsonSerializer.Serialize(result), () => ModelCard(c, parameters.Config, result, baseline));
        return result;
    }

    /// <summary>
    /// The Monte Carlo step labels of the run (<see cref="FineTuneConfig.LabelsFile"/>, by default
    /// <c>outputDir/prm_labels.jsonl</c>): read when the file exists, else built from <paramref name="samples"/> with
    /// rollouts of <paramref name="policy"/> and written there. The PRM and the shared value head train on these.
    /// </summary>
    public static (List<PrmSample> Labels, PrmDataStats? Stats) LoadOrBuildLabels(FineTuneConfig c, ITask task, TrainableLlama policy,
        IReadOnlyList<QuestionSamples> samples, IProgress<string>? status, TimeSpan? samplingTime = null)
    {
        string labelsPath = c.LabelsFile ?? Path.Combine(c.OutputDir, "prm_labels.jsonl");
        string statsPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(labelsPath))!, "data_stats.json");
        if (File.Exists(labelsPath))
        {
            var read = new List<PrmSample>();
            int line = 0;
            foreach (string l in File.ReadLines(labelsPath))
            {
                line++;
                try { read.Add(JsonSerializer.Deserialize<PrmSample>(l) ?? throw new JsonException("null record")); }
                catch (JsonException e) { throw new InvalidDataException($"{labelsPath}:{line}: not a PRM label record ({e.Message})", e); }
            }
            return (read, File.Exists(statsPath) ? JsonSerializer.Deserialize<PrmDataStats>(File.ReadAllText(statsPath)) : null);
        }
        static IEnumerable<(string, string)> Parsable(ITask task, QuestionSamples s) =>
            s.Attempts.Where(a => task.ExtractAnswer(a.Completion) is not null).Select(a => (s.Question, a.Completion));
        if (c.Labels == FineTuneConfig.CheckerLabels)
        {
            // Process labels from the task's checker: no rollouts, every question labelled (solved or not).
            var checkedLabels = samples.SelectMany(s => Parsable(task, s)).Select(x =>
            {
                var steps = PrmLabels.Steps(x.Item2);
                var ok = ArithmeticChainTask.CheckSteps(x.Item1, steps);
                return new PrmSample(x.Item1, x.Item2, task.Grade(x.Item1, x.Item2), [.. ok.Select(b => b ? 1f : 0f)]);
            }).ToList();
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(labelsPath))!);
            File.WriteAllLines(labelsPath, checkedLabels.Select(l => JsonSerializer.Serialize(l)));
            var checkerStats = new PrmDataStats(samplingTime, TimeSpan.Zero, 0, 0);
            File.WriteAllText(statsPath, JsonSerializer.Serialize(checkerStats));
            return (checkedLabels, checkerStats);
        }
        var rolloutClock = Stopwatch.StartNew();
        int rollouts = 0;
        int maxLength = policy.Parameters.Config.MaxPositions;
        var rng = DeterministicRandom.ForStream(c.Seed, 0x9011);
        // Questions none of whose samples is correct get all-zero labels without rollouts when the config says
        // so: the policy's pass rate there is under 1/samplesPerQuestion, and their long solutions would take
        // nearly all of the rollout budget.
        bool Rolled(QuestionSamples s) => c.RolloutUnsolved || s.Attempts.Any(a => a.Correct);
        var solutions = samples.Where(Rolled).SelectMany(s => Parsable(task, s)).ToList();
        var unsolved = samples.Where(s => !Rolled(s)).SelectMany(s => Parsable(task, s))
            .Select(x => new PrmSample(x.Item1, x.Item2, false, new float[PrmLabels.Steps(x.Item2).Count])).ToList();
        var labelled = PrmLabels.Build(task, solutions, c.Rollouts, prompts =>
        {
            rollouts = prompts.Count;
            var outs = new List<string?>(prompts.Count);
            for (int i = 0; i < prompts.Count; i += 2048)
            {
                outs.AddRange(PolicySamples.Complete(policy, prompts.Skip(i).Take(2048).ToList(), 1f, rng, maxLength));
                status?.Report($"rollouts {outs.Count}/{prompts.Count}");
            }
            return outs;
        });
        labelled.AddRange(unsolved);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(labelsPath))!);
        File.WriteAllLines(labelsPath, labelled.Select(l => JsonSerializer.Serialize(l)));
        var stats = new PrmDataStats(samplingTime, rolloutClock.Elapsed, rollouts, rollouts / c.Rollouts);
        File.WriteAllText(statsPath, JsonSerializer.Serialize(stats));
        return (labelled, stats);
    }

    /// <summary>
    /// <see cref="FineTuneConfig.CorruptedPerQuestion"/> corrupted reference solutions per question (a random step, or
    /// the answer line, off by ±1..3 half the time, ±10 a quarter, else by up to the step's own magnitude), each
    /// labelled by the checker, and the reference solution itself.
    /// </summary>
    public static List<PrmSample> HardNegatives(FineTuneConfig c, IEnumerable<string> questions)
    {
        var list = new List<PrmSample>();
        if (c.CorruptedPerQuestion == 0) return list;
        var rng = DeterministicRandom.ForStream(c.Seed, 0xC0AA);
        foreach (string q in questions)
        {
            string reference = ArithmeticChainTask.Solve(q).Solution;
            var referenceSteps = PrmLabels.Steps(reference);
            list.Add(new PrmSample(q, reference, true, [.. referenceSteps.Select(_ => 1f)]));
            for (int k = 0; k < c.CorruptedPerQuestion; k++)
            {
                int step = rng.Next(0, referenceSteps.Count); // the last index is the A: line
                double u = rng.NextDouble();
                long magnitude = u < 0.5 ? rng.Next(1, 4) : u < 0.75 ? 10 : Math.Max(1, rng.Next(1, 100));
                long delta = rng.NextDouble() < 0.5 ? -magnitude : magnitude;
                string corrupted = ArithmeticChainTask.CorruptedSolution(q, step, delta);
                var steps = PrmLabels.Steps(corrupted);
                list.Add(new PrmSample(q, corrupted, false, [.. ArithmeticChainTask.CheckSteps(q, steps).Select(b => b ? 1f : 0f)]));
            }
        }
        return list;
    }

    /// <summary>
    /// The mean, over questions with both correct and incorrect solutions in <paramref name="solutions"/>, of the AUC of
    /// <paramref name="prm"/>'s final-step scores separating them: how well it ranks the solutions of one question.
    /// </summary>
    public static double WithinQuestionAuc(TrainableLlama prm, ITask task, IReadOnlyList<PrmSample> solutions)
    {
        var final = StepScores(prm, task, solutions.Select(s => (s.Question, s.Solution)).ToList()).Select(s => s.Length > 0 ? s[^1] : 0f).ToList();
        return Metrics.MeanAucWithin(solutions.Select((s, i) => (s.Question, final[i], s.Correct))).Mean;
    }

    /// <summary>
    /// Runs <paramref name="model"/> over each (question, solution), <paramref name="chunk"/> at a time, and after each
    /// forward calls <paramref name="atStepEnd"/>(item, step, row) for every step end, row indexing the forward's rows
    /// (<see cref="TrainableLlama.Logits"/>, <see cref="TrainableLlama.FinalHidden"/>).
    /// </summary>
    public static void ForEachStepEnd(TrainableLlama model, ITask task, IReadOnlyList<(string Question, string Solution)> items,
        Action<int, int, int> atStepEnd, int chunk = 32)
    {
        for (int start = 0; start < items.Count; start += chunk)
        {
            var examples = items.Skip(start).Take(chunk).Select(x => PrmLabels.Example(task, x.Question, x.Solution, null)).ToList();
            var b = ScoringBatch(examples);
            int B = b.Batch, T = b.SeqLen;
            model.Forward(b);
            for (int r = 0; r < B; r++)
            {
                var labels = examples[r].Labels!;
                int step = 0;
                for (int t = 0; t < T && t < labels.Length; t++)
                    if (!float.IsNaN(labels[t])) atStepEnd(start + r, step++, r * T + t);
            }
        }
    }

    /// <summary>
    /// One row per example (its tokens without the last, padded to the longest), for a forward that reads outputs at
    /// chosen positions: row r, position t is output row r·SeqLen + t.
    /// </summary>
    public static TrainingBatch ScoringBatch(IReadOnlyList<SftExample> examples)
    {
        int B = examples.Count, T = examples.Max(e => e.Tokens.Length - 1), n = B * T;
        var b = new TrainingBatch(B, T, new int[n], new int[n], new float[n], new int[n], new int[n], new float[n]);
        for (int r = 0; r < B; r++)
            for (int t = 0; t < T; t++)
            {
                int o = r * T + t, len = examples[r].Tokens.Length - 1;
                b.Tokens[o] = t < len ? examples[r].Tokens[t] : ByteTokenizer.PonderPad;
                b.Positions[o] = t < len ? t : 0;
                b.SegmentStart[o] = t < len ? 0 : t;
            }
        return b;
    }

    /// <summary>sigmoid(score) at every step end of each (question, solution), one row per solution.</summary>
    public static List<float[]> StepScores(TrainableLlama prm, ITask task, IReadOnlyList<(string Question, string Solution)> items, int chunk = 32)
    {
        var scores = items.Select(_ => new List<float>()).ToList();
        ForEachStepEnd(prm, task, items, (item, _, row) => scores[item].Add(1f / (1f + MathF.Exp(-prm.Logits[row]))), chunk);
        return scores.Select(s => s.ToArray()).ToList();
    }

    static PrmEvaluation Evaluate(FineTuneConfig c, ITask task, TrainableLlama policy, TrainableLlama prm, int maxLength)
    {
        var samples = EvaluationSamples(c, task, policy, maxLength);
        var items = samples.SelectMany(s => s.Attempts.Select(a => (s.Question, a.Completion))).ToList();
        return Evaluate(c, task, samples, StepScores(prm, task, items));
    }

    /// <summary>The evaluation's policy samples: c.EvalSamples per validation question at T=1 (cached in the output folder).</summary>
    public static List<QuestionSamples> EvaluationSamples(FineTuneConfig c, ITask task, TrainableLlama policy, int maxLength)
    {
        var questions = ArithmeticChainSplits.Validation(c.SplitSeed, c.EvalQuestions).Select(p => p.Question).ToList();
        return PolicySamples.LoadOrSample(Path.Combine(c.OutputDir, "eval_samples.jsonl"), policy, task, questions, c.EvalSamples,
            c.Seed ^ 0xEEEE, maxLength);
    }

    /// <summary>The ranking and selection metrics of step <paramref name="scores"/> (one row per attempt, in order) on <paramref name="samples"/>.</summary>
    public static PrmEvaluation Evaluate(FineTuneConfig c, ITask task, IReadOnlyList<QuestionSamples> samples, IReadOnlyList<float[]> scores)
    {
        var final = scores.Select(s => s.Length > 0 ? s[^1] : 0f).ToList();
        var labels = samples.SelectMany(s => s.Attempts.Select(a => a.Correct)).ToList();
        double auc = Metrics.Auc(final, labels);
        int k = 0;
        double maj = 0, weighted = 0, max = 0, oracle = 0, pass = 0, withinAuc = 0;
        int mixed = 0;
        foreach (var s in samples)
        {
            var answers = s.Attempts.Select(a => task.ExtractAnswer(a.Completion)).ToList();
            var sc = final.Skip(k).Take(s.Attempts.Count).ToList();
            k += s.Attempts.Count;
            string truth = ArithmeticChainTask.Solve(s.Question).Answer.ToString(CultureInfo.InvariantCulture);
            maj += Metrics.Select(answers, answers.Select(_ => 1f).ToList()) == truth ? 1 : 0;
            weighted += Metrics.Select(answers, sc) == truth ? 1 : 0;
            int best = sc.Count > 0 ? sc.IndexOf(sc.Max()) : -1;
            max += best >= 0 && answers[best] == truth ? 1 : 0;
            oracle += s.Attempts.Any(a => a.Correct) ? 1 : 0;
            double qAuc = Metrics.Auc(sc, s.Attempts.Select(a => a.Correct).ToList());
            if (!double.IsNaN(qAuc)) { withinAuc += qAuc; mixed++; }
            pass += s.Attempts.Count(a => a.Correct) / (double)c.EvalSamples;
        }
        int nq = samples.Count;
        return new PrmEvaluation(nq, c.EvalSamples, auc, pass / nq, maj / nq, weighted / nq, max / nq, oracle / nq, mixed > 0 ? withinAuc / mixed : double.NaN, mixed);
    }

    static string ModelCard(FineTuneConfig c, ModelConfig m, PrmRunResult r, PrmRunResult? previous)
    {
        var inv = CultureInfo.InvariantCulture;
        var e = r.Evaluation;
        var t = r.Training;
        var d = r.Data;
        var card = new ModelCard(c.Name);
        bool checker = c.Labels == FineTuneConfig.CheckerLabels;
        card.Text(checker
            ? "Ponder's process reward model (PRM) for the arithmetic-chain task, trained with Ponder's pure C# trainer on process labels from the\ntask's own step checker (the analogue of PRM800K's human step labels; see docs/method.md)."
            : "Ponder's process reward model (PRM) for the arithmetic-chain task, trained with Ponder's pure C# trainer on Monte Carlo step labels\n(Math-Shepherd style, no human labels; see docs/method.md).");
        card.Blank();
        card.Text("## Architecture");
        card.Line($"LlamaForTokenClassification (num_labels 1, `score.weight` [1, {m.DModel}]): the policy's trunk (dModel {m.DModel}, nLayers {m.NLayers}, nHeads {m.NHeads}, nKvHeads {m.NKvHeads}, dFf {m.DFf}), context {m.MaxPositions}, byte-level vocabulary of {m.Vocab}.");
        card.Text("**Score of a step** = sigmoid(logit) at the token that ends the step (its `\\n`), reading `[BOS] Q: <expr>\\n <steps...>`;");
        card.Text("the score of a whole solution is the score at its last step (the `A: n` line).");
        card.Text("Files: `config.json` + `model.safetensors` (f32), `model.gguf` (f32), `tokenizer.json`, `loss.csv`, `loss.png`, `prm_eval.json`.");
        card.Blank();
        card.Text("## Data (scaled down from the paper)");
        string levels = c.MinLevel == 0 && c.MaxLevel == 1 ? string.Create(inv, $"level u^{c.LevelPower}")
            : string.Create(inv, $"level {c.MinLevel} + {c.MaxLevel - c.MinLevel:0.###} u^{c.LevelPower}, i.e. in [{c.MinLevel}, {c.MaxLevel}]");
        card.Line($"- Policy: `{c.PolicyCheckpoint}`. Questions: {c.Questions:N0} from the train split ({levels}), disjoint from validation/test.");
        card.Line($"  {c.Questions - r.UnsolvedQuestions:N0} of them have a correct sample and {r.MixedQuestions:N0} have both correct and incorrect samples (only those can teach ranking within a question).");
        if (checker)
            card.Line($"- {c.SamplesPerQuestion} samples per question at T=1; each step labelled by the task's checker: 1 while the step and every step before it equal the reference solution's lines, 0 from the first wrong step on (no rollouts).");
        else
            card.Line($"- {c.SamplesPerQuestion} samples per question at T=1 (paper: 16) and {c.Rollouts} rollouts at T=1 per step prefix (paper: 16), sampled in batches by the engine; identical prefixes share rollouts.");
        if (c.CorruptedPerQuestion > 0)
            card.Line($"- Hard negatives (training questions only): per question the reference solution and {c.CorruptedPerQuestion} copies of it with one step's result (or the answer line) off by ±1-3, ±10 or up to ±99, later steps carried on consistently with the wrong value; labelled by the checker. They differ from a right solution only in arithmetic, so the PRM must check steps rather than judge difficulty.");
        if (!c.RolloutUnsolved && !checker)
            card.Line($"- Scaled down: on questions where none of the {c.SamplesPerQuestion} samples is correct ({r.UnsolvedQuestions:N0} of {c.Questions:N0}), every step label is 0 without rollouts (the policy's pass rate there is under 1/{c.SamplesPerQuestion}).");
        card.Line($"- {r.LabelledSolutions:N0} labelled solutions (unfinished or answerless samples dropped), {r.Prefixes:N0} step prefixes; mean step label {r.MeanStepLabel:F3}. The last step's label is the solution's grade.");
        if (d is not null && checker)
            card.Line($"- Data generation: sampling {(d.SamplingTime is { } st0 ? st0.ToString(@"hh\:mm\:ss", inv) : "(cached)")} ({c.Questions * c.SamplesPerQuestion:N0} samples); labels from the checker in well under a second.");
        else if (d is not null)
            card.Line($"- Data generation: sampling {(d.SamplingTime is { } st ? st.ToString(@"hh\:mm\:ss", inv) : "(cached)")} ({c.Questions * c.SamplesPerQuestion:N0} samples), rollouts {d.RolloutTime:hh\\:mm\\:ss} ({d.Rollouts:N0} rollouts on {d.RolledPrefixes:N0} distinct prefixes), on the shared 2-core machine.");
        card.Blank();
        card.Text("## Training");
        card.Line($"- Command: `ponder train prm --config configs/{c.Name}.json` (resumes from `{c.OutputDir}/checkpoint.bin`; reuses `{c.SamplesFile}` and `{c.LabelsFile ?? c.OutputDir + "/prm_labels.jsonl"}`).");
        card.Line($"- Initialised from `{c.PolicyCheckpoint}` (value head at zero); BCE with {(checker ? "0/1" : "soft")} labels at every step end; AdamW lr {c.LearningRate} (warmup {c.WarmupSteps}, cosine to {c.MinLearningRateFraction}x), batch {c.BatchSize} x {c.BlockSize}, weight decay {c.WeightDecay}, dropout {c.Dropout}, {t.Steps} steps.");
        int evalEvery = c.EvalEvery > 0 ? c.EvalEvery : c.CheckpointEvery;
        card.Line($"- Validation: the last tenth of the questions is held out; its BCE is measured every {evalEvery} steps.");
        if (c.EarlyStopping)
            card.Text(c.EarlyStoppingMetric == FineTuneConfig.WithinQuestionAucMetric
                ? string.Create(inv, $"- **Early stopping on ranking**: the exported parameters are those of step {t.BestStep} (highest mean within-question AUC of final-step scores on the held-out questions' samples, {-t.BestValidationLoss:F4}), not the last step's.")
                : string.Create(inv, $"- **Early stopping**: the exported parameters are those of step {t.BestStep} (lowest validation BCE, {t.BestValidationLoss:F4}), not the last step's."));
        string speed = t.TokensPerSecond > 0 ? string.Create(inv, $"{t.TokensPerSecond:F0} tokens/s, ") : "";
        card.Line($"- At the last step, BCE (nats per step end): train {t.TrainLoss:F4}, validation {t.ValidationLoss:F4}; {speed}training wall {t.WallTime:hh\\:mm\\:ss} (the session that ran the last step).");
        card.Blank();
        card.Line($"## Evaluation ({e.Questions} validation questions, N = {e.SamplesPerQuestion} policy samples each at T=1)");
        var p = previous?.Evaluation;
        string Row(string metric, Func<PrmEvaluation, string> value) => p is null ? $"| {metric} | {value(e)} |" : $"| {metric} | {value(e)} | {value(p)} |";
        card.Text(p is null ? "| metric | value |" : "| metric | this version | previous version |");
        card.Text(p is null ? "|---|---|" : "|---|---|---|");
        card.Text(Row("AUC of the final-step score, correct vs incorrect samples", x => x.Auc.ToString("F3", inv)));
        card.Text(Row("mean AUC within a question (questions with both correct and incorrect samples)", x => $"{x.WithinQuestionAuc.ToString("F3", inv)} ({x.MixedQuestions} questions)"));
        card.Text(Row("policy pass@1 (mean over samples)", x => x.MeanPassAtOne.ToString("P1", inv)));
        card.Text(Row($"majority vote @ {e.SamplesPerQuestion}", x => x.MajorityAccuracy.ToString("P1", inv)));
        card.Text(Row($"best-of-N weighted (sum of final-step scores per answer) @ {e.SamplesPerQuestion}", x => x.WeightedBestOfNAccuracy.ToString("P1", inv)));
        card.Text(Row($"best-of-N (highest final-step score) @ {e.SamplesPerQuestion}", x => x.BestOfNMaxAccuracy.ToString("P1", inv)));
        card.Text(Row($"oracle pass@{e.SamplesPerQuestion} (any sample correct)", x => x.OracleAccuracy.ToString("P1", inv)));
        if (previous is not null)
            card.Line($"\nPrevious version: {previous.LabelledSolutions:N0} labelled solutions, {previous.Training.Steps} steps, last-step parameters (no early stopping); its figures are `{c.BaselineEval}`.");
        if (c.CardNotes is { } notes) card.Blank().Append(File.ReadAllText(notes));
        return card.ToString();
    }
}
