using System.Diagnostics;
using Ponder.Tasks;
using Ponder.Search;

namespace Ponder.Evaluation.Study;

/// <summary>Compute-optimal's efficiency at one budget: how much more best-of-N needs for the same accuracy.</summary>
/// <param name="Budget">Compute-optimal's budget (generations).</param>
/// <param name="Accuracy">Compute-optimal's cross-validated accuracy there.</param>
/// <param name="BaselineAccuracy">Best-of-N's accuracy at the same budget.</param>
/// <param name="BaselineBudget">The budget best-of-N needs to match <paramref name="Accuracy"/> (interpolated in log2); null = never within the sweep.</param>
public sealed record EfficiencyRow(int Budget, double Accuracy, double BaselineAccuracy, double? BaselineBudget)
{
    /// <summary>BaselineBudget / Budget: above 1 means compute-optimal needs less compute.</summary>
    public double? Ratio => BaselineBudget / Budget;
}

/// <summary>The FLOPs-matched comparison, or why it was skipped.</summary>
/// <param name="Skipped">Null when it ran; else the reason.</param>
/// <param name="SizeRatio">Large / small non-embedding parameters (M).</param>
/// <param name="Paper">Rows with the paper's 2N/6N multiplier.</param>
/// <param name="Exact">Rows with the multiplier from exact FLOP counts (x axis: exact FLOPs / small greedy FLOPs).</param>
/// <param name="SmallGreedyFlops">Mean exact FLOPs of one small greedy answer.</param>
/// <param name="LargeGreedyFlops">Mean exact FLOPs of one large greedy answer.</param>
/// <param name="LargeGreedyAccuracy">Large greedy accuracy per bin (0 = all).</param>
public sealed record FlopsMatchedResult(string? Skipped, double SizeRatio, IReadOnlyList<FlopsMatchedRow> Paper, IReadOnlyList<FlopsMatchedRow> Exact,
    double SmallGreedyFlops, double LargeGreedyFlops, IReadOnlyDictionary<int, double> LargeGreedyAccuracy);

/// <summary>Everything a study produced.</summary>
public sealed record StudyResult
{
    /// <summary>The config.</summary>
    public required StudyConfig Config { get; init; }
    /// <summary>Model fingerprints: policy, PRM ("none"), larger policy ("none"), revision model ("none").</summary>
    public required IReadOnlyList<string> Models { get; init; }
    /// <summary>The questions.</summary>
    public required IReadOnlyList<StudyQuestion> Questions { get; init; }
    /// <summary>Oracle samples per question (question order).</summary>
    public required IReadOnlyList<OracleEntry> Oracle { get; init; }
    /// <summary>Oracle bin per question id.</summary>
    public required IReadOnlyDictionary<string, int> OracleBins { get; init; }
    /// <summary>Predicted bin per question id (empty without a PRM).</summary>
    public required IReadOnlyDictionary<string, int> PredictedBins { get; init; }
    /// <summary>Sweep runs.</summary>
    public required IReadOnlyList<StudyRecord> Records { get; init; }
    /// <summary>Compute-optimal cells over oracle bins (search configurations: everything but revisions).</summary>
    public required IReadOnlyList<ComputeOptimalCell> ComputeOptimal { get; init; }
    /// <summary>Compute-optimal cells over predicted bins (empty without a PRM).</summary>
    public required IReadOnlyList<ComputeOptimalCell> ComputeOptimalPredicted { get; init; }
    /// <summary>The configuration compute-optimal is compared against (best-of-N weighted, or majority without a PRM).</summary>
    public required string Baseline { get; init; }
    /// <summary>Compute-optimal (oracle bins) vs the baseline per budget.</summary>
    public required IReadOnlyList<EfficiencyRow> Efficiency { get; init; }
    /// <summary>Compute-optimal's efficiency over the whole curve with its bootstrap interval over questions (null without cells).</summary>
    public EfficiencyInterval? EfficiencySummary { get; init; }
    /// <summary>The same for compute-optimal over revision configurations (null without revisions).</summary>
    public EfficiencyInterval? EfficiencySummaryRevisions { get; init; }
    /// <summary>Compute-optimal over revision configurations only (the sequential/parallel ratio per bin); empty without revisions.</summary>
    public IReadOnlyList<ComputeOptimalCell> ComputeOptimalRevisions { get; init; } = [];
    /// <summary>Revisions' compute-optimal vs the baseline per budget.</summary>
    public IReadOnlyList<EfficiencyRow> EfficiencyRevisions { get; init; } = [];
    /// <summary>FLOPs-matched comparison.</summary>
    public required FlopsMatchedResult FlopsMatched { get; init; }
    /// <summary>Notices (fallbacks, skipped configurations).</summary>
    public required IReadOnlyList<string> Notices { get; init; }
    /// <summary>Wall time per phase.</summary>
    public required IReadOnlyDictionary<string, TimeSpan> WallTimes { get; init; }
    /// <summary>Oracle samples drawn now (the rest came from the cache).</summary>
    public required int OracleComputed { get; init; }
    /// <summary>Sweep runs computed now (the rest came from the record cache).</summary>
    public int RecordsComputed { get; init; }
}

/// <summary>
/// Runs the paper's study end to end on loaded models: K oracle samples per question (cached), oracle and predicted
/// difficulty bins, the strategy x hyper-parameter x budget x seed sweep with exact FLOPs per run, compute-optimal fits
/// with 2-fold cross-validation within each bin and their efficiency against best-of-N, and the FLOPs-matched comparison
/// against a larger policy's greedy answers when one is loaded.
/// </summary>
public static class StudyRunner
{
    /// <summary>Reads the config's questions: <see cref="StudyConfig.Questions"/> evenly spaced over [From, To) of the dataset.</summary>
    public static List<StudyQuestion> Questions(StudyConfig config, string baseDirectory)
    {
        string path = Path.GetFullPath(config.Dataset, baseDirectory);
        if (!File.Exists(path)) throw new FileNotFoundException($"study dataset '{path}' does not exist", path);
        var problems = ArithmeticChainSplits.ReadJsonl(path);
        int to = Math.Min(config.To ?? problems.Count, problems.Count), from = config.From;
        if (from >= to) throw new InvalidDataException($"{path}: range [{from}, {to}) of {problems.Count} questions is empty");
        int n = Math.Min(config.Questions, to - from);
        string name = Path.GetFileNameWithoutExtension(path);
        return [.. Enumerable.Range(0, n).Select(i => from + (int)((long)i * (to - from) / n)).Select(line =>
            new StudyQuestion($"{name}-{line:D4}", problems[line].Question,
                problems[line].Answer.ToString(System.Globalization.CultureInfo.InvariantCulture)))];
    }

    /// <summary>Runs the study.</summary>
    /// <param name="config">The study.</param>
    /// <param name="models">Its loaded models (oracle samples and the FLOPs-matched comparison run on them here).</param>
    /// <param name="baseDirectory">What relative paths in the config resolve against.</param>
    /// <param name="progress">Per-phase progress.</param>
    /// <param name="notice">Notices as they come.</param>
    /// <param name="cancellationToken">Cancels the study.</param>
    /// <param name="executor">Where the sweep's runs go (default: <see cref="LocalSweepExecutor"/> on <paramref name="models"/>).</param>
    public static async Task<StudyResult> RunAsync(StudyConfig config, StudyModels models, string baseDirectory,
        IProgress<StudyProgress>? progress = null, Action<string>? notice = null, CancellationToken cancellationToken = default,
        IStudySweepExecutor? executor = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(models);
        var notices = new List<string>();
        void Notice(string text) { notices.Add(text); notice?.Invoke(text); }
        var walls = new Dictionary<string, TimeSpan>();
        var clock = Stopwatch.StartNew();
        var questions = Questions(config, baseDirectory);
        var search = StudyJobs.Search(config);

        // Difficulty: K samples per question, cached.
        var cache = new OracleSampleCache(Path.GetFullPath(config.OracleCache, baseDirectory));
        cache.EnsureDirectory();
        var oracle = await cache.GetAsync(models, questions, config.OracleSamples, config.OracleSeed, search, config.Concurrency, progress, cancellationToken)
            .ConfigureAwait(false);
        walls["oracle samples"] = clock.Elapsed;
        var oracleBins = DifficultyBins.Assign(questions.Zip(oracle).ToDictionary(t => t.First.Id, t => t.Second.PassAt1, StringComparer.Ordinal), config.Bins);
        var predictedBins = !models.HasVerifier ? new Dictionary<string, int>()
            : DifficultyBins.Assign(questions.Zip(oracle).ToDictionary(t => t.First.Id, t => t.Second.MeanScore, StringComparer.Ordinal), config.Bins);

        // The sweep.
        clock.Restart();
        var strategies = config.Strategies.ToList();
        if (!models.HasVerifier)
        {
            var dropped = strategies.Where(s => s.NeedsVerifier).ToList();
            if (dropped.Count > 0)
                Notice($"no PRM ({config.Prm ?? "none configured"}): strategies that need a verifier are skipped ({string.Join(", ", dropped.Select(s => s.RecordName).Distinct())}); majority voting only");
            strategies = [.. strategies.Where(s => !s.NeedsVerifier)];
            if (strategies.Count == 0) strategies = [new StrategySpec(StrategyKind.BestOfN, 0, Selection: AnswerSelection.Majority)];
        }
        if (models.Reviser is null && strategies.Any(s => s.Kind == StrategyKind.Revisions))
        {
            Notice($"no revision model ({config.Reviser ?? "none configured"}): revisions are skipped");
            strategies = [.. strategies.Where(s => s.Kind != StrategyKind.Revisions)];
        }
        var jobs = StudyJobs.Plan(config, strategies, questions, Notice);
        var recordCache = new JsonlCache<CachedRecord>(Path.GetFullPath(config.RecordCache, baseDirectory), r => r.Key, "a sweep record");
        recordCache.EnsureDirectory();
        // The sweep starts cold (the oracle phase's blocks dropped), as a silo of a cluster does: records are the same either way.
        models.ColdCache();
        var sweepJobs = new StudySweep(config.Name, jobs, [.. jobs.Select(j => StudyJobs.Key(j, models, search))], models, search, config.Concurrency);
        var (records, recordsComputed) = await RunJobsAsync(sweepJobs, executor ?? new LocalSweepExecutor(), recordCache, progress, cancellationToken).ConfigureAwait(false);
        walls["sweep"] = clock.Elapsed;

        // Compute-optimal and its efficiency against best-of-N.
        var sweep = records.Select(r => r.ToSweepRecord()).ToList();
        // As in the paper, compute-optimal chooses among search configurations, and separately among revision
        // configurations (the sequential/parallel ratio); both are compared against best-of-N.
        var cells = ComputeOptimalFit.Fit(sweep, oracleBins, r => !IsRevision(r));
        var predictedCells = predictedBins.Count == 0 ? [] : ComputeOptimalFit.Fit(sweep, predictedBins, r => !IsRevision(r));
        var revisionCells = sweep.Any(IsRevision) ? ComputeOptimalFit.Fit(sweep, oracleBins, IsRevision) : [];
        string baseline = records.Any(r => r.Strategy == "best-of-n") ? "best-of-n"
            : records.Select(r => r.Configuration).FirstOrDefault(c => c.StartsWith("best-of-n", StringComparison.Ordinal)) ?? records[0].Configuration;
        var efficiency = Efficiency(sweep, baseline, cells);
        var revisionEfficiency = Efficiency(sweep, baseline, revisionCells);
        var summary = EfficiencyInterval.Compute(sweep, oracleBins, baseline, r => !IsRevision(r));
        var revisionSummary = revisionCells.Count == 0 ? null : EfficiencyInterval.Compute(sweep, oracleBins, baseline, IsRevision);

        // FLOPs-matched comparison against the larger policy.
        clock.Restart();
        var matched = await FlopsMatchedAsync(config, models, questions, oracleBins, records, cells, search, progress, cancellationToken).ConfigureAwait(false);
        if (matched.Skipped is not null) Notice(matched.Skipped);
        walls["flops-matched"] = clock.Elapsed;

        return new StudyResult
        {
            Config = config,
            Models = [models.Policy.Fingerprint, models.VerifierFingerprint, models.Large?.Fingerprint ?? "none", models.Reviser?.Fingerprint ?? "none"],
            Questions = questions, Oracle = oracle, OracleBins = oracleBins, PredictedBins = predictedBins, Records = records,
            ComputeOptimal = cells, ComputeOptimalPredicted = predictedCells, Baseline = baseline, Efficiency = efficiency,
            FlopsMatched = matched, Notices = notices, WallTimes = walls, OracleComputed = cache.Computed, RecordsComputed = recordsComputed,
            ComputeOptimalRevisions = revisionCells, EfficiencyRevisions = revisionEfficiency,
            EfficiencySummary = summary, EfficiencySummaryRevisions = revisionSummary,
        };
    }

    /// <summary>A sweep record as the record cache holds it, under a key of everything that decides its outcome.</summary>
    public sealed record CachedRecord(string Key, StudyRecord Record);

    /// <summary>
    /// Takes what the record cache holds, runs the rest on <paramref name="executor"/> (each record joins the cache as it
    /// arrives, so an interrupted sweep resumes) and returns the records in job order with the number computed now.
    /// </summary>
    static async Task<(List<StudyRecord> Records, int Computed)> RunJobsAsync(StudySweep sweep, IStudySweepExecutor executor,
        JsonlCache<CachedRecord> cache, IProgress<StudyProgress>? progress, CancellationToken cancellationToken)
    {
        var records = new StudyRecord[sweep.Jobs.Count];
        var missing = new List<int>();
        for (int i = 0; i < sweep.Jobs.Count; i++)
            if (cache.TryGet(sweep.Keys[i], out var hit)) records[i] = hit.Record;
            else missing.Add(i);
        progress?.Report(new StudyProgress("sweep", sweep.Jobs.Count - missing.Count, sweep.Jobs.Count));
        if (missing.Count > 0)
            await executor.RunAsync(sweep, missing, (i, record) =>
            {
                records[i] = record;
                cache.Add(new CachedRecord(sweep.Keys[i], record));
            }, sweep.Jobs.Count - missing.Count, progress, cancellationToken).ConfigureAwait(false);
        var lost = missing.Where(i => records[i] is null).ToList();
        if (lost.Count > 0)
            throw new InvalidOperationException($"the sweep executor returned no record for {lost.Count} of {missing.Count} jobs (first: {sweep.Jobs[lost[0]].Name})");
        return ([.. records], missing.Count);
    }

    static bool IsRevision(SweepRecord r) => r.Strategy.StartsWith("revisions", StringComparison.Ordinal);

    static List<EfficiencyRow> Efficiency(List<SweepRecord> sweep, string baseline, List<ComputeOptimalCell> cells)
    {
        var baseCurve = Curves.Of(sweep, baseline);
        if (baseCurve.Count == 0 || cells.Count == 0) return [];
        return [.. ComputeOptimalFit.OverallCurve(cells).Select(p => new EfficiencyRow((int)p.Budget, p.Accuracy,
            Curves.AccuracyAt(baseCurve, p.Budget, out _), Curves.BudgetFor(baseCurve, p.Accuracy)))];
    }

    static async Task<FlopsMatchedResult> FlopsMatchedAsync(StudyConfig config, StudyModels models, List<StudyQuestion> questions,
        IReadOnlyDictionary<string, int> bins, IReadOnlyList<StudyRecord> records, List<ComputeOptimalCell> cells, SearchOptions search,
        IProgress<StudyProgress>? progress, CancellationToken ct)
    {
        static FlopsMatchedResult Skip(string why) => new(why, 0, [], [], 0, 0, new Dictionary<int, double>());
        if (models.Large is null)
            return Skip(config.LargePolicy is null
                ? "FLOPs-matched comparison skipped: no larger policy configured (largePolicy)"
                : $"FLOPs-matched comparison skipped: larger policy '{config.LargePolicy}' is not there (train it, then rerun)");
        if (cells.Count == 0) return Skip("FLOPs-matched comparison skipped: no compute-optimal cells");
        long? dSmall = models.Policy.PretrainTokens, dLarge = models.Large.PretrainTokens;
        if (dSmall is null || dLarge is null)
            return Skip("FLOPs-matched comparison skipped: D_pretrain unknown (set policyPretrainTokens / largePretrainTokens, or a model card line 'D_pretrain = N')");

        var greedy = search with { Temperature = 0, Selector = new AnswerSelector(AnswerSelection.Majority) };
        var small = await GreedyAsync(models.Policy, models, questions, greedy, "greedy (policy)", progress, ct).ConfigureAwait(false);
        var large = await GreedyAsync(models.Large, models, questions, greedy, "greedy (larger policy)", progress, ct).ConfigureAwait(false);
        var largeAcc = new Dictionary<int, double> { [0] = large.Average(g => g.Correct ? 1.0 : 0.0) };
        foreach (var g in questions.Zip(large).GroupBy(t => bins[t.First.Id])) largeAcc[g.Key] = g.Average(t => t.Second.Correct ? 1.0 : 0.0);

        var sc = models.Policy.Model.Config; var lc = models.Large.Model.Config;
        double sizeRatio = (double)lc.NonEmbeddingParameters / sc.NonEmbeddingParameters;
        // Compute-optimal's cross-validated curve per bin (0 = all), in generations and in exact FLOPs / small greedy FLOPs.
        double smallGreedy = small.Average(g => (double)g.Flops), largeGreedy = large.Average(g => (double)g.Flops);
        var byGenerations = new Dictionary<int, IReadOnlyList<CurvePoint>>();
        var byFlops = new Dictionary<int, IReadOnlyList<CurvePoint>>();
        foreach (var bin in cells.GroupBy(c => c.Bin).Append(cells.GroupBy(c => 0).Single()))
        {
            var points = bin.GroupBy(c => c.Budget).OrderBy(g => g.Key).Select(g =>
            {
                int correct = g.Sum(c => c.CrossValidated.Correct), trials = g.Sum(c => c.CrossValidated.Trials);
                var chosen = g.Select(c => (c.Bin, c.Final.Strategy, c.Final.Params)).ToHashSet();
                double flops = records.Where(r => r.Budget == g.Key && chosen.Contains((bins[r.QuestionId], r.Strategy, r.Params))
                                                  && (bin.Key == 0 || bins[r.QuestionId] == bin.Key)).Average(r => (double)r.Flops);
                return (Budget: g.Key, Flops: flops, Accuracy: trials == 0 ? 0 : (double)correct / trials);
            }).ToList();
            byGenerations[bin.Key] = [.. points.Select(p => new CurvePoint(p.Budget, p.Accuracy))];
            byFlops[bin.Key] = [.. points.DistinctBy(p => p.Flops).Select(p => new CurvePoint(p.Flops / smallGreedy, p.Accuracy))];
        }
        var paper = FlopsMatched.Compare(byGenerations, largeAcc, config.Ratios, r => FlopsMatched.Multiplier(sizeRatio, r));
        // Exact: pretraining = forward + backward (~2x forward) over D_pretrain tokens in rows of the model's context.
        double smallPretrain = PretrainFlops(models.Policy, dSmall.Value), largePretrain = PretrainFlops(models.Large, dLarge.Value);
        double tokensPerQuery = large.Average(g => (double)g.Tokens);
        var exact = FlopsMatched.Compare(byFlops, largeAcc, config.Ratios,
            r => FlopsMatched.ExactMultiplier(smallGreedy, largeGreedy, smallPretrain, Math.Max(smallPretrain, largePretrain), r, dLarge.Value, tokensPerQuery));
        return new FlopsMatchedResult(null, sizeRatio, paper, exact, smallGreedy, largeGreedy, largeAcc);
    }

    static double PretrainFlops(StudyModel model, long tokens)
    {
        var counter = new Scheduling.FlopCounter(model.Model.Config);
        int row = Math.Min(256, model.Model.Config.MaxPositions);
        return 3.0 * counter.Chunk(row, 0, row).Total * ((double)tokens / row);
    }

    readonly record struct GreedyAnswer(bool Correct, long Flops, long Tokens);

    static async Task<List<GreedyAnswer>> GreedyAsync(StudyModel model, StudyModels models, List<StudyQuestion> questions, SearchOptions greedy,
        string phase, IProgress<StudyProgress>? progress, CancellationToken ct)
    {
        var answers = new GreedyAnswer[questions.Count];
        int done = 0;
        await Parallel.ForEachAsync(Enumerable.Range(0, questions.Count), new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = ct },
            async (i, token) =>
            {
                using var engine = new Search.Engine.ScheduledSearchEngine(model.Model.Scheduler, model.Model.Scheduled, models.Tokenizer,
                    null, new Scheduling.Budget(new Scheduling.BudgetLimits(Generations: 1)), new Search.Engine.SearchEngineOptions { Name = phase }, token);
                var result = await new BestOfN(1, greedy).RunAsync(engine, questions[i].Question, token).ConfigureAwait(false);
                var report = engine.Request.Report();
                // The cost of a fresh answer: a prompt prefix the index already held (from the sweep's runs of the same
                // question) counts as if computed, so the baseline does not depend on what ran before it in the process.
                long flops = report.Flops.Total + report.Models.Sum(m => m.SavedFlops.Total);
                answers[i] = new GreedyAnswer(questions[i].IsCorrect(result.Answer), flops, report.TokensComputed + report.TokensReused);
                progress?.Report(new StudyProgress(phase, Interlocked.Increment(ref done), questions.Count));
            }).ConfigureAwait(false);
        return [.. answers];
    }
}
