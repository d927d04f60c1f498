using System.Text;
using System.Text.Json;
using Ponder.Search;

namespace Ponder.Evaluation.Study;

/// <summary>One sampled solution of the difficulty estimate.</summary>
/// <param name="Answer">Extracted final answer (null when none).</param>
/// <param name="Correct">Graded against the reference.</param>
/// <param name="Score">PRM final-step score (NaN without a PRM).</param>
public sealed record OracleSample(string? Answer, bool Correct, double Score);

/// <summary>
/// K samples of one question, as cached: the key is (policy, PRM, question, K, seed), so a sweep with other strategies
/// or budgets reuses them and other weights never do.
/// </summary>
/// <param name="Policy">Policy fingerprint.</param>
/// <param name="Prm">PRM fingerprint, or "none".</param>
/// <param name="Question">Question text.</param>
/// <param name="K">Samples.</param>
/// <param name="Seed">Seed.</param>
/// <param name="Samples">The samples.</param>
/// <param name="PolicyFlops">Exact policy FLOPs spent drawing them (oracle cost).</param>
/// <param name="PrmFlops">Exact PRM FLOPs spent scoring them (the predicted-difficulty cost).</param>
public sealed record OracleEntry(string Policy, string Prm, string Question, int K, ulong Seed, IReadOnlyList<OracleSample> Samples,
    long PolicyFlops, long PrmFlops)
{
    /// <summary>The cache key.</summary>
    public string Key => CacheKey(Policy, Prm, Question, K, Seed);

    /// <summary>Fraction of correct samples.</summary>
    public double PassAt1 => Samples.Count == 0 ? 0 : Samples.Count(s => s.Correct) / (double)Samples.Count;

    /// <summary>Mean PRM final score (NaN without a PRM).</summary>
    public double MeanScore => Samples.Count == 0 ? double.NaN : Samples.Average(s => s.Score);

    /// <summary>Key of (policy, PRM, question, K, seed).</summary>
    public static string CacheKey(string policy, string prm, string question, int k, ulong seed) => $"{policy}|{prm}|{k}|{seed}|{question}";
}

/// <summary>
/// Draws K samples per question with the policy (best-of-K on the engine: one prompt prefill shared by K forks) and
/// scores each with the PRM when there is one, cached in a JSONL file (one <see cref="OracleEntry"/> a line, appended).
/// </summary>
public sealed class OracleSampleCache
{
    readonly string _path;
    readonly Dictionary<string, OracleEntry> _entries = new(StringComparer.Ordinal);
    readonly Lock _sync = new();

    /// <summary>Opens (or starts) the cache at <paramref name="path"/>; a bad line throws naming the file and line.</summary>
    public OracleSampleCache(string path)
    {
        _path = path;
        if (!File.Exists(path)) return;
        int line = 0;
        foreach (var text in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            try
            {
                var e = JsonSerializer.Deserialize<OracleEntry>(text, JsonOptions) ?? throw new JsonException("null entry");
                _entries[e.Key] = e;
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}:{line}: not an oracle sample entry ({e.Message})", e);
            }
        }
    }

    /// <summary>Entries in the cache.</summary>
    public int Count { get { lock (_sync) return _entries.Count; } }

    /// <summary>Entries computed (not found in the cache) since this object was opened.</summary>
    public int Computed { get; private set; }

    /// <summary>The entry of every question (cached or drawn now), in question order.</summary>
    public async Task<List<OracleEntry>> GetAsync(StudyModels models, IReadOnlyList<StudyQuestion> questions, int k, ulong seed,
        SearchOptions search, int concurrency, IProgress<StudyProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        string prm = models.Prm?.Fingerprint ?? "none";
        var result = new OracleEntry?[questions.Count];
        var missing = new List<int>();
        lock (_sync)
        {
            for (int i = 0; i < questions.Count; i++)
                if (_entries.TryGetValue(OracleEntry.CacheKey(models.Policy.Fingerprint, prm, questions[i].Question, k, seed), out var e)) result[i] = e;
                else missing.Add(i);
        }
        int done = questions.Count - missing.Count;
        progress?.Report(new StudyProgress("oracle samples", done, questions.Count));
        var selector = new AnswerSelector(models.Prm is null ? AnswerSelection.Majority : AnswerSelection.Weighted);
        await Parallel.ForEachAsync(missing, new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = cancellationToken },
            async (i, ct) =>
            {
                var q = questions[i];
                var entry = await DrawAsync(models, q, k, seed, search with { Selector = selector, Seed = SearchSeeds.Derive(seed, 1, i) }, ct).ConfigureAwait(false);
                lock (_sync)
                {
                    _entries[entry.Key] = entry;
                    File.AppendAllText(_path, JsonSerializer.Serialize(entry, JsonOptions) + "\n", Encoding.UTF8);
                    Computed++;
                    result[i] = entry;
                }
                progress?.Report(new StudyProgress("oracle samples", Interlocked.Increment(ref done), questions.Count));
            }).ConfigureAwait(false);
        return [.. result.Select(e => e!)];
    }

    /// <summary>Creates the cache file's folder.</summary>
    public void EnsureDirectory()
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(_path));
        if (dir is not null) Directory.CreateDirectory(dir);
    }

    static async Task<OracleEntry> DrawAsync(StudyModels models, StudyQuestion q, int k, ulong seed, SearchOptions search, CancellationToken ct)
    {
        using var engine = models.Engine(null, $"oracle {q.Id}", ct);
        var result = await new BestOfN(k, search).RunAsync(engine, q.Question, ct).ConfigureAwait(false);
        var report = engine.Request.Report();
        long prmFlops = report.Models.Where(m => m.Model == models.PrmScheduled?.Name).Sum(m => m.Flops.Total);
        var samples = result.Candidates
            .Select(c => new OracleSample(c.Answer, q.IsCorrect(c.Answer), models.Prm is null ? double.NaN : c.Score)).ToList();
        return new OracleEntry(models.Policy.Fingerprint, models.Prm?.Fingerprint ?? "none", q.Question, k, seed, samples,
            report.Flops.Total - prmFlops, prmFlops);
    }

    static readonly JsonSerializerOptions JsonOptions = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
}
