using System.Text.Json;
using Orleans.Runtime;
using Ponder.Evaluation.Study;
using Ponder.Search;

namespace Ponder.Cluster;

/// <summary>
/// What one silo runs on: its models, loaded once, and their one scheduler. Sweep jobs run through the study's job loop
/// on these models; <see cref="JobsRun"/> counts them (a restarted coordinator must not make a silo recompute).
/// </summary>
public sealed class SiloEngine : IDisposable
{
    int _jobsRun;
    readonly SemaphoreSlim _gate = new(1, 1);
    string? _sweep;
    int _running;

    /// <summary>An engine over loaded models (owned: disposed with it).</summary>
    /// <param name="models">The policy, verifier and revision model.</param>
    /// <param name="name">The silo's display name in progress and warnings.</param>
    public SiloEngine(StudyModels models, string name)
    {
        ArgumentNullException.ThrowIfNull(models);
        ArgumentException.ThrowIfNullOrEmpty(name);
        Models = models;
        Name = name;
    }

    /// <summary>The models.</summary>
    public StudyModels Models { get; }
    /// <summary>The silo's display name.</summary>
    public string Name { get; }
    /// <summary>Sweep jobs this silo has run (finished or not).</summary>
    public int JobsRun => Volatile.Read(ref _jobsRun);

    /// <summary>This silo as a coordinator sees it.</summary>
    public SiloIdentity Identity(SiloAddress address) =>
        new(address, Name, Models.Policy.Fingerprint, Models.VerifierFingerprint, Models.Reviser?.Fingerprint ?? "none");

    /// <summary>
    /// Runs a leased batch with the study's job loop (its jobs one after another on this silo's models) and hands each
    /// record on as it finishes. A job whose key does not match what this silo would compute (other models or settings)
    /// fails before it runs. The first batch of another sweep waits for this silo's running batches, then starts from a
    /// cold prefix cache, as a single-machine sweep does: a question's batch never finds blocks an earlier sweep left.
    /// </summary>
    public async Task RunBatchAsync(SweepLease lease, Action<WireRecord> done, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lease);
        await EnterAsync(lease.Sweep, cancellationToken).ConfigureAwait(false);
        try { await RunAsync(lease, done, cancellationToken).ConfigureAwait(false); }
        finally
        {
            await _gate.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            _running--;
            _gate.Release();
        }
    }

    async Task EnterAsync(string sweep, CancellationToken cancellationToken)
    {
        while (true)
        {
            await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (_sweep == sweep || _running == 0)
                {
                    if (_sweep != sweep) Models.ColdCache();
                    _sweep = sweep;
                    _running++;
                    return;
                }
            }
            finally { _gate.Release(); }
            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
    }

    Task RunAsync(SweepLease lease, Action<WireRecord> done, CancellationToken cancellationToken)
    {
        var s = lease.Settings;
        var search = StudyJobs.Search(s.Temperature, s.MaxStepTokens, s.MaxRounds);
        var jobs = lease.Jobs.Select(ToStudyJob).ToList();
        for (int i = 0; i < jobs.Count; i++)
        {
            string key = StudyJobs.Key(jobs[i], Models, search);
            if (key != lease.Jobs[i].Key)
                throw new InvalidOperationException($"job {jobs[i].Name}: this silo would compute key '{key}', the sweep wants '{lease.Jobs[i].Key}' (other models or settings)");
        }
        var loop = StudyJobLoop.OnModels(Models, search);
        return loop.RunAsync(jobs, [new StudyJobBatch(jobs[0].Question.Id, [.. Enumerable.Range(0, jobs.Count)])], 1, (i, record) =>
        {
            Interlocked.Increment(ref _jobsRun);
            done(new WireRecord(lease.Jobs[i].Key, RecordJson.Write(record)));
        }, cancellationToken);
    }

    /// <summary>A job as it travels.</summary>
    public static WireJob ToWire(StudyJob job, string key) =>
        new(key, job.Spec.Name, job.Spec.Params, job.Spec.Selection.ToString().ToLowerInvariant(), job.Spec.Budget, job.Question.Id,
            job.Question.Question, job.Question.Reference, job.Seed);

    /// <summary>The job a wire job describes.</summary>
    public static StudyJob ToStudyJob(WireJob job)
    {
        ArgumentNullException.ThrowIfNull(job);
        var selection = Enum.Parse<AnswerSelection>(job.Selection, ignoreCase: true);
        return new StudyJob(StrategySpec.Parse(job.Strategy, job.Params, job.Budget) with { Selection = selection },
            new StudyQuestion(job.QuestionId, job.Question, job.Reference), job.Seed);
    }

    /// <summary>Disposes the models.</summary>
    public void Dispose()
    {
        Models.Dispose();
        _gate.Dispose();
    }
}

/// <summary>Study records as JSON on the wire: the form the record cache stores, so a record round-trips exactly.</summary>
public static class RecordJson
{
    /// <summary>The record as JSON.</summary>
    public static string Write(StudyRecord record) => JsonSerializer.Serialize(record, Options);

    // As the record cache writes them: NaN and infinities survive.
    static readonly JsonSerializerOptions Options = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>The record from JSON; a malformed one names the job key.</summary>
    public static StudyRecord Read(WireRecord wire)
    {
        ArgumentNullException.ThrowIfNull(wire);
        try { return JsonSerializer.Deserialize<StudyRecord>(wire.Record, Options) ?? throw new JsonException("null"); }
        catch (JsonException e) { throw new InvalidDataException($"the record of job '{wire.Key}' is not a study record: {e.Message}", e); }
    }
}
