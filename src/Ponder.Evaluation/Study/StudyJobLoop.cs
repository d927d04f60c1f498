using Ponder.Search;

namespace Ponder.Evaluation.Study;

/// <summary>
/// The study's one job loop: runs batches of <see cref="StudyJob"/>s (<see cref="StudyJobs.Batches"/>), up to
/// <c>concurrency</c> batches at once (so a scheduler shared by the engines batches their forwards), each batch's jobs
/// one after another, and hands every finished <see cref="StudyRecord"/> on as it comes. The local study runs its
/// sweep with it; a cluster silo runs the batches a coordinator leases it with the same loop.
/// </summary>
public sealed class StudyJobLoop
{
    readonly Func<StudyJob, CancellationToken, Task<StudyRecord>> _run;

    /// <summary>A loop running each job with <paramref name="run"/>.</summary>
    public StudyJobLoop(Func<StudyJob, CancellationToken, Task<StudyRecord>> run)
    {
        ArgumentNullException.ThrowIfNull(run);
        _run = run;
    }

    /// <summary>
    /// Jobs on loaded models: each gets its own engine on the policy's scheduler (the revision model's for revisions)
    /// with the job's budget, and its record carries the exact FLOPs of the engine's request report.
    /// </summary>
    public static StudyJobLoop OnModels(StudyModels models, SearchOptions search)
    {
        ArgumentNullException.ThrowIfNull(models);
        ArgumentNullException.ThrowIfNull(search);
        return new StudyJobLoop((job, ct) => RunOnModelsAsync(models, job, search, ct));
    }

    /// <summary>
    /// Jobs on engines from a factory (budget caps are the engine's; disposed after the job when disposable). The
    /// record's FLOPs and generations are the engine's budget report; no PRM share, no token counts.
    /// </summary>
    public static StudyJobLoop OnEngines(Func<StudyJob, ISearchEngine> engineFor, SearchOptions? search = null)
    {
        ArgumentNullException.ThrowIfNull(engineFor);
        search ??= new SearchOptions();
        return new StudyJobLoop(async (job, ct) =>
        {
            var engine = engineFor(job);
            try
            {
                var result = await job.Spec.Create(Options(search, job)).RunAsync(engine, job.Question.Question, ct).ConfigureAwait(false);
                return new StudyRecord(job.Spec.RecordName, job.Spec.Params, job.Spec.Budget, job.Question.Id, job.Seed, job.Question.IsCorrect(result.Answer),
                    result.Answer, result.Budget.FlopsSpent, result.Budget.FlopsSpent, 0, result.Budget.GenerationsSpent, 0, 0, result.BudgetExhausted);
            }
            finally
            {
                if (engine is IAsyncDisposable ad) await ad.DisposeAsync().ConfigureAwait(false);
                else if (engine is IDisposable d) d.Dispose();
            }
        });
    }

    /// <summary>Runs one job.</summary>
    public Task<StudyRecord> RunOneAsync(StudyJob job, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        return _run(job, cancellationToken);
    }

    /// <summary>
    /// Runs <paramref name="batches"/> of <paramref name="jobs"/>, <paramref name="concurrency"/> batches at once in
    /// batch order, and calls <paramref name="done"/> (job index, record) for each finished job, possibly from several
    /// threads at once. The first failure cancels the rest and is thrown.
    /// </summary>
    public async Task RunAsync(IReadOnlyList<StudyJob> jobs, IReadOnlyList<StudyJobBatch> batches, int concurrency, Action<int, StudyRecord> done,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(jobs);
        ArgumentNullException.ThrowIfNull(batches);
        ArgumentNullException.ThrowIfNull(done);
        if (concurrency < 1) throw new ArgumentException($"sweep concurrency must be >= 1, got {concurrency}", nameof(concurrency));
        await Parallel.ForEachAsync(batches, new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = cancellationToken },
            async (batch, ct) =>
            {
                foreach (int i in batch.Jobs) done(i, await _run(jobs[i], ct).ConfigureAwait(false));
            }).ConfigureAwait(false);
    }

    /// <summary>Runs every job and returns the records in job order; progress counts finished jobs.</summary>
    public async Task<List<StudyRecord>> RunAsync(IReadOnlyList<StudyJob> jobs, int concurrency, IProgress<StudyProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(jobs);
        var records = new StudyRecord[jobs.Count];
        int finished = 0;
        await RunAsync(jobs, StudyJobs.Batches(jobs, Enumerable.Range(0, jobs.Count)), concurrency, (i, r) =>
        {
            records[i] = r;
            progress?.Report(new StudyProgress("sweep", Interlocked.Increment(ref finished), jobs.Count));
        }, cancellationToken).ConfigureAwait(false);
        return [.. records];
    }

    /// <summary>The job's search options: the sweep's, with the job's selection and a seed that differs per question too.</summary>
    static SearchOptions Options(SearchOptions search, StudyJob job) => search with
    {
        Selector = new AnswerSelector(job.Spec.Selection),
        // Seeds differ per question too, so two questions never share a sampling stream.
        Seed = SearchSeeds.Derive(job.Seed, 2, StableHash(job.Question.Id)),
    };

    static async Task<StudyRecord> RunOnModelsAsync(StudyModels models, StudyJob job, SearchOptions search, CancellationToken ct)
    {
        bool revise = job.Revises;
        using var engine = models.Engine(job.Spec.Budget, job.Name, ct, revise, verify: job.Spec.NeedsVerifier);
        var result = await job.Spec.Create(Options(search, job)).RunAsync(models.Search(engine, job.Spec.NeedsVerifier), job.Question.Question, ct).ConfigureAwait(false);
        var report = engine.Request.Report();
        long prmFlops = report.Models.Where(m => m.Model == models.PrmScheduled?.Name).Sum(m => m.Flops.Total);
        long flops = report.Flops.Total;
        return new StudyRecord(job.Spec.RecordName, job.Spec.Params, job.Spec.Budget, job.Question.Id, job.Seed,
            job.Question.IsCorrect(result.Answer), result.Answer, flops, flops - prmFlops, prmFlops, report.Generations,
            report.TokensComputed, report.TokensReused, result.BudgetExhausted, revise ? RoundAccuracy(job.Question, result) : null);
    }

    /// <summary>Per sequential step of a revision search: the fraction of its chains whose attempt at that step is correct.</summary>
    static double[] RoundAccuracy(StudyQuestion question, SearchResult result) =>
        [.. result.Candidates.GroupBy(c => c.Round).OrderBy(g => g.Key).Select(g => g.Average(c => question.IsCorrect(c.Answer) ? 1.0 : 0.0))];

    /// <summary>A deterministic (process-independent) hash of a question id, folded to an int.</summary>
    static int StableHash(string s)
    {
        uint h = 2166136261;
        foreach (char c in s) h = (h ^ c) * 16777619;
        return (int)(h & 0x7fffffff);
    }
}

/// <summary>
/// Where a study's sweep runs: in this process (<see cref="StudyJobLoop"/> on the study's models, the default) or on a
/// cluster. It runs the jobs it is given and reports each finished record.
/// </summary>
public interface IStudySweepExecutor
{
    /// <summary>
    /// Runs <paramref name="indices"/> of <paramref name="sweep"/>'s jobs and calls <paramref name="done"/> (job index,
    /// record) once for each, possibly from several threads; progress reports phase "sweep" counting from
    /// <paramref name="alreadyDone"/> (records the cache held).
    /// </summary>
    Task RunAsync(StudySweep sweep, IReadOnlyList<int> indices, Action<int, StudyRecord> done, int alreadyDone,
        IProgress<StudyProgress>? progress, CancellationToken cancellationToken);
}

/// <summary>A study's sweep as an executor sees it.</summary>
/// <param name="Name">The study's name.</param>
/// <param name="Jobs">Every job of the sweep.</param>
/// <param name="Keys">Each job's record-cache key (<see cref="StudyJobs.Key(StudyJob, StudyModels, SearchOptions)"/>).</param>
/// <param name="Models">The study's models (their fingerprints name what the records were computed on).</param>
/// <param name="Search">The sampling settings.</param>
/// <param name="Concurrency">Batches run at once per engine.</param>
public sealed record StudySweep(string Name, IReadOnlyList<StudyJob> Jobs, IReadOnlyList<string> Keys, StudyModels Models, SearchOptions Search, int Concurrency);

/// <summary>The sweep on the study's own models in this process.</summary>
public sealed class LocalSweepExecutor : IStudySweepExecutor
{
    /// <inheritdoc />
    public async Task RunAsync(StudySweep sweep, IReadOnlyList<int> indices, Action<int, StudyRecord> done, int alreadyDone,
        IProgress<StudyProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(sweep);
        int finished = alreadyDone;
        await StudyJobLoop.OnModels(sweep.Models, sweep.Search).RunAsync(sweep.Jobs, StudyJobs.Batches(sweep.Jobs, indices), sweep.Concurrency, (i, r) =>
        {
            done(i, r);
            progress?.Report(new StudyProgress("sweep", Interlocked.Increment(ref finished), sweep.Jobs.Count));
        }, cancellationToken).ConfigureAwait(false);
    }
}
