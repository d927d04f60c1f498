using Ponder.Search;

namespace Ponder.Evaluation.Study;

/// <summary>One run of a study sweep: a strategy with its selection at a budget (<see cref="Spec"/>), on a question with a seed.</summary>
/// <param name="Spec">The strategy with its hyper-parameters, answer selection and budget.</param>
/// <param name="Question">The question.</param>
/// <param name="Seed">The run's seed (the sampling stream is derived from it and the question id).</param>
public sealed record StudyJob(StrategySpec Spec, StudyQuestion Question, ulong Seed)
{
    /// <summary>Whether the run samples from the revision model.</summary>
    public bool Revises => Spec.Kind == StrategyKind.Revisions;

    /// <summary>"record-name(params)@budget question-id": the engine's request name.</summary>
    public string Name => $"{Spec.RecordName}({Spec.Params})@{Spec.Budget} {Question.Id}";
}

/// <summary>
/// A batch of a sweep: jobs of one question, as indices into the sweep's job list in job order. A batch runs its jobs
/// one after another on one engine, so the question's prompt and shared branch prefixes are computed once and then
/// found in that engine's prefix index, and each job meets the same prefix-cache state wherever the batch runs.
/// </summary>
/// <param name="QuestionId">The question all jobs share.</param>
/// <param name="Jobs">Job indices, ascending.</param>
public sealed record StudyJobBatch(string QuestionId, IReadOnlyList<int> Jobs);

/// <summary>
/// The study sweep's jobs: the grid a config asks for, their record-cache keys, and their batches. The local study and
/// the cluster both plan with these and run them with <see cref="StudyJobLoop"/>.
/// </summary>
public static class StudyJobs
{
    /// <summary>The search options a config's runs use (each job then sets its own seed and selector).</summary>
    public static SearchOptions Search(StudyConfig config) => Search(config.Temperature, config.MaxStepTokens, config.MaxRounds);

    /// <summary>The search options of a sweep from its sampling settings.</summary>
    public static SearchOptions Search(float temperature, int maxStepTokens, int maxRounds) =>
        new() { Temperature = temperature, MaxStepTokens = maxStepTokens, MaxRounds = maxRounds };

    /// <summary>
    /// The sweep's jobs: strategy x hyper-parameters x budget (ascending) x question x seed, in that nesting order.
    /// Configurations the budget cannot buy (more revision chains than generations, a lookahead without a beam) are left
    /// out, the latter with a notice.
    /// </summary>
    public static List<StudyJob> Plan(StudyConfig config, IReadOnlyList<StrategySpec> strategies, IReadOnlyList<StudyQuestion> questions, Action<string>? notice = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        var jobs = new List<StudyJob>();
        foreach (var s in strategies)
        foreach (int budget in config.Budgets.Order())
        {
            var spec = s with { Budget = budget };
            // More chains than generations is no configuration at this budget (a P sweep meets it at every small budget).
            if (spec.Kind == StrategyKind.Revisions && spec.Parallel * spec.AttemptBeams > budget) continue;
            try { spec.Create(); }
            catch (ArgumentException e)
            {
                notice?.Invoke($"skipped {s.RecordName}({s.Params}) at budget {budget}: {e.Message}");
                continue;
            }
            jobs.AddRange(Grid(spec, questions, config.Seeds));
        }
        return jobs;
    }

    /// <summary>One configuration's jobs: every question x seed.</summary>
    public static IEnumerable<StudyJob> Grid(StrategySpec spec, IReadOnlyList<StudyQuestion> questions, IReadOnlyList<ulong> seeds) =>
        from q in questions from seed in seeds select new StudyJob(spec, q, seed);

    /// <summary>
    /// The record-cache key of a job: everything that decides its outcome (the model it samples from, the verifier, the
    /// sampling settings, the configuration, budget, seed and question).
    /// </summary>
    /// <param name="job">The job.</param>
    /// <param name="policy">The policy's fingerprint.</param>
    /// <param name="verifier">The verifier's fingerprint ("none" without one).</param>
    /// <param name="reviser">The revision model's fingerprint ("none" without one).</param>
    /// <param name="search">The sweep's sampling settings.</param>
    public static string Key(StudyJob job, string policy, string verifier, string reviser, SearchOptions search) =>
        $"{(job.Revises ? reviser : policy)}|{verifier}|{OracleEntry.SamplingOf(search)}|{job.Spec.RecordName}|{job.Spec.Params}|" +
        $"{job.Spec.Budget}|{job.Seed}|{job.Question.Id}|{job.Question.Question}";

    /// <summary>The record-cache key of a job on loaded models.</summary>
    public static string Key(StudyJob job, StudyModels models, SearchOptions search)
    {
        ArgumentNullException.ThrowIfNull(models);
        return Key(job, models.Policy.Fingerprint, models.VerifierFingerprint, models.Reviser?.Fingerprint ?? "none", search);
    }

    /// <summary>
    /// The batches of <paramref name="indices"/> (jobs of <paramref name="jobs"/>): one per question, in order of each
    /// question's first job, each batch's jobs ascending.
    /// </summary>
    public static List<StudyJobBatch> Batches(IReadOnlyList<StudyJob> jobs, IEnumerable<int> indices)
    {
        ArgumentNullException.ThrowIfNull(jobs);
        var byQuestion = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (int i in indices.Order())
        {
            string id = jobs[i].Question.Id;
            if (!byQuestion.TryGetValue(id, out var list))
            {
                byQuestion[id] = list = [];
                order.Add(id);
            }
            list.Add(i);
        }
        return [.. order.Select(id => new StudyJobBatch(id, byQuestion[id]))];
    }
}
