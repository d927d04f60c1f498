using Orleans;
using Orleans.Runtime;

namespace Ponder.Cluster;

/// <summary>
/// One job of a distributed sweep as it travels: everything a silo needs to rebuild the <c>StudyJob</c>, and the
/// record-cache key that names it (the coordinator's unit of exactly-once).
/// </summary>
/// <param name="Key">The job's record-cache key (models, sampling, configuration, budget, seed, question).</param>
/// <param name="Strategy">Strategy family (best-of-n, beam, lookahead, dvts, revisions).</param>
/// <param name="Params">Hyper-parameters ("M=sqrt", "P=2", "" for none).</param>
/// <param name="Selection">Answer selection (weighted, majority).</param>
/// <param name="Budget">Budget in generations.</param>
/// <param name="QuestionId">Question id (a batch holds one question's jobs).</param>
/// <param name="Question">Question text.</param>
/// <param name="Reference">Reference answer.</param>
/// <param name="Seed">Seed.</param>
[GenerateSerializer, Immutable]
public sealed record WireJob(string Key, string Strategy, string Params, string Selection, int Budget, string QuestionId, string Question, string Reference, ulong Seed);

/// <summary>What every silo must have to run a sweep's jobs: the same models (by fingerprint) and sampling settings.</summary>
/// <param name="Policy">Policy fingerprint.</param>
/// <param name="Verifier">Verifier fingerprint ("none" without one).</param>
/// <param name="Reviser">Revision model fingerprint ("none" without one).</param>
/// <param name="Temperature">Proposal temperature.</param>
/// <param name="MaxStepTokens">Longest step in tokens.</param>
/// <param name="MaxRounds">Most step rounds per solution.</param>
[GenerateSerializer, Immutable]
public sealed record SweepSettings(string Policy, string Verifier, string Reviser, float Temperature, int MaxStepTokens, int MaxRounds);

/// <summary>A sweep handed to the coordinator.</summary>
/// <param name="Name">The study's name (progress, messages).</param>
/// <param name="Settings">Models and sampling settings.</param>
/// <param name="Jobs">The jobs still wanted (the client's record cache holds the rest).</param>
[GenerateSerializer, Immutable]
public sealed record SweepSubmission(string Name, SweepSettings Settings, IReadOnlyList<WireJob> Jobs);

/// <summary>A silo asking for work: its address and the fingerprints of the models it loaded.</summary>
/// <param name="Silo">The silo's address (membership names it dead when it dies).</param>
/// <param name="Name">Its display name.</param>
/// <param name="Policy">Policy fingerprint.</param>
/// <param name="Verifier">Verifier fingerprint ("none").</param>
/// <param name="Reviser">Revision model fingerprint ("none").</param>
[GenerateSerializer, Immutable]
public sealed record SiloIdentity(SiloAddress Silo, string Name, string Policy, string Verifier, string Reviser);

/// <summary>A batch leased to one silo: one question's wanted jobs, in job order.</summary>
/// <param name="Sweep">The sweep's id.</param>
/// <param name="Batch">Lease id (the completion names it).</param>
/// <param name="Settings">The sweep's settings.</param>
/// <param name="Jobs">The jobs.</param>
[GenerateSerializer, Immutable]
public sealed record SweepLease(string Sweep, int Batch, SweepSettings Settings, IReadOnlyList<WireJob> Jobs);

/// <summary>A finished job: its key and its record as JSON (the record cache's own form).</summary>
/// <param name="Key">The job's key.</param>
/// <param name="Record">The <c>StudyRecord</c> as JSON.</param>
[GenerateSerializer, Immutable]
public sealed record WireRecord(string Key, string Record);

/// <summary>One silo's share of a sweep.</summary>
/// <param name="Name">Silo name.</param>
/// <param name="Jobs">Jobs it finished that entered the results.</param>
/// <param name="JobsPerSecond">Its throughput since its first lease.</param>
/// <param name="InFlight">Jobs leased to it now.</param>
/// <param name="Alive">Whether it still holds its leases (not dead in membership, heartbeat recent).</param>
[GenerateSerializer, Immutable]
public sealed record SiloShare(string Name, int Jobs, double JobsPerSecond, int InFlight, bool Alive);

/// <summary>Where a sweep stands.</summary>
/// <param name="Total">Jobs wanted.</param>
/// <param name="Done">Jobs with a record.</param>
/// <param name="InFlight">Jobs leased to a silo and not done.</param>
/// <param name="Records">Records in completion order from the index the caller asked from.</param>
/// <param name="Next">The index to ask from next time.</param>
/// <param name="Silos">Per-silo shares.</param>
/// <param name="Reassigned">Batches taken back from a silo that died or fell silent and handed out again.</param>
/// <param name="Warnings">Silos refused work (other models) and why.</param>
/// <param name="Failure">A job's failure (the sweep stops), or null.</param>
[GenerateSerializer, Immutable]
public sealed record SweepStatus(int Total, int Done, int InFlight, IReadOnlyList<WireRecord> Records, int Next, IReadOnlyList<SiloShare> Silos,
    int Reassigned, IReadOnlyList<string> Warnings, string? Failure);

/// <summary>
/// The coordinator of one sweep (key: the sweep id, a hash of its jobs' keys). It splits the wanted jobs into batches
/// (one question's jobs together, so the silo's prefix index serves the question's prompt and shared branches), leases
/// them to the silos that ask, takes back the leases of silos that die or stop heartbeating, keeps the first record of
/// every job (exactly once) and persists its progress, so a restarted coordinator or client resumes without
/// recomputing finished jobs.
/// </summary>
public interface ISweepCoordinator : IGrainWithStringKey
{
    /// <summary>
    /// Starts the sweep, or resumes it: records already persisted are kept, and the wanted jobs become the submission's
    /// (plus those done). A malformed submission (no jobs, a duplicate key, an unknown strategy, a budget the strategy
    /// cannot buy, bad settings) is refused with an <see cref="ArgumentException"/> naming the field.
    /// </summary>
    Task<SweepStatus> SubmitAsync(SweepSubmission submission);

    /// <summary>The next batch for <paramref name="silo"/>, or null (nothing pending, or the silo's models differ).</summary>
    Task<SweepLease?> LeaseAsync(SiloIdentity silo);

    /// <summary>Finished jobs of a lease (the lease ends when all its jobs are reported). Late or duplicate records are dropped.</summary>
    Task CompleteAsync(SiloIdentity silo, int batch, IReadOnlyList<WireRecord> records);

    /// <summary>A job of the lease failed on the silo: the sweep stops with <paramref name="error"/>.</summary>
    Task FailAsync(SiloIdentity silo, int batch, string error);

    /// <summary>The silo is alive and working on its leases.</summary>
    Task HeartbeatAsync(SiloIdentity silo);

    /// <summary>Progress, with the records finished since <paramref name="from"/> (an index into completion order).</summary>
    Task<SweepStatus> StatusAsync(int from);

    /// <summary>The client has every record: silos stop asking, and the activation goes (its state stays persisted).</summary>
    Task FinishAsync();

    /// <summary>The address of the silo this activation runs on (operators and tests: which silo holds the coordinator).</summary>
    Task<SiloAddress> HostAsync();
}

/// <summary>The sweeps silos should ask for work (key 0), persisted.</summary>
public interface ISweepDirectory : IGrainWithIntegerKey
{
    /// <summary>Sweep ids with work, oldest first.</summary>
    Task<IReadOnlyList<string>> ActiveAsync();
    /// <summary>Adds a sweep.</summary>
    Task AddAsync(string sweep);
    /// <summary>Removes a sweep.</summary>
    Task RemoveAsync(string sweep);
}
