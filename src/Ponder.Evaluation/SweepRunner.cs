using Ponder.Search;

namespace Ponder.Evaluation;

/// <summary>One run of a sweep: a strategy at a budget on a question with a seed.</summary>
/// <param name="Spec">Strategy, hyper-parameters and budget.</param>
/// <param name="QuestionId">Stable question id (sweep rows, bins and folds use it).</param>
/// <param name="Question">The question text passed to the strategy.</param>
/// <param name="Reference">The reference answer for grading.</param>
/// <param name="Seed">The run's seed.</param>
public sealed record SweepJob(StrategySpec Spec, string QuestionId, string Question, string Reference, ulong Seed);

/// <summary>Progress of a sweep: runs done of total, and the last finished record.</summary>
public readonly record struct SweepProgress(int Done, int Total, SweepRecord? Last);

/// <summary>
/// Runs sweep jobs: each job gets its own engine (its own budget) from a factory, runs its strategy, grades the
/// selected answer and becomes a <see cref="SweepRecord"/> with the engine's exact FLOPs and generations. Progress goes
/// to an <see cref="IProgress{T}"/> (the CLI draws it). Up to <c>concurrency</c> searches run at once, so a scheduler
/// shared by the engines can batch their work; records come back in job order whatever the completion order.
/// </summary>
public sealed class SweepRunner
{
    readonly Func<SweepJob, ISearchEngine> engineFor;
    readonly Func<string?, string, bool> grade;
    readonly SearchOptions options;

    /// <summary>Creates a runner.</summary>
    /// <param name="engineFor">A fresh engine for a job (budget caps are the engine's); disposed after the job when disposable.</param>
    /// <param name="grade">(selected answer, reference) → correct. A null answer is graded too (normally false).</param>
    /// <param name="options">Search options; each job's seed replaces <see cref="SearchOptions.Seed"/>.</param>
    public SweepRunner(Func<SweepJob, ISearchEngine> engineFor, Func<string?, string, bool> grade, SearchOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(engineFor);
        ArgumentNullException.ThrowIfNull(grade);
        this.engineFor = engineFor;
        this.grade = grade;
        this.options = options ?? new SearchOptions();
    }

    /// <summary>Runs all jobs and returns their records in job order.</summary>
    public async Task<List<SweepRecord>> RunAsync(IReadOnlyList<SweepJob> jobs, int concurrency = 1,
        IProgress<SweepProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(jobs);
        if (concurrency < 1) throw new ArgumentException($"sweep concurrency must be >= 1, got {concurrency}", nameof(concurrency));
        var records = new SweepRecord[jobs.Count];
        int done = 0;
        await Parallel.ForEachAsync(Enumerable.Range(0, jobs.Count),
            new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = cancellationToken },
            async (i, ct) =>
            {
                var record = await RunOneAsync(jobs[i], ct).ConfigureAwait(false);
                records[i] = record;
                progress?.Report(new SweepProgress(Interlocked.Increment(ref done), jobs.Count, record));
            }).ConfigureAwait(false);
        return [.. records];
    }

    /// <summary>Runs one job.</summary>
    public async Task<SweepRecord> RunOneAsync(SweepJob job, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        var engine = engineFor(job);
        try
        {
            var strategy = job.Spec.Create(options with { Seed = job.Seed });
            var result = await strategy.RunAsync(engine, job.Question, cancellationToken).ConfigureAwait(false);
            return new SweepRecord(job.Spec.Name, job.Spec.Params, job.Spec.Budget, job.QuestionId, job.Seed,
                grade(result.Answer, job.Reference), result.Answer, result.Budget.FlopsSpent, result.Budget.GenerationsSpent);
        }
        finally
        {
            if (engine is IAsyncDisposable ad) await ad.DisposeAsync().ConfigureAwait(false);
            else if (engine is IDisposable d) d.Dispose();
        }
    }

    /// <summary>
    /// The sweep grid: every spec x question x seed, in that nesting order (<paramref name="questions"/> as
    /// (id, text, reference)).
    /// </summary>
    public static List<SweepJob> Grid(IEnumerable<StrategySpec> specs, IReadOnlyList<(string Id, string Question, string Reference)> questions,
        IReadOnlyList<ulong> seeds) =>
        [.. from s in specs from q in questions from seed in seeds select new SweepJob(s, q.Id, q.Question, q.Reference, seed)];
}
