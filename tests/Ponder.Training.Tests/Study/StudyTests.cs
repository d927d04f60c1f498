using System.CommandLine;
using Ponder.Backends.Cpu;
using Ponder.Cli.Commands;
using Ponder.Evaluation;
using Ponder.Evaluation.Study;
using Ponder.Evaluation.Tasks;
using Ponder.Models;
using Ponder.Models.Safetensors;
using Ponder.Search;
using Ponder.Tokenization;

namespace Ponder.Training.Tests.Study;

/// <summary>
/// The study runner on a tiny random policy and a random value-head PRM: exact FLOPs per run agree with the backend's own
/// ledger, bins cover every question, the oracle sample cache is reused without a forward, config errors name their
/// field, and <c>ponder sweep</c> writes its files.
/// </summary>
public sealed class StudyTests : IDisposable
{
    static readonly ModelConfig PolicyConfig = new()
    {
        Vocab = 259, DModel = 32, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 8, DFf = 48, MaxPositions = 128,
        TiedEmbeddings = true, EosTokenIds = [257],
    };

    static readonly ModelConfig PrmConfig = PolicyConfig with { Head = HeadKind.Value, NumLabels = 1, DModel = 24, NHeads = 3, NKvHeads = 1, DFf = 40 };

    readonly string _dir = Directory.CreateTempSubdirectory("ponder-study-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    StudyConfig Config() => new()
    {
        Name = "tiny-study",
        Policy = "(in memory)",
        Dataset = WriteDataset(),
        Questions = 5,
        OracleSamples = 3,
        OracleCache = Path.Combine(_dir, "cache", "oracle.jsonl"),
        Strategies =
        [
            new StudyStrategy("best-of-n", [""], AnswerSelection.Weighted),
            new StudyStrategy("best-of-n", [""], AnswerSelection.Majority),
            new StudyStrategy("beam", ["M=sqrt"], AnswerSelection.Weighted),
        ],
        Budgets = [1, 2, 4],
        MaxStepTokens = 4,
        MaxRounds = 3,
        Concurrency = 4,
        KvCacheTokens = 4096,
    };

    string WriteDataset()
    {
        string path = Path.Combine(_dir, "questions.jsonl");
        if (!File.Exists(path)) ArithmeticChainSplits.WriteJsonl(path, ArithmeticChainSplits.Test(5, 8));
        return path;
    }

    static (StudyModels Models, CpuBackend Backend) Models(bool large = false, bool reviser = false)
    {
        var backend = new CpuBackend(threads: 1);
        var options = new ModelOptions { Backend = backend, KvCacheTokens = 4096, BlockSize = 8 };
        var tokenizer = new RawBytes(PolicyConfig);
        var policy = PonderModel.Load(new HostTensorSource(PolicyConfig, RandomModels.Create(PolicyConfig, 3)), tokenizer, options);
        var prm = PonderModel.Load(new HostTensorSource(PrmConfig, RandomModels.Create(PrmConfig, 4)), tokenizer, options);
        StudyModel? largeModel = null;
        if (large)
        {
            var largeConfig = PolicyConfig with { DModel = 64, DFf = 96, HeadDim = 16 };
            largeModel = new StudyModel(PonderModel.Load(new HostTensorSource(largeConfig, RandomModels.Create(largeConfig, 5)), tokenizer, options), "tiny-large@1", 4000);
        }
        StudyModel? reviserModel = null;
        if (reviser)
        {
            var reviserConfig = PolicyConfig with { MaxPositions = 256 };
            reviserModel = new StudyModel(PonderModel.Load(new HostTensorSource(reviserConfig, RandomModels.Create(reviserConfig, 6)), tokenizer, options), "tiny-reviser@1", null);
        }
        return (new StudyModels(new StudyModel(policy, "tiny-policy@1", 1000), new StudyModel(prm, "tiny-prm@1", null), largeModel, backend, reviserModel), backend);
    }

    [Fact]
    public async Task Revisions_run_on_the_revision_model_with_per_step_accuracy_and_a_ratio_analysis()
    {
        var config = Config() with
        {
            Budgets = [2, 4],
            Strategies = [new StudyStrategy("best-of-n", [""], AnswerSelection.Weighted), new StudyStrategy("revisions", ["P=1", "P=2", "P=4"], AnswerSelection.Weighted)],
        };
        var (models, backend) = Models(reviser: true);
        using var _ = models;
        var result = await StudyRunner.RunAsync(config, models, _dir);

        // Compute-optimal chooses among search configurations; revisions get their own fit.
        Assert.All(result.ComputeOptimal, c => Assert.Equal("best-of-n", c.Final.Strategy));
        Assert.NotEmpty(result.ComputeOptimalRevisions);
        Assert.All(result.ComputeOptimalRevisions, c => Assert.Equal("revisions", c.Final.Strategy));
        Assert.Equal(2, result.EfficiencyRevisions.Count);
        var full = result;
        result = result with { Records = [.. result.Records.Where(r => r.Strategy == "revisions")] };

        // P=4 has no run at budget 2 (more chains than generations): P=1@2, P=2@2, P=1@4, P=2@4, P=4@4, 5 questions each.
        Assert.Equal(5 * 5, result.Records.Count);
        Assert.DoesNotContain(result.Records, r => r.Params == "P=4" && r.Budget == 2);
        Assert.All(result.Records, r => Assert.Equal(r.Budget / StrategySpec.Parse("revisions", r.Params, r.Budget).Parallel, r.RoundAccuracy!.Count));
        Assert.All(result.Records, r => Assert.True(r.Generations <= r.Budget && r.PolicyFlops > 0 && r.PrmFlops > 0, r.ToString()));
        Assert.Equal("tiny-reviser@1", result.Models[3]);

        long accounted = full.Records.Sum(r => r.Flops) + full.Oracle.Sum(o => o.PolicyFlops + o.PrmFlops);
        Assert.Equal(backend.Flops.Total, accounted);

        var analysis = Assert.Single(StudyReport.Revisions(result));
        Assert.Equal(4, analysis.Budget);
        Assert.Equal(["1/4", "1", "4"], analysis.Ratios.Select(r => r.Label));
        Assert.Equal(["P=2 (L=2)", "P=1 (L=4)", "policy pass@1 (oracle samples)"], analysis.ByStep.Keys);
        var p1 = result.Records.Where(r => r.Params == "P=1" && r.Budget == 4).ToList();
        Assert.Equal(p1.Average(r => r.RoundAccuracy![3]), analysis.ByStep["P=1 (L=4)"][3], 12);
        Assert.Equal(p1.Average(r => r.Correct ? 1.0 : 0.0), analysis.RatioAccuracyByBin[0][2], 12);
        Assert.Contains("## Sequential revisions", StudyReport.Markdown(result));
        var files = StudyReport.Write(result, Path.Combine(_dir, "report"));
        foreach (var plot in new[] { "revisions-by-step", "revisions-ratio" })
            Assert.True(new FileInfo(Path.Combine(_dir, "report", "plots", plot + ".png")).Length > 1000, plot);
    }

    [Fact]
    public void A_corrupt_record_cache_line_fails_naming_the_file_and_the_line()
    {
        string path = Path.Combine(_dir, "records.jsonl");
        File.WriteAllText(path, "\n{\"Key\": \"k\", \"Record\": 12}\n");
        var e = Assert.Throws<InvalidDataException>(() => new JsonlCache<StudyRunner.CachedRecord>(path, r => r.Key, "a sweep record"));
        Assert.Contains($"{path}:2", e.Message);
        Assert.Contains("not a sweep record", e.Message);
    }

    [Fact]
    public void A_reviser_that_cannot_write_the_policy_tokens_is_refused_by_name()
    {
        var (models, _) = Models();
        using var __ = models;
        var e = Assert.Throws<ArgumentException>(() => new StudyModels(models.Policy, reviser: models.Prm));
        Assert.Contains("reviser", e.Message);
        Assert.Contains("language model", e.Message);
    }

    [Fact]
    public async Task Revisions_without_a_revision_model_are_skipped_with_a_notice()
    {
        var config = Config() with
        {
            Budgets = [2],
            Strategies = [new StudyStrategy("best-of-n", [""], AnswerSelection.Majority), new StudyStrategy("revisions", ["P=1"], AnswerSelection.Weighted)],
        };
        var (models, _) = Models();
        using var _ = models;
        var result = await StudyRunner.RunAsync(config, models, _dir);
        Assert.All(result.Records, r => Assert.Equal("best-of-n-majority", r.Strategy));
        Assert.Contains(result.Notices, n => n.Contains("revisions are skipped", StringComparison.Ordinal));
    }

    /// <summary>
    /// <c>"prm": "shared"</c>: the policy's own value row is the verifier. Weighted strategies run, every score is read
    /// from the policy's forwards (no PRM FLOPs, no second model), and requests still account for every FLOP the
    /// backend ran.
    /// </summary>
    [Fact]
    public async Task A_study_with_the_shared_value_head_as_verifier_spends_no_prm_flops()
    {
        var config = Config() with { Prm = StudyConfig.SharedPrm };
        Assert.True(config.UsesSharedPrm);
        var backend = new CpuBackend(threads: 1);
        var options = new ModelOptions { Backend = backend, KvCacheTokens = 4096, BlockSize = 8 };
        var sharedConfig = PolicyConfig with { SharedValueHead = true };
        var policy = PonderModel.Load(new HostTensorSource(sharedConfig, RandomModels.Create(sharedConfig, 3)), new RawBytes(PolicyConfig), options);
        using var models = new StudyModels(new StudyModel(policy, "tiny-policy-vh@1", 1000), ownedBackend: backend, sharedPrm: true);
        Assert.Same(models.Policy, models.Prm);
        Assert.Null(models.PrmScheduled);

        var result = await StudyRunner.RunAsync(config, models, _dir);

        Assert.Equal(3 * 3 * 5, result.Records.Count); // weighted best-of-N and beam search were not dropped
        Assert.All(result.Records, r => Assert.Equal(0, r.PrmFlops));
        Assert.All(result.Records, r => Assert.Equal(r.Flops, r.PolicyFlops));
        // Majority voting runs without the verifier: a shared head would feed each finishing step's last token for nothing.
        var majority = result.Records.Where(r => r.Strategy == "best-of-n-majority").ToDictionary(r => (r.QuestionId, r.Budget));
        Assert.All(result.Records.Where(r => r.Strategy == "best-of-n"), r => Assert.True(r.Flops >= majority[(r.QuestionId, r.Budget)].Flops));
        using (var engine = models.Engine(null, "majority", verify: false))
            Assert.Contains("no verifier", (await Assert.ThrowsAsync<InvalidOperationException>(async () => await engine.ScoreAsync([]))).Message);
        Assert.All(result.Oracle, o => Assert.All(o.Samples, s => Assert.InRange(s.Score, 0, 1)));
        Assert.Equal(result.Questions.Select(q => q.Id).Order(), result.PredictedBins.Keys.Order());
        long accounted = result.Records.Sum(r => r.Flops) + result.Oracle.Sum(o => o.PolicyFlops + o.PrmFlops);
        Assert.Equal(backend.Flops.Total, accounted);

        using var plain = PonderModel.Load(new HostTensorSource(PolicyConfig, RandomModels.Create(PolicyConfig, 3)), new RawBytes(PolicyConfig), options);
        Assert.Contains("has no shared value head", Assert.Throws<ArgumentException>(() => new StudyModels(new StudyModel(plain, "p@1", null), sharedPrm: true)).Message);
    }

    /// <summary>
    /// <c>"prm": "exact"</c>: the task's checker scores steps. Its scores cost nothing (no PRM FLOPs, labelled by its name
    /// in the models list), they are the checker's own verdicts, and the report carries the coverage reference curves.
    /// </summary>
    [Fact]
    public async Task A_study_with_the_exact_checker_scores_steps_by_their_truth_at_no_flops()
    {
        var config = Config() with { Prm = "exact" };
        var backend = new CpuBackend(threads: 1);
        var options = new ModelOptions { Backend = backend, KvCacheTokens = 4096, BlockSize = 8 };
        var policy = PonderModel.Load(new HostTensorSource(PolicyConfig, RandomModels.Create(PolicyConfig, 3)), new RawBytes(PolicyConfig), options);
        using var models = new StudyModels(new StudyModel(policy, "tiny-policy@1", 1000), ownedBackend: backend, checker: ArithmeticStepChecker.Parse("exact"));
        Assert.True(models.HasVerifier);

        var result = await StudyRunner.RunAsync(config, models, _dir);

        Assert.Equal("exact", result.Models[1]);
        Assert.Equal(3 * 3 * 5, result.Records.Count);
        Assert.All(result.Records, r => Assert.Equal(0, r.PrmFlops));
        long accounted = result.Records.Sum(r => r.Flops) + result.Oracle.Sum(o => o.PolicyFlops + o.PrmFlops);
        Assert.Equal(backend.Flops.Total, accounted);
        // Every oracle sample's score is the checker's verdict on its text: 1 exactly when it is the reference solution.
        Assert.All(result.Oracle, o => Assert.All(o.Samples, s => Assert.True(s.Score is 0 or 1)));
        var series = StudyReport.Series(result, null);
        var pass = series[StudyReport.PassAtNName];
        Assert.Equal([1, 2], pass.Select(p => p.Budget)); // budgets up to K = 3
        Assert.Equal(result.Oracle.Average(o => o.PassAt1), pass[0].Accuracy.Value, 12);
        Assert.Contains(StudyReport.MajorityAtNName, series.Keys);
        Assert.Contains("less compute (geometric mean over budgets", StudyReport.EfficiencyHeadline(result));
        Assert.Contains("checker 'exact' is the verifier", Assert.Throws<ArgumentException>(() =>
            new StudyModels(new StudyModel(policy, "p@1", null), new StudyModel(policy, "p@1", null), checker: ArithmeticStepChecker.Parse("exact"))).Message);
    }

    [Fact]
    public async Task Study_records_carry_exact_flops_bins_cover_every_question_and_the_fit_runs()
    {
        var config = Config();
        var (models, backend) = Models();
        using var _ = models;
        var result = await StudyRunner.RunAsync(config, models, _dir);

        // Every run: budget spec x question x seed; 3 configurations x 3 budgets x 5 questions.
        Assert.Equal(3 * 3 * 5, result.Records.Count);
        Assert.All(result.Records, r => Assert.Equal(r.Flops, r.PolicyFlops + r.PrmFlops));
        Assert.All(result.Records, r => Assert.True(r.Generations <= r.Budget, $"{r.Configuration}@{r.Budget} spent {r.Generations} generations"));
        Assert.All(result.Records.Where(r => r.Strategy == "best-of-n-majority"), r => Assert.Equal(0, r.PrmFlops));
        Assert.All(result.Records.Where(r => r.Strategy == "best-of-n"), r => Assert.True(r.PrmFlops > 0));
        // Independent check: the backend's kernels count every FLOP they ran; requests must account for all of them.
        long accounted = result.Records.Sum(r => r.Flops) + result.Oracle.Sum(o => o.PolicyFlops + o.PrmFlops);
        Assert.Equal(backend.Flops.Total, accounted);

        var ids = result.Questions.Select(q => q.Id).Order().ToList();
        Assert.Equal(5, ids.Count);
        Assert.Equal(ids, result.OracleBins.Keys.Order());
        Assert.Equal(ids, result.PredictedBins.Keys.Order());
        Assert.All(result.OracleBins.Values, b => Assert.InRange(b, 1, 5));
        Assert.Equal(5, result.OracleBins.Values.Distinct().Count()); // 5 questions, 5 quantile bins: one each
        Assert.All(result.Oracle, o => Assert.Equal(3, o.Samples.Count));
        Assert.All(result.Oracle, o => Assert.All(o.Samples, s => Assert.InRange(s.Score, 0, 1)));
        Assert.Equal(5 * 3, result.ComputeOptimal.Count); // bins x budgets
        Assert.Equal("best-of-n", result.Baseline);
        Assert.NotNull(result.FlopsMatched.Skipped);
    }

    [Fact]
    public async Task Flops_matched_comparison_runs_against_a_larger_policy_with_paper_and_exact_multipliers()
    {
        var config = Config() with { Budgets = [1, 2], Strategies = [new StudyStrategy("best-of-n", [""], AnswerSelection.Weighted)], LargePolicy = "(in memory)" };
        var (models, _) = Models(large: true);
        using var __ = models;
        var result = await StudyRunner.RunAsync(config, models, _dir);
        var fm = result.FlopsMatched;
        Assert.Null(fm.Skipped);
        double m = (double)models.Large!.Model.Config.NonEmbeddingParameters / models.Policy.Model.Config.NonEmbeddingParameters;
        Assert.Equal(m, fm.SizeRatio, 12);
        // One row per R and bin (1-5 and 0 = all), the paper's multiplier M + 3(M-1)/R.
        Assert.Equal(3 * 6, fm.Paper.Count);
        Assert.Equal(3 * 6, fm.Exact.Count);
        Assert.All(fm.Paper, r => Assert.Equal(m + 3 * (m - 1) / r.R, r.Multiplier, 9));
        Assert.True(fm.LargeGreedyFlops > fm.SmallGreedyFlops, "the larger policy's greedy answer costs more");
        Assert.All(fm.Exact, r => Assert.True(r.Multiplier > fm.LargeGreedyFlops / fm.SmallGreedyFlops));
        Assert.Equal(6, fm.LargeGreedyAccuracy.Count);

        // A rerun finds every prompt in the prefix indexes; a greedy answer still costs what a fresh one does.
        var again = (await StudyRunner.RunAsync(config, models, _dir)).FlopsMatched;
        Assert.Equal(fm.SmallGreedyFlops, again.SmallGreedyFlops);
        Assert.Equal(fm.LargeGreedyFlops, again.LargeGreedyFlops);
    }

    [Fact]
    public async Task A_rerun_takes_every_sweep_run_from_the_record_cache_and_a_new_budget_computes_only_its_runs()
    {
        var config = Config() with { Budgets = [1, 2] };
        var (models, _) = Models();
        using var __ = models;
        var first = await StudyRunner.RunAsync(config, models, _dir);
        Assert.Equal(first.Records.Count, first.RecordsComputed);
        long forwards = models.Scheduler.Forwards;

        var again = await StudyRunner.RunAsync(config, models, _dir);
        Assert.Equal(0, again.RecordsComputed);
        Assert.Equal(0, again.OracleComputed);
        Assert.Equal(forwards, models.Scheduler.Forwards);
        Assert.Equal(first.Records, again.Records, (a, b) => a with { RoundAccuracy = null } == b with { RoundAccuracy = null });

        // Another budget: only its runs are computed; other sampling settings miss the cache entirely.
        var wider = await StudyRunner.RunAsync(config with { Budgets = [1, 2, 4] }, models, _dir);
        Assert.Equal(3 * 5, wider.RecordsComputed);
        var otherRounds = await StudyRunner.RunAsync(config with { MaxRounds = 2 }, models, _dir);
        Assert.Equal(otherRounds.Records.Count, otherRounds.RecordsComputed);
        Assert.Equal(5, otherRounds.OracleComputed);
    }

    [Fact]
    public async Task Oracle_samples_are_cached_on_disk_and_a_second_run_does_no_forward()
    {
        var config = Config();
        var (models, _) = Models();
        using var __ = models;
        var questions = StudyRunner.Questions(config, _dir);
        var search = new SearchOptions { MaxStepTokens = 4, MaxRounds = 3 };
        var first = new OracleSampleCache(config.OracleCache);
        first.EnsureDirectory();
        var drawn = await first.GetAsync(models, questions, 3, 9, search, 4);
        Assert.Equal(5, first.Computed);
        long forwards = models.Scheduler.Forwards;
        Assert.True(forwards > 0);

        var second = new OracleSampleCache(config.OracleCache);
        Assert.Equal(5, second.Count);
        var cached = await second.GetAsync(models, questions, 3, 9, search, 4);
        Assert.Equal(0, second.Computed);
        Assert.Equal(forwards, models.Scheduler.Forwards);
        Assert.Equal(drawn.Select(e => (e.Key, e.PassAt1, e.PolicyFlops, e.PrmFlops)), cached.Select(e => (e.Key, e.PassAt1, e.PolicyFlops, e.PrmFlops)));
        Assert.Equal(drawn.SelectMany(e => e.Samples.Select(s => s.Score)), cached.SelectMany(e => e.Samples.Select(s => s.Score)));

        // Another K is another key: drawn anew.
        await second.GetAsync(models, questions.Take(1).ToList(), 2, 9, search, 4);
        Assert.Equal(1, second.Computed);
        Assert.True(models.Scheduler.Forwards > forwards);
    }

    [Theory]
    [InlineData("""{"dataset": "d", "strategies": [{"name": "best-of-n"}], "budgets": [1]}""", "'policy'")]
    [InlineData("""{"policy": "p", "dataset": "d", "strategies": [{"name": "best-of-n"}], "budgets": [0, 2]}""", "'budgets'")]
    [InlineData("""{"policy": "p", "dataset": "d", "strategies": [{"name": "best-of-n"}, {"name": "beam", "selection": "best"}], "budgets": [1]}""", "'strategies[1].selection'")]
    [InlineData("""{"policy": "p", "dataset": "d", "strategies": [{"name": "beam", "params": ["M=x"]}], "budgets": [1]}""", "'strategies[0]'")]
    [InlineData("""{"policy": "p", "dataset": "d", "strategies": [{"name": "best-of-n"}], "budgets": [1], "oracleSample": 4}""", "'oracleSample'")]
    [InlineData("""{"policy": "p", "dataset": "d", "strategies": [{"name": "best-of-n"}], "budgets": [1], "questions": "ten"}""", "'questions'")]
    [InlineData("""{"policy": "p", "dataset": "d", "strategies": [], "budgets": [1]}""", "'strategies'")]
    [InlineData("""{"policy": "p", "prm": "noisy:1.2", "dataset": "d", "strategies": [{"name": "best-of-n"}], "budgets": [1]}""", "'prm'")]
    public void Config_errors_name_the_file_and_the_field(string json, string field)
    {
        var e = Assert.Throws<InvalidDataException>(() => StudyConfig.Parse(json, "study.json"));
        Assert.Contains("study.json", e.Message);
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void The_shipped_study_configs_parse()
    {
        string root = RepositoryRoot();
        foreach (var name in new[] { "study-demo.json", "study-full.json", "study-shared-prm.json", "study-cluster-check.json" })
        {
            var config = StudyConfig.Load(Path.Combine(root, "configs", name));
            Assert.NotEmpty(config.Strategies);
            Assert.Contains(config.Strategies, s => s.Name == "best-of-n" && s.Selection == AnswerSelection.Weighted);
        }
    }

    [Fact]
    public async Task Sweep_command_writes_the_report_records_and_plots()
    {
        string root = RepositoryRoot();
        foreach (var (name, config, seed) in new[] { ("policy", PolicyConfig, 3UL), ("prm", PrmConfig, 4UL) })
        {
            string folder = Path.Combine(_dir, name);
            SafetensorsWriter.WriteFolder(folder, config, RandomModels.Create(config, seed));
            File.Copy(Path.Combine(root, "weights", "policy-small", "tokenizer.json"), Path.Combine(folder, "tokenizer.json"));
        }
        string configPath = Path.Combine(_dir, "study.json");
        File.WriteAllText(configPath, $$"""
            {
              "name": "tiny", "policy": "{{Path.Combine(_dir, "policy")}}", "prm": "{{Path.Combine(_dir, "prm")}}",
              "largePolicy": "{{Path.Combine(_dir, "missing")}}", "dataset": "{{WriteDataset()}}", "questions": 3, "oracleSamples": 2,
              "oracleCache": "{{Path.Combine(_dir, "cache.jsonl")}}", "strategies": [{"name": "best-of-n"}, {"name": "beam", "params": ["M=2"]}],
              "budgets": [1, 2], "maxStepTokens": 3, "maxRounds": 2, "threads": 1, "concurrency": 2, "kvCacheTokens": 2048
            }
            """);
        string outDir = Path.Combine(_dir, "out");
        var rootCommand = new RootCommand { SweepCommand.Create() };
        int rc = await rootCommand.Parse(["sweep", "--config", configPath, "--out", outDir]).InvokeAsync();
        Assert.Equal(0, rc);
        foreach (var f in new[] { "report.md", "records.csv", "records.json", "difficulty.csv", "compute_optimal.json", "summary.json",
                     "plots/accuracy-vs-budget.png", "plots/accuracy-vs-budget.svg", "plots/accuracy-vs-budget-bin1.png", "plots/compute-optimal-vs-best-of-n.png" })
            Assert.True(File.Exists(Path.Combine(outDir, f)), $"{f} was not written");
        var records = SweepResults.ReadCsv(Path.Combine(outDir, "records.csv"));
        Assert.Equal(2 * 2 * 3, records.Count);
        Assert.Contains("FLOPs-matched comparison skipped", File.ReadAllText(Path.Combine(outDir, "report.md")));
    }

    static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) return dir.FullName;
        throw new InvalidOperationException("Engine.sln not found above the test assembly");
    }

    /// <summary>Bytes as ids 0..255 (the policy-small vocabulary without its tokenizer file).</summary>
    sealed class RawBytes(ModelConfig config) : ITokenizer
    {
        public int VocabSize => config.Vocab;
        public int? BosId => null;
        public IReadOnlyList<int> EosIds => config.EosTokenIds;
        public bool AddBos => false;
        public int[] Encode(string text, bool addSpecialTokens = true) => [.. System.Text.Encoding.UTF8.GetBytes(text).Select(b => (int)b)];
        public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false) =>
            System.Text.Encoding.UTF8.GetString([.. ids.ToArray().Where(i => i < 256).Select(i => (byte)i)]);
        public byte[] TokenBytes(int id) => id < 256 ? [(byte)id] : [];
    }
}
