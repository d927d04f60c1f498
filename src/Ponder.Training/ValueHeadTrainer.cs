using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Ponder.Tasks;
using Ponder.Models;
using Ponder.Scheduling;
using Ponder.Tokenization;

namespace Ponder.Training;

/// <summary>How the logistic fit of a value head ended.</summary>
/// <param name="Epochs">Full-batch epochs run (early stopping may end before the config's steps).</param>
/// <param name="BestEpoch">The epoch whose weights were kept (lowest validation BCE).</param>
/// <param name="TrainBce">Train BCE (nats per step end) at the kept weights.</param>
/// <param name="ValidationBce">Validation BCE at the kept weights.</param>
/// <param name="InitialBce">BCE of the zero head (every score 0.5, ln 2 for hard labels) on the train set.</param>
public sealed record ValueHeadFit(int Epochs, int BestEpoch, double TrainBce, double ValidationBce, double InitialBce, int TrainStepEnds, int ValidationStepEnds);

/// <summary>Exact FLOPs to score one step, over the evaluation's samples (FlopCounter's formulas).</summary>
/// <param name="Steps">Steps scored.</param>
/// <param name="SeparatePrm">Separate PRM, per step: prefilling the step's tokens into its mirror with one output row (its prompt's prefill excluded: it is shared by every sample of a question).</param>
/// <param name="SharedHead">Shared head, per step: the value row on every policy output row (2·dModel each) plus the forward of a finishing step's last token, which the policy skips without the head.</param>
/// <param name="PolicyPerStep">What sampling a step costs the policy (for scale).</param>
public sealed record ScoringFlops(long Steps, double SeparatePrm, double SharedHead, double PolicyPerStep);

/// <summary>What a value-head run produced.</summary>
/// <param name="Separate">The separate PRM (config compareWith) on the same evaluation samples.</param>
/// <param name="SeparateCard">The separate PRM's own shipped evaluation (prm_eval.json), on the samples drawn when it was trained.</param>
public sealed record ValueHeadRunResult(ValueHeadFit Fit, int LabelledSolutions, double MeanStepLabel, PrmEvaluation Evaluation, PrmEvaluation? Separate,
    PrmEvaluation? SeparateCard, ScoringFlops Flops, TimeSpan DataTime, TimeSpan FeatureTime, TimeSpan WallTime);

/// <summary>
/// Trains the shared-backbone PRM (beyond the paper): a one-row value head on the frozen policy's final normed
/// hidden state, fitted by logistic regression (binary cross-entropy with the Monte Carlo soft labels at every step
/// end, the same labels <see cref="PrmTrainer"/> trains the separate PRM on). The policy's weights plus the row are
/// exported as a causal LM with <see cref="ModelConfig.SharedValueHead"/>: its forwards return the step score with
/// the logits, so search needs no second model and no second KV cache.
/// </summary>
public static class ValueHeadTrainer
{
    /// <summary>Runs a value-head config (labels and samples are reused when cached; labels are built as <c>train prm</c> builds them when missing).</summary>
    public static ValueHeadRunResult Run(FineTuneConfig c, IProgress<string>? status, CancellationToken ct)
    {
        var wall = Stopwatch.StartNew();
        var task = new ArithmeticChainTask();
        var policy = FineTuneLoop.LoadPolicy(c.PolicyCheckpoint);
        var config = policy.Parameters.Config;
        int maxLength = config.MaxPositions, d = config.DModel;
        Directory.CreateDirectory(c.OutputDir);
        var questions = FineTuneLoop.TrainQuestions(c);
        var samples = PolicySamples.LoadOrSample(c.SamplesFile, policy, task, questions, c.SamplesPerQuestion, c.Seed, maxLength, status);
        var (labelled, _) = PrmTrainer.LoadOrBuildLabels(c, task, policy, samples, status);
        var dataTime = wall.Elapsed;
        ct.ThrowIfCancellationRequested();

        // Hold out the last tenth of the questions, as the PRM run does, for early stopping.
        var heldOut = new HashSet<string>(questions.Skip(questions.Count * 9 / 10));
        status?.Report($"hidden states at the step ends of {labelled.Count} labelled solutions");
        var featureClock = Stopwatch.StartNew();
        var (xTrain, yTrain) = StepEndFeatures(policy, task, labelled.Where(l => !heldOut.Contains(l.Question)).ToList());
        var (xVal, yVal) = StepEndFeatures(policy, task, labelled.Where(l => heldOut.Contains(l.Question)).ToList());
        var featureTime = featureClock.Elapsed;
        ct.ThrowIfCancellationRequested();

        status?.Report($"fitting the value row on {yTrain.Length} step ends ({yVal.Length} held out)");
        string csv = Path.Combine(c.OutputDir, "loss.csv");
        var (w, fit) = Fit(xTrain, yTrain, xVal, yVal, d, c.Steps, c.LearningRate, c.WeightDecay, csv);

        status?.Report("evaluating");
        var evalSamples = PrmTrainer.EvaluationSamples(c, task, policy, maxLength);
        var items = evalSamples.SelectMany(s => s.Attempts.Select(a => (s.Question, a.Completion))).ToList();
        var evaluation = PrmTrainer.Evaluate(c, task, evalSamples, StepScores(policy, w, task, items));
        PrmEvaluation? separate = null, separateCard = null;
        ModelConfig? separateConfig = null;
        if (c.CompareWith is { } prmPath)
        {
            // The PRM's own evaluation (its card's figures, on the samples drawn when it was trained), when shipped.
            string cardEval = Path.Combine(prmPath, "prm_eval.json");
            if (File.Exists(cardEval)) separateCard = JsonSerializer.Deserialize<PrmRunResult>(File.ReadAllText(cardEval))?.Evaluation;
            var prm = FineTuneLoop.LoadPolicy(prmPath);
            if (prm.Parameters.Config.Head != HeadKind.Value) throw new InvalidDataException($"compareWith '{prmPath}' is not a value-head PRM");
            separate = PrmTrainer.Evaluate(c, task, evalSamples, PrmTrainer.StepScores(prm, task, items));
            separateConfig = prm.Parameters.Config;
        }
        var flops = ScoringCost(config, task, items, separateConfig ?? config with { Head = HeadKind.Value, NumLabels = 1 });

        var shared = new ParameterSet(config with { SharedValueHead = true });
        foreach (var t in shared.All)
            (t.Name == TensorNames.SharedValueHead ? w : policy.Parameters[t.Name].Data).CopyTo(t.Data, 0);
        double meanLabel = labelled.SelectMany(l => l.StepLabels).DefaultIfEmpty(0).Average();
        var result = new ValueHeadRunResult(fit, labelled.Count, meanLabel, evaluation, separate, separateCard, flops, dataTime, featureTime, wall.Elapsed);
        File.WriteAllText(Path.Combine(c.OutputDir, "value_head_eval.json"), JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
        if (c.WeightsDir is { } dir)
        {
            ModelExport.WriteWeights(dir, shared, TrainedChatTemplates.Policy);
            foreach (string f in new[] { "loss.csv", "value_head_eval.json" })
                File.Copy(Path.Combine(c.OutputDir, f), Path.Combine(dir, f), overwrite: true);
            File.WriteAllText(Path.Combine(dir, "README.md"), ModelCard(c, shared.Config, result));
        }
        return result;
    }

    /// <summary>The policy's final normed hidden state at every labelled step end (n, dModel) and its soft label (n).</summary>
    public static (float[] X, float[] Y) StepEndFeatures(TrainableLlama policy, ITask task, IReadOnlyList<PrmSample> labelled)
    {
        int d = policy.Parameters.Config.DModel;
        var x = new List<float>();
        var y = new List<float>();
        var items = labelled.Select(l => (l.Question, l.Solution)).ToList();
        PrmTrainer.ForEachStepEnd(policy, task, items, (item, step, row) =>
        {
            var labels = labelled[item].StepLabels;
            if (step >= labels.Length) throw new InvalidDataException($"solution {item} has more steps than its {labels.Length} labels");
            x.AddRange(policy.FinalHidden.Slice(row * d, d));
            y.Add(labels[step]);
        });
        return (x.ToArray(), y.ToArray());
    }

    /// <summary>sigmoid(w · h) at every step end of each (question, solution), one row per solution.</summary>
    public static List<float[]> StepScores(TrainableLlama policy, float[] w, ITask task, IReadOnlyList<(string Question, string Solution)> items)
    {
        int d = w.Length;
        var scores = items.Select(_ => new List<float>()).ToList();
        PrmTrainer.ForEachStepEnd(policy, task, items, (item, _, row) =>
            scores[item].Add((float)Sigmoid(Dot(w, policy.FinalHidden.Slice(row * d, d)))));
        return scores.Select(s => s.ToArray()).ToList();
    }

    /// <summary>
    /// Logistic regression without bias (the head is one row of the LM head's matrix): full-batch AdamW on the mean BCE
    /// of sigmoid(w · x) against soft labels y, from w = 0, for at most <paramref name="epochs"/>; keeps the weights of
    /// the lowest validation BCE and stops after 200 epochs without improvement. Losses every 10 epochs go to
    /// <paramref name="lossCsv"/> when given. BCE(z, y) = softplus(z) − y·z; dBCE/dz = sigmoid(z) − y.
    /// </summary>
    public static (float[] W, ValueHeadFit Fit) Fit(float[] xTrain, float[] yTrain, float[] xVal, float[] yVal, int d, int epochs,
        float learningRate, float weightDecay, string? lossCsv = null)
    {
        if (xTrain.Length != yTrain.Length * d || xVal.Length != yVal.Length * d)
            throw new ArgumentException($"features must be (n, {d}) for n labels: train {xTrain.Length} for {yTrain.Length}, validation {xVal.Length} for {yVal.Length}");
        if (yTrain.Length == 0) throw new ArgumentException("no training step ends", nameof(yTrain));
        const int patience = 200;
        var w = new double[d];
        var m = new double[d];
        var v = new double[d];
        var grad = new double[d];
        double[] best = new double[d];
        double bestVal = double.PositiveInfinity, bestTrain = double.NaN, initial = Bce(xTrain, yTrain, w, null);
        int bestEpoch = 0, epoch = 0;
        const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
        var log = lossCsv is null ? null : new StringBuilder("epoch,train_bce,validation_bce\n");
        for (epoch = 1; epoch <= epochs; epoch++)
        {
            double train = Bce(xTrain, yTrain, w, grad);
            for (int i = 0; i < d; i++)
            {
                m[i] = beta1 * m[i] + (1 - beta1) * grad[i];
                v[i] = beta2 * v[i] + (1 - beta2) * grad[i] * grad[i];
                double mHat = m[i] / (1 - Math.Pow(beta1, epoch)), vHat = v[i] / (1 - Math.Pow(beta2, epoch));
                w[i] -= learningRate * (mHat / (Math.Sqrt(vHat) + eps) + weightDecay * w[i]);
            }
            double val = yVal.Length > 0 ? Bce(xVal, yVal, w, null) : train;
            if (val < bestVal) { bestVal = val; bestEpoch = epoch; w.CopyTo(best, 0); }
            if (log is not null && epoch % 10 == 0) log.Append(CultureInfo.InvariantCulture, $"{epoch},{train:R},{val:R}\n");
            if (epoch - bestEpoch >= patience) break;
        }
        bestTrain = Bce(xTrain, yTrain, best, null);
        if (log is not null) File.WriteAllText(lossCsv!, log.ToString());
        var fit = new ValueHeadFit(Math.Min(epoch, epochs), bestEpoch, bestTrain, yVal.Length > 0 ? bestVal : double.NaN, initial, yTrain.Length, yVal.Length);
        return (best.Select(x => (float)x).ToArray(), fit);
    }

    /// <summary>Mean BCE of sigmoid(w · x_i) against y_i (float64); with <paramref name="grad"/>, also its gradient in w.</summary>
    static double Bce(float[] x, float[] y, double[] w, double[]? grad)
    {
        int d = w.Length, n = y.Length;
        if (grad is not null) Array.Clear(grad);
        double sum = 0;
        for (int r = 0; r < n; r++)
        {
            var row = x.AsSpan(r * d, d);
            double z = 0;
            for (int i = 0; i < d; i++) z += w[i] * row[i];
            sum += Softplus(z) - y[r] * z;
            if (grad is null) continue;
            double dz = (Sigmoid(z) - y[r]) / n;
            for (int i = 0; i < d; i++) grad[i] += dz * row[i];
        }
        return n > 0 ? sum / n : double.NaN;
    }

    static double Softplus(double z) => z > 0 ? z + Math.Log(1 + Math.Exp(-z)) : Math.Log(1 + Math.Exp(z));
    static double Sigmoid(double z) => 1 / (1 + Math.Exp(-z));
    static double Dot(float[] w, ReadOnlySpan<float> h)
    {
        double s = 0;
        for (int i = 0; i < w.Length; i++) s += (double)w[i] * h[i];
        return s;
    }

    /// <summary>
    /// Exact scoring FLOPs per step over <paramref name="items"/> as the scheduled search engine spends them:
    /// a separate PRM appends each step's tokens to its mirror (one output row at the step's end); the shared head adds
    /// its value row to every policy output row (every generated token is fed, the last one for its score) and costs
    /// the one forward a finishing step would otherwise skip.
    /// </summary>
    public static ScoringFlops ScoringCost(ModelConfig policy, ITask task, IReadOnlyList<(string Question, string Solution)> items, ModelConfig prm)
    {
        var plain = new FlopCounter(policy with { SharedValueHead = false });
        var withHead = new FlopCounter(policy with { SharedValueHead = true });
        var separate = new FlopCounter(prm);
        long steps = 0;
        double prmFlops = 0, sharedFlops = 0, policyFlops = 0;
        foreach (var (q, s) in items)
        {
            var example = PrmLabels.Example(task, q, s, null);
            int context = example.PromptLength, generated = 0;
            foreach (string step in PrmLabels.Steps(s))
            {
                int n = ByteTokenizer.Ponder.Encode(step).Length;
                prmFlops += separate.Chunk(n, context + generated, 1).Total;
                generated += n;
                steps++;
            }
            // Without the head the policy feeds generated tokens 0..T-2 (the last one needs no next-token logits);
            // with it, all T, each with a vocab + 1 row output.
            long without = generated > 1 ? plain.Decode(context, generated - 1).Total : 0;
            long with = withHead.Decode(context, generated).Total;
            sharedFlops += with - without;
            policyFlops += without;
        }
        return new ScoringFlops(steps, prmFlops / Math.Max(1, steps), sharedFlops / Math.Max(1, steps), policyFlops / Math.Max(1, steps));
    }

    static string ModelCard(FineTuneConfig c, ModelConfig m, ValueHeadRunResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        var e = r.Evaluation;
        // Columns: this head; the separate PRM on the same samples; the separate PRM's card (its own draw of samples).
        var others = new[] { r.Separate, r.SeparateCard }.Where(x => x is not null).Select(x => x!).ToList();
        string Cols(Func<PrmEvaluation, string> f) => string.Concat(others.Select(x => $" {f(x)} |"));
        var card = new ModelCard(Path.GetFileName(Path.TrimEndingDirectorySeparator(c.WeightsDir ?? c.Name)));
        card.Text("`weights/policy-small` with a **shared-backbone PRM**: one value row on the policy's own final hidden state (");
        card.Text("beyond the paper). Scores come with the tokens: every forward's output row holds the vocabulary's logits and, at index");
        card.Text("vocab, the value logit; a step's score is sigmoid(value) at its last token. No second model, no second KV cache.");
        card.Blank();
        card.Text("## Architecture");
        card.Line($"LlamaForCausalLM (the policy, unchanged: dModel {m.DModel}, nLayers {m.NLayers}, nHeads {m.NHeads}, nKvHeads {m.NKvHeads}, dFf {m.DFf}, context {m.MaxPositions}, tied embeddings)");
        card.Line($"plus `value_head.weight` [1, {m.DModel}] and `\"ponder_value_head\": 1` in config.json. Ponder loads the head as [vocab + 1, dModel]:");
        card.Text("the LM head's rows (a copy of the tied embedding) followed by the value row, so one GEMM gives both (2·dModel FLOPs per");
        card.Text("output row more, counted with the LM head). Samplers read only the first vocab entries: tokens are those of the policy.");
        card.Line($"Parameters: {m.TotalParameters:N0} (the policy's + {m.DModel}).");
        card.Text("Files: `config.json` + `model.safetensors` (f32), `model.gguf` (f32; the row is tensor `ponder.value_head.weight` with");
        card.Text("metadata `ponder.value_head = 1`: llama.cpp refuses tensors it does not create, so this GGUF is for Ponder only;");
        card.Text("`weights/policy-small/model.gguf` is the same policy for llama.cpp), `tokenizer.json`, `tokenizer_config.json` (chat template), `loss.csv` (BCE every 10 epochs), `value_head_eval.json`.");
        card.Blank();
        card.Text("## Training");
        card.Line($"- Command: `ponder train value-head --config configs/{c.Name}.json` (reuses `{c.SamplesFile}` and `{c.LabelsFile ?? Path.Combine(c.OutputDir, "prm_labels.jsonl")}` when present).");
        card.Line($"- Labels: the Monte Carlo step labels of the separate PRM's recipe (configs/prm-small.json's questions, samples and {c.Rollouts} rollouts per prefix; built by the same code,");
        card.Line($"  `PrmTrainer.LoadOrBuildLabels`): {r.LabelledSolutions:N0} labelled solutions, mean step label {r.MeanStepLabel:F3}. Data time {r.DataTime:hh\\:mm\\:ss} (0 when cached).");
        card.Line($"- The policy is frozen. One forward per labelled solution collects the final normed hidden state at each step end ({r.Fit.TrainStepEnds:N0} train, {r.Fit.ValidationStepEnds:N0} held-out step ends; the last tenth of the questions is held out), {r.FeatureTime:hh\\:mm\\:ss}.");
        card.Line($"- The row: logistic regression without bias (BCE with the soft labels), full-batch AdamW lr {c.LearningRate}, weight decay {c.WeightDecay}, from zero; early stopping on the held-out BCE");
        card.Line($"  (kept epoch {r.Fit.BestEpoch} of {r.Fit.Epochs}). BCE (nats per step end): zero head {r.Fit.InitialBce:F4}; train {r.Fit.TrainBce:F4}, held-out {r.Fit.ValidationBce:F4}.");
        if (SeparatePrmLosses(c.CompareWith) is { } prm)
            card.Text(string.Create(inv, $"  (The separate PRM {c.CompareWith}, fine-tuned end to end: train {prm.Train:F4}, validation {prm.Validation:F4}") +
                (prm.Best is double best ? string.Create(inv, $", exported at its lowest, {best:F4}).") : ")."));
        card.Line($"- Wall time of the run {r.WallTime:hh\\:mm\\:ss} on the shared 2-core CPU.");
        card.Blank();
        card.Line($"## Evaluation ({e.Questions} validation questions, N = {e.SamplesPerQuestion} policy samples each at T=1: weights/prm-small's protocol)");
        card.Text("| metric | shared head (this) |" + (r.Separate is null ? "" : $" separate PRM ({c.CompareWith}), same samples |")
            + (r.SeparateCard is null ? "" : " separate PRM, its model card |"));
        card.Text("|---|---|" + string.Concat(others.Select(_ => "---|")));
        card.Line($"| AUC of the final-step score across questions | {e.Auc:F3} |{Cols(x => x.Auc.ToString("F3", inv))}");
        card.Line($"| mean AUC within a question (questions with both outcomes) | {e.WithinQuestionAuc:F3} ({e.MixedQuestions}) |{Cols(x => $"{x.WithinQuestionAuc.ToString("F3", inv)} ({x.MixedQuestions})")}");
        card.Line($"| majority vote @ {e.SamplesPerQuestion} (no verifier) | {e.MajorityAccuracy:P1} |{Cols(x => x.MajorityAccuracy.ToString("P1", inv))}");
        card.Line($"| best-of-N weighted @ {e.SamplesPerQuestion} | {e.WeightedBestOfNAccuracy:P1} |{Cols(x => x.WeightedBestOfNAccuracy.ToString("P1", inv))}");
        card.Line($"| best-of-N (highest final-step score) @ {e.SamplesPerQuestion} | {e.BestOfNMaxAccuracy:P1} |{Cols(x => x.BestOfNMaxAccuracy.ToString("P1", inv))}");
        card.Line($"| policy pass@1 / oracle pass@{e.SamplesPerQuestion} | {e.MeanPassAtOne:P1} / {e.OracleAccuracy:P1} |{Cols(x => $"{x.MeanPassAtOne.ToString("P1", inv)} / {x.OracleAccuracy.ToString("P1", inv)}")}");
        card.Line($"| exact scoring FLOPs per step (mean over these {r.Flops.Steps:N0} steps) | {r.Flops.SharedHead:N0} |{Cols(x => x == r.Separate ? r.Flops.SeparatePrm.ToString("N0", inv) : "")}");
        card.Blank();
        card.Text("The two first columns score the very same samples (drawn with the PRM run's seed). The PRM's card drew its samples in an earlier");
        card.Text("session with the same seed; they differ slightly (its pass@1 and majority differ), so compare within the same-samples columns.");
        card.Line($"With {e.Questions} questions one point of accuracy is {e.Questions / 100.0:0.#} questions (a 95% interval is about ±6 points): differences of a point");
        card.Line($"or two are noise. The within-question AUC averages over only the {e.MixedQuestions} questions with both outcomes.");
        card.Blank();
        card.Line($"Scoring FLOPs: the separate PRM prefills each step's tokens into its own mirror sequence (and its own KV cache); the shared head adds");
        card.Line($"2·dModel = {2 * m.DModel} FLOPs to every policy output row and one extra policy forward for a finishing step's last token. For scale, the policy");
        card.Line($"spends {r.Flops.PolicyPerStep:N0} FLOPs sampling a step. Ratio separate / shared: {r.Flops.SeparatePrm / Math.Max(1, r.Flops.SharedHead):F1}x.");
        return card.ToString();
    }

    /// <summary>The separate PRM's final train and validation BCE (and its early-stopping minimum) from its prm_eval.json, when there.</summary>
    static (double Train, double Validation, double? Best)? SeparatePrmLosses(string? prmPath)
    {
        string file = prmPath is null ? "" : Path.Combine(prmPath, "prm_eval.json");
        if (!File.Exists(file)) return null;
        var t = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(file))?["Training"];
        if (t?["TrainLoss"] is null || t["ValidationLoss"] is null) return null;
        return ((double)t["TrainLoss"]!, (double)t["ValidationLoss"]!, t["BestValidationLoss"] is { } b ? (double)b : null);
    }
}
