using System.Globalization;
using System.Text;
using System.Text.Json;
using Ponder.Tasks;
using Ponder.Models;

namespace Ponder.Training;

/// <summary>
/// Which verifiers to compare, on which held-out questions, with how many policy samples each
/// (<c>ponder train prm-compare --config FILE</c>). Every verifier scores the same samples.
/// </summary>
public sealed record PrmComparisonConfig
{
    /// <summary>The policy whose samples are scored.</summary>
    public required string Policy { get; init; }
    /// <summary>The verifiers: name → model path (a value-head PRM, or a policy with a shared value row), or "exact" for the task's checker.</summary>
    public required IReadOnlyDictionary<string, string> Verifiers { get; init; }
    /// <summary>Seed of the data splits (test and validation questions).</summary>
    public ulong SplitSeed { get; init; } = 20261128;
    /// <summary>Test-ladder lines [0, TestLines) are used (the study's range), all held out from every PRM's training.</summary>
    public int TestLines { get; init; } = 300;
    /// <summary>Validation questions up to this level are used too.</summary>
    public double MaxValidationLevel { get; init; } = 0.6;
    /// <summary>Policy samples per question at T=1 (AUCs use all; the selection metrics use the first <see cref="SelectionN"/>).</summary>
    public int Samples { get; init; } = 32;
    /// <summary>N of the best-of-N / majority / pass@N comparison.</summary>
    public int SelectionN { get; init; } = 16;
    /// <summary>Seed of the samples.</summary>
    public ulong Seed { get; init; } = 0xC0FFEE;
    /// <summary>Difficulty bins over the questions' pass@1 (from all samples).</summary>
    public int Bins { get; init; } = DifficultyBins.DefaultBins;
    /// <summary>Results go here.</summary>
    public string OutputDir { get; init; } = "out/prm-comparison";
    /// <summary>Cache of the policy samples (JSONL), reused when it holds the same questions.</summary>
    public string SamplesFile { get; init; } = "out/prm-comparison/samples.jsonl";

    /// <summary>Reads a config (<see cref="ConfigJson"/>), then <see cref="Validate"/>s it; errors name the file and the field.</summary>
    public static PrmComparisonConfig Load(string path) => ConfigJson.Load<PrmComparisonConfig>(path, "PRM comparison config").Validate(path);

    /// <summary>Throws <see cref="InvalidDataException"/> naming <paramref name="source"/> and the field when a value is impossible.</summary>
    public PrmComparisonConfig Validate(string source)
    {
        if (Verifiers.Count == 0) throw new InvalidDataException($"{source}: field 'verifiers' is empty");
        if (Samples < 2) throw new InvalidDataException($"{source}: field 'samples' = {Samples} must be >= 2");
        if (SelectionN < 1 || SelectionN > Samples) throw new InvalidDataException($"{source}: field 'selectionN' = {SelectionN} must be in [1, samples = {Samples}]");
        return this;
    }
}

/// <summary>One verifier's figures on the comparison's questions and samples.</summary>
/// <param name="Name">Verifier name.</param>
/// <param name="Auc">AUC of final-step scores, correct vs incorrect, over all samples (mostly measures question difficulty).</param>
/// <param name="WithinQuestionAuc">Mean AUC within a question, over questions with both correct and incorrect samples.</param>
/// <param name="MixedQuestions">How many such questions.</param>
/// <param name="WithinQuestionAucByBin">The same per difficulty bin (1 = easiest), with each bin's mixed-question count.</param>
/// <param name="WeightedAtN">Best-of-N weighted accuracy (first N samples).</param>
/// <param name="NaiveAtN">Accuracy of the single highest-scored sample of the first N.</param>
/// <param name="EasyWrongOutscores">Among easy questions (bins 1-2) with both kinds of sample: the share where the best-scored wrong sample outscores every right one.</param>
/// <param name="EasyMixed">How many such questions.</param>
public sealed record VerifierFigures(string Name, double Auc, double WithinQuestionAuc, int MixedQuestions,
    IReadOnlyList<(int Bin, double Auc, int Mixed)> WithinQuestionAucByBin, double WeightedAtN, double NaiveAtN, double EasyWrongOutscores, int EasyMixed);

/// <summary>What the comparison measured: the verifier-free references and each verifier's figures.</summary>
public sealed record PrmComparisonResult(int Questions, int Samples, int SelectionN, double PassAt1, double MajorityAtN, double PassAtN,
    IReadOnlyList<VerifierFigures> Verifiers, IReadOnlyList<(int Bin, int Questions, double MeanPassAt1)> BinSummary);

/// <summary>
/// Scores one set of held-out policy samples with every verifier and measures how each ranks them: across questions
/// (AUC), within a question (the ranking search needs), per difficulty bin, and as best-of-N selection against
/// majority and pass@N.
/// </summary>
public static class PrmComparison
{
    /// <summary>Runs the comparison; writes <c>prm_comparison.json</c> and <c>prm_comparison.md</c> (tables) to the output folder.</summary>
    public static PrmComparisonResult Run(PrmComparisonConfig c, IProgress<string>? status)
    {
        var task = new ArithmeticChainTask();
        var policy = FineTuneLoop.LoadPolicy(c.Policy);
        int maxLength = policy.Parameters.Config.MaxPositions;
        var questions = ArithmeticChainSplits.Test(c.SplitSeed).Take(c.TestLines)
            .Concat(ArithmeticChainSplits.Validation(c.SplitSeed).Where(p => p.Level <= c.MaxValidationLevel))
            .Select(p => p.Question).Distinct().ToList();
        Directory.CreateDirectory(c.OutputDir);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(c.SamplesFile))!);
        status?.Report($"sampling {c.Samples} solutions for each of {questions.Count} held-out questions");
        var samples = PolicySamples.LoadOrSample(c.SamplesFile, policy, task, questions, c.Samples, c.Seed, maxLength, status);
        var items = samples.SelectMany(s => s.Attempts.Select(a => (s.Question, a.Completion))).ToList();
        var pass = samples.ToDictionary(s => s.Question, s => s.Attempts.Count == 0 ? 0 : s.Attempts.Count(a => a.Correct) / (double)s.Attempts.Count);
        var bins = DifficultyBins.Assign(pass, c.Bins);

        var figures = new List<VerifierFigures>();
        foreach (var (name, path) in c.Verifiers)
        {
            status?.Report($"scoring {items.Count} samples with {name}");
            var final = CachedFinalScores(c, path, policy, task, items);
            figures.Add(Figures(name, c, task, samples, final, bins));
        }
        int n = c.SelectionN;
        double majority = samples.Average(s => Metrics.Select(Answers(task, s, n), Ones(s, n)) == Truth(s.Question) ? 1.0 : 0.0);
        double passAtN = samples.Average(s => s.Attempts.Take(n).Any(a => a.Correct) ? 1.0 : 0.0);
        var binSummary = bins.GroupBy(kv => kv.Value).OrderBy(g => g.Key).Select(g => (g.Key, g.Count(), g.Average(kv => pass[kv.Key]))).ToList();
        var result = new PrmComparisonResult(questions.Count, c.Samples, n, pass.Values.Average(), majority, passAtN, figures, binSummary);
        File.WriteAllText(Path.Combine(c.OutputDir, "prm_comparison.json"), JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true, IncludeFields = true }));
        File.WriteAllText(Path.Combine(c.OutputDir, "prm_comparison.md"), Markdown(result));
        return result;
    }

    /// <summary>
    /// <see cref="FinalScores"/>, kept beside the samples cache under the verifier's fingerprint (weights hash), so adding a
    /// verifier to a comparison scores only that one.
    /// </summary>
    static List<float> CachedFinalScores(PrmComparisonConfig c, string path, TrainableLlama policy, ITask task, List<(string Question, string Solution)> items)
    {
        string id = path == ArithmeticStepChecker.ExactName ? path
            : path.StartsWith(PolicyConfidence, StringComparison.Ordinal) ? "confidence-" + WeightsFingerprint.Of(path[PolicyConfidence.Length..])
            : WeightsFingerprint.Of(path);
        string file = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(c.SamplesFile))!, $"scores-{id.Replace('@', '-')}-{new FileInfo(c.SamplesFile).Length}.json");
        if (File.Exists(file) && JsonSerializer.Deserialize<List<float>>(File.ReadAllText(file)) is { } cached && cached.Count == items.Count) return cached;
        var scores = FinalScores(path, policy, task, items);
        File.WriteAllText(file, JsonSerializer.Serialize(scores));
        return scores;
    }

    /// <summary>Each sample's final-step score under the verifier at <paramref name="path"/> ("exact" = the task's checker).</summary>
    static List<float> FinalScores(string path, TrainableLlama policy, ITask task, List<(string Question, string Solution)> items)
    {
        if (path == ArithmeticStepChecker.ExactName)
        {
            var exact = new ArithmeticStepChecker();
            return [.. items.Select(x => (float)exact.Score(task.Prompt(x.Question), [.. PrmLabels.Steps(x.Solution).Select(s => s.TrimEnd('\n'))]))];
        }
        if (path.StartsWith(PolicyConfidence, StringComparison.Ordinal))
            return PolicyConfidenceScores(FineTuneLoop.LoadPolicy(path[PolicyConfidence.Length..]), task, items);
        using var source = ModelFiles.Open(path);
        List<float[]> steps;
        if (source.Config.Head == HeadKind.Value)
            steps = PrmTrainer.StepScores(FineTuneLoop.LoadPolicy(path), task, items);
        else if (source.Config.SharedValueHead)
        {
            var w = new float[source.Config.DModel];
            source.ReadF32(TensorNames.SharedValueHead, w);
            steps = ValueHeadTrainer.StepScores(FineTuneLoop.LoadPolicy(path), w, task, items);
        }
        else throw new InvalidDataException($"verifier '{path}' has neither a value head nor a shared value row");
        return [.. steps.Select(s => s.Length > 0 ? s[^1] : 0f)];
    }

    /// <summary>The verifier prefix for <see cref="PolicyConfidenceScores"/>: "policy-confidence:&lt;policy path&gt;".</summary>
    public const string PolicyConfidence = "policy-confidence:";

    /// <summary>
    /// A verifier without training: the smallest probability the policy itself (at temperature 1) gives to any token of
    /// the solution. A slip sampled at T=1 is a token the policy found unlikely; a systematic error is not, so this
    /// catches the first kind only. A baseline for what a learned PRM on the same trunk could at least reach.
    /// </summary>
    public static List<float> PolicyConfidenceScores(TrainableLlama policy, ITask task, IReadOnlyList<(string Question, string Solution)> items, int chunk = 32)
    {
        int vocab = policy.Parameters.Config.Vocab, rows = policy.Parameters.Config.HeadRows;
        var result = new List<float>(items.Count);
        for (int start = 0; start < items.Count; start += chunk)
        {
            var examples = items.Skip(start).Take(chunk).Select(x => SftExample.FromText(task.Prompt(x.Question), x.Solution)).ToList();
            var b = PrmTrainer.ScoringBatch(examples);
            int B = b.Batch, T = b.SeqLen;
            policy.Forward(b);
            var logits = policy.Logits;
            for (int r = 0; r < B; r++)
            {
                var e = examples[r];
                double min = 1;
                // Positions that predict a completion token (EOS excluded): from the prompt's last token on.
                for (int t = e.PromptLength - 1; t < e.Tokens.Length - 2; t++)
                {
                    var row = logits.Slice((r * T + t) * rows, vocab);
                    float max = float.NegativeInfinity;
                    foreach (float v in row) max = Math.Max(max, v);
                    double sum = 0;
                    foreach (float v in row) sum += Math.Exp(v - max);
                    min = Math.Min(min, Math.Exp(row[e.Tokens[t + 1]] - max) / sum);
                }
                result.Add((float)min);
            }
        }
        return result;
    }

    static VerifierFigures Figures(string name, PrmComparisonConfig c, ITask task, List<QuestionSamples> samples, List<float> final, Dictionary<string, int> bins)
    {
        var labels = samples.SelectMany(s => s.Attempts.Select(a => a.Correct)).ToList();
        double auc = Metrics.Auc(final, labels);
        var perQuestion = new List<(int Bin, double Auc)>();
        double weighted = 0, naive = 0;
        int easyMixed = 0, easyWrong = 0, k = 0, n = c.SelectionN;
        foreach (var s in samples)
        {
            var sc = final.Skip(k).Take(s.Attempts.Count).ToList();
            k += s.Attempts.Count;
            var correct = s.Attempts.Select(a => a.Correct).ToList();
            double qAuc = Metrics.Auc(sc, correct);
            if (!double.IsNaN(qAuc))
            {
                perQuestion.Add((bins[s.Question], qAuc));
                if (bins[s.Question] <= 2)
                {
                    easyMixed++;
                    double bestRight = sc.Where((_, i) => correct[i]).Max(), bestWrong = sc.Where((_, i) => !correct[i]).Max();
                    if (bestWrong > bestRight) easyWrong++;
                }
            }
            string truth = Truth(s.Question);
            var first = sc.Take(n).ToList();
            weighted += Metrics.Select(Answers(task, s, n), first) == truth ? 1 : 0;
            int best = first.Count > 0 ? first.IndexOf(first.Max()) : -1;
            naive += best >= 0 && s.Attempts[best].Correct ? 1 : 0;
        }
        var byBin = perQuestion.GroupBy(p => p.Bin).OrderBy(g => g.Key).Select(g => (g.Key, g.Average(p => p.Auc), g.Count())).ToList();
        return new VerifierFigures(name, auc, perQuestion.Count == 0 ? double.NaN : perQuestion.Average(p => p.Auc), perQuestion.Count, byBin,
            weighted / samples.Count, naive / samples.Count, easyMixed == 0 ? double.NaN : (double)easyWrong / easyMixed, easyMixed);
    }

    static List<string?> Answers(ITask task, QuestionSamples s, int n) => [.. s.Attempts.Take(n).Select(a => task.ExtractAnswer(a.Completion))];
    static List<float> Ones(QuestionSamples s, int n) => [.. s.Attempts.Take(n).Select(_ => 1f)];
    static string Truth(string question) => ArithmeticChainTask.Solve(question).Answer.ToString(CultureInfo.InvariantCulture);

    /// <summary>The comparison's tables in Markdown.</summary>
    public static string Markdown(PrmComparisonResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        string P(double v) => double.IsNaN(v) ? "-" : (v * 100).ToString("0.0", inv) + "%";
        string F(double v) => double.IsNaN(v) ? "-" : v.ToString("0.000", inv);
        var sb = new StringBuilder();
        sb.Append(inv, $"{r.Questions} held-out questions x {r.Samples} policy samples at T=1; every verifier scores the same samples.\n\n");
        sb.Append(inv, $"References at N = {r.SelectionN}: policy pass@1 {P(r.PassAt1)}, majority@{r.SelectionN} {P(r.MajorityAtN)}, pass@{r.SelectionN} {P(r.PassAtN)}.\n\n");
        var binNames = r.BinSummary.Select(b => b.Bin).ToList();
        sb.Append("| verifier | AUC | within-question AUC (mixed questions) | " + string.Join(" | ", binNames.Select(b => $"bin {b}")) +
                  $" | weighted@{r.SelectionN} | naive@{r.SelectionN} | easy: wrong outscores right |\n");
        sb.Append("|---|---|---|" + string.Concat(binNames.Select(_ => "---|")) + "---|---|---|\n");
        foreach (var v in r.Verifiers)
        {
            sb.Append(inv, $"| {v.Name} | {F(v.Auc)} | {F(v.WithinQuestionAuc)} ({v.MixedQuestions}) | ");
            foreach (int b in binNames)
            {
                var cell = v.WithinQuestionAucByBin.FirstOrDefault(x => x.Bin == b);
                sb.Append(cell.Mixed == 0 ? "- | " : string.Create(inv, $"{F(cell.Auc)} ({cell.Mixed}) | "));
            }
            sb.Append(inv, $"{P(v.WeightedAtN)} | {P(v.NaiveAtN)} | {P(v.EasyWrongOutscores)} of {v.EasyMixed} |\n");
        }
        sb.Append("\nBins: " + string.Join("; ", r.BinSummary.Select(b => string.Create(inv, $"bin {b.Bin}: {b.Questions} questions, mean pass@1 {P(b.MeanPassAt1)}"))) + ".\n");
        return sb.ToString();
    }
}
