using Ponder.Search;

namespace Ponder.Evaluation.Study;

/// <summary>One sampled solution of the difficulty estimate.</summary>
/// <param name="Answer">Extracted final answer (null when none).</param>
/// <param name="Correct">Graded against the reference.</param>
/// <param name="Score">PRM final-step score (NaN without a PRM).</param>
public sealed record OracleSample(string? Answer, bool Correct, double Score);

/// <summary>
/// K samples of one question, as cached: the key is (policy, PRM, question, K, seed, sampling settings), so a sweep
/// with other strategies or budgets reuses them and other weights or step limits never do.
/// </summary>
/// <param name="Policy">Policy fingerprint.</param>
/// <param name="Prm">PRM fingerprint, or "none".</param>
/// <param name="Question">Question text.</param>
/// <param name="K">Samples.</param>
/// <param name="Seed">Seed.</param>
/// <param name="Samples">The samples.</param>
/// <param name="PolicyFlops">Exact policy FLOPs spent drawing them (oracle cost).</param>
/// <param name="PrmFlops">Exact PRM FLOPs spent scoring them (the predicted-difficulty cost).</param>
/// <param name="Sampling">The sampling settings they were drawn with (<see cref="SamplingOf"/>).</param>
public sealed record OracleEntry(string Policy, string Prm, string Question, int K, ulong Seed, IReadOnlyList<OracleSample> Samples,
    long PolicyFlops, long PrmFlops, string? Sampling)
{
    /// <summary>The cache key.</summary>
    public string Key => CacheKey(Policy, Prm, Question, K, Seed, Sampling);

    /// <summary>The settings that change what a sample is: temperature, step length, rounds.</summary>
    public static string SamplingOf(SearchOptions search) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"T={search.Temperature};step={search.MaxStepTokens};rounds={search.MaxRounds}");

    /// <summary>Fraction of correct samples.</summary>
    public double PassAt1 => Samples.Count == 0 ? 0 : Samples.Count(s => s.Correct) / (double)Samples.Count;

    /// <summary>Mean PRM final score (NaN without a PRM).</summary>
    public double MeanScore => Samples.Count == 0 ? double.NaN : Samples.Average(s => s.Score);

    /// <summary>Key of (policy, PRM, question, K, seed, sampling).</summary>
    public static string CacheKey(string policy, string prm, string question, int k, ulong seed, string? sampling) =>
        $"{policy}|{prm}|{k}|{seed}|{sampling}|{question}";
}

/// <summary>
/// Draws K samples per question with the policy (best-of-K on the engine: one prompt prefill shared by K forks) and
/// scores each with the PRM when there is one, cached in a JSONL file (one <see cref="OracleEntry"/> a line, appended).
/// </summary>
public sealed class OracleSampleCache
{
    readonly JsonlCache<OracleEntry> _cache;
    int _computed;

    /// <summary>Opens (or starts) the cache at <paramref name="path"/>; a bad line throws naming the file and line.</summary>
    public OracleSampleCache(string path) => _cache = new JsonlCache<OracleEntry>(path, e => e.Key, "an oracle sample entry");

    /// <summary>Entries in the cache.</summary>
    public int Count => _cache.Count;

    /// <summary>Entries computed (not found in the cache) since this object was opened.</summary>
    public int Computed => _computed;

    /// <summary>The entry of every question (cached or drawn now), in question order.</summary>
    public async Task<List<OracleEntry>> GetAsync(StudyModels models, IReadOnlyList<StudyQuestion> questions, int k, ulong seed,
        SearchOptions search, int concurrency, IProgress<StudyProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        string prm = models.VerifierFingerprint, sampling = OracleEntry.SamplingOf(search);
        var result = new OracleEntry?[questions.Count];
        var missing = new List<int>();
        for (int i = 0; i < questions.Count; i++)
            if (_cache.TryGet(OracleEntry.CacheKey(models.Policy.Fingerprint, prm, questions[i].Question, k, seed, sampling), out var e)) result[i] = e;
            else missing.Add(i);
        int done = questions.Count - missing.Count;
        progress?.Report(new StudyProgress("oracle samples", done, questions.Count));
        var selector = new AnswerSelector(!models.HasVerifier ? AnswerSelection.Majority : AnswerSelection.Weighted);
        await Parallel.ForEachAsync(missing, new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = cancellationToken },
            async (i, ct) =>
            {
                var q = questions[i];
                var entry = await DrawAsync(models, q, k, seed, search with { Selector = selector, Seed = SearchSeeds.Derive(seed, 1, i) }, ct).ConfigureAwait(false);
                _cache.Add(entry);
                Interlocked.Increment(ref _computed);
                result[i] = entry;
                progress?.Report(new StudyProgress("oracle samples", Interlocked.Increment(ref done), questions.Count));
            }).ConfigureAwait(false);
        return [.. result.Select(e => e!)];
    }

    /// <summary>Creates the cache file's folder.</summary>
    public void EnsureDirectory() => _cache.EnsureDirectory();

    static async Task<OracleEntry> DrawAsync(StudyModels models, StudyQuestion q, int k, ulong seed, SearchOptions search, CancellationToken ct)
    {
        using var engine = models.Engine(null, $"oracle {q.Id}", ct);
        var result = await new BestOfN(k, search).RunAsync(models.Search(engine), q.Question, ct).ConfigureAwait(false);
        var report = engine.Request.Report();
        long prmFlops = report.Models.Where(m => m.Model == models.PrmScheduled?.Name).Sum(m => m.Flops.Total);
        var samples = result.Candidates
            .Select(c => new OracleSample(c.Answer, q.IsCorrect(c.Answer), !models.HasVerifier ? double.NaN : c.Score)).ToList();
        return new OracleEntry(models.Policy.Fingerprint, models.VerifierFingerprint, q.Question, k, seed, samples,
            report.Flops.Total - prmFlops, prmFlops, OracleEntry.SamplingOf(search));
    }
}
