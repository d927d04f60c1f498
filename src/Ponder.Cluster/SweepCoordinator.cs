using Microsoft.Extensions.Options;
using Orleans;
using Orleans.Runtime;
using Ponder.Search;

namespace Ponder.Cluster;

/// <summary>How the coordinator decides a silo is gone.</summary>
public sealed class SweepCoordinatorOptions
{
    /// <summary>A silo silent (no lease, record or heartbeat) this long loses its leases to others. Membership's verdict "dead" takes them at once.</summary>
    public TimeSpan LeaseTimeout { get; set; } = TimeSpan.FromSeconds(30);
}

/// <summary>A sweep's persisted progress: the wanted jobs and the records finished so far, in completion order.</summary>
[GenerateSerializer]
public sealed class SweepState
{
    /// <summary>The study's name.</summary>
    [Id(0)] public string Name { get; set; } = "";
    /// <summary>Models and sampling settings (null before the first submission).</summary>
    [Id(1)] public SweepSettings? Settings { get; set; }
    /// <summary>The jobs wanted, in job order.</summary>
    [Id(2)] public List<WireJob> Jobs { get; set; } = [];
    /// <summary>Finished records, one per key, in completion order.</summary>
    [Id(3)] public List<WireRecord> Records { get; set; } = [];
}

/// <summary>The <see cref="ISweepCoordinator"/> grain: batches, leases, reassignment, exactly-once records, persisted progress.</summary>
public sealed class SweepCoordinatorGrain(
    [PersistentState("sweep", PonderCluster.Storage)] IPersistentState<SweepState> state,
    IClusterMembershipService membership, IOptions<SweepCoordinatorOptions> options, IGrainFactory grains, ILocalSiloDetails local) : Grain, ISweepCoordinator
{
    sealed record Lease(SiloIdentity Silo, List<WireJob> Jobs);

    sealed class SiloTrack(SiloIdentity silo, DateTime now)
    {
        public SiloIdentity Silo = silo;
        public DateTime FirstLease = now, LastSeen = now;
        public int Jobs;
        public bool Alive = true;
    }

    readonly HashSet<string> _done = new(StringComparer.Ordinal);
    // The wanted jobs' keys and how many of them are done: each record costs O(1) and O(pending batches), not O(jobs).
    readonly HashSet<string> _wanted = new(StringComparer.Ordinal);
    int _wantedDone;
    readonly LinkedList<List<WireJob>> _pending = new();
    readonly Dictionary<int, Lease> _leases = [];
    readonly Dictionary<SiloAddress, SiloTrack> _silos = [];
    readonly Dictionary<SiloAddress, string> _warnings = [];
    int _nextBatch, _reassigned;
    string? _failure;

    /// <inheritdoc />
    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        // A reactivation (after a crash, a silo's death or FinishAsync) starts from what was persisted: every wanted job
        // without a record is pending again; leases of the previous activation are forgotten (their records still count if they come).
        foreach (var r in state.State.Records) _done.Add(r.Key);
        Want(state.State.Jobs);
        Requeue(state.State.Jobs);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        // A graceful deactivation keeps records of batches still in flight too (a crash loses at most those).
        if (state.State.Settings is not null) await state.WriteStateAsync(cancellationToken);
    }

    /// <inheritdoc />
    public async Task<SweepStatus> SubmitAsync(SweepSubmission submission)
    {
        Validate(submission);
        if (state.State.Settings is { } settings && settings != submission.Settings)
            throw new ArgumentException($"sweep '{this.GetPrimaryKeyString()}' runs with {settings}; the submission asks for {submission.Settings}", "settings");
        // The wanted jobs are the submission's (the client's cache holds the others); records already here stay and count.
        var wanted = submission.Jobs.ToList();
        bool changed = state.State.Settings is null || wanted.Count != state.State.Jobs.Count || !wanted.Select(j => j.Key).SequenceEqual(state.State.Jobs.Select(j => j.Key));
        state.State.Name = submission.Name;
        state.State.Settings = submission.Settings;
        state.State.Jobs = wanted;
        Want(wanted);
        _pending.Clear();
        var leased = _leases.Values.SelectMany(l => l.Jobs).Select(j => j.Key).ToHashSet(StringComparer.Ordinal);
        Requeue(wanted.Where(j => !leased.Contains(j.Key)));
        _failure = null;
        if (changed) await state.WriteStateAsync();
        if (!IsDone) await grains.GetGrain<ISweepDirectory>(0).AddAsync(this.GetPrimaryKeyString());
        return Status(0);
    }

    /// <inheritdoc />
    public Task<SweepLease?> LeaseAsync(SiloIdentity silo)
    {
        Seen(silo);
        Expire();
        if (_failure is not null || state.State.Settings is not { } settings || _pending.Count == 0) return Task.FromResult<SweepLease?>(null);
        if (Mismatch(silo, settings) is { } why)
        {
            _warnings[silo.Silo] = $"silo {silo.Name} gets no work: {why}";
            return Task.FromResult<SweepLease?>(null);
        }
        var jobs = _pending.First!.Value;
        _pending.RemoveFirst();
        int batch = ++_nextBatch;
        _leases[batch] = new Lease(silo, jobs);
        return Task.FromResult<SweepLease?>(new SweepLease(this.GetPrimaryKeyString(), batch, settings, [.. jobs]));
    }

    /// <inheritdoc />
    public async Task CompleteAsync(SiloIdentity silo, int batch, IReadOnlyList<WireRecord> records)
    {
        var track = Seen(silo);
        bool persist = false;
        foreach (var record in records)
        {
            // Exactly once: the first record of a wanted job counts; a reassigned batch's twin is dropped.
            if (!_wanted.Contains(record.Key) || !_done.Add(record.Key)) continue;
            state.State.Records.Add(record);
            _wantedDone++;
            track.Jobs++;
        }
        RemoveDonePending();
        if (_leases.TryGetValue(batch, out var lease) && lease.Silo.Silo == silo.Silo)
        {
            if (lease.Jobs.All(j => _done.Contains(j.Key))) { _leases.Remove(batch); persist = true; }
        }
        else persist = true; // a lease of a previous activation or a reassigned one: persist what it brought
        // Progress is persisted per finished batch (one question's jobs), so a restart recomputes at most the batches in flight.
        if (persist || IsDone) await state.WriteStateAsync();
        if (IsDone) await grains.GetGrain<ISweepDirectory>(0).RemoveAsync(this.GetPrimaryKeyString());
    }

    /// <inheritdoc />
    public Task FailAsync(SiloIdentity silo, int batch, string error)
    {
        Seen(silo);
        _failure ??= $"silo {silo.Name}: {error}";
        if (_leases.Remove(batch, out var lease)) Reassign(lease);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task HeartbeatAsync(SiloIdentity silo)
    {
        Seen(silo);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<SweepStatus> StatusAsync(int from)
    {
        Expire();
        return Task.FromResult(Status(from));
    }

    /// <inheritdoc />
    public async Task FinishAsync()
    {
        await grains.GetGrain<ISweepDirectory>(0).RemoveAsync(this.GetPrimaryKeyString());
        DeactivateOnIdle();
    }

    /// <inheritdoc />
    public Task<SiloAddress> HostAsync() => Task.FromResult(local.SiloAddress);

    bool IsDone => _wanted.Count > 0 && _wantedDone == _wanted.Count;

    void Want(IEnumerable<WireJob> jobs)
    {
        _wanted.Clear();
        foreach (var j in jobs) _wanted.Add(j.Key);
        _wantedDone = _wanted.Count(_done.Contains);
    }

    SweepStatus Status(int from)
    {
        from = Math.Clamp(from, 0, state.State.Records.Count);
        var now = DateTime.UtcNow;
        var inFlight = _leases.Values.GroupBy(l => l.Silo.Silo).ToDictionary(g => g.Key, g => g.Sum(l => l.Jobs.Count(j => !_done.Contains(j.Key))));
        var shares = _silos.Values.OrderBy(t => t.Silo.Name, StringComparer.Ordinal).Select(t => new SiloShare(t.Silo.Name, t.Jobs,
            t.Jobs / Math.Max(1e-3, ((t.Alive ? now : t.LastSeen) - t.FirstLease).TotalSeconds), inFlight.GetValueOrDefault(t.Silo.Silo), t.Alive)).ToList();
        return new SweepStatus(_wanted.Count, _wantedDone, inFlight.Values.Sum(),
            state.State.Records.Skip(from).ToList(), state.State.Records.Count, shares, _reassigned, [.. _warnings.Values], _failure);
    }

    SiloTrack Seen(SiloIdentity silo)
    {
        var now = DateTime.UtcNow;
        if (!_silos.TryGetValue(silo.Silo, out var track)) _silos[silo.Silo] = track = new SiloTrack(silo, now);
        track.LastSeen = now;
        track.Alive = true;
        return track;
    }

    /// <summary>Takes the leases of silos membership declared dead, or that fell silent past the lease timeout, and queues them first.</summary>
    void Expire()
    {
        var now = DateTime.UtcNow;
        var snapshot = membership.CurrentSnapshot;
        foreach (var (batch, lease) in _leases.ToList())
        {
            var track = _silos[lease.Silo.Silo];
            bool dead = snapshot.GetSiloStatus(lease.Silo.Silo) == SiloStatus.Dead;
            if (!dead && now - track.LastSeen <= options.Value.LeaseTimeout) continue;
            track.Alive = false;
            _leases.Remove(batch);
            Reassign(lease);
            _reassigned++;
        }
    }

    /// <summary>Queues the jobs without a record as batches, one per question in order of first appearance.</summary>
    void Requeue(IEnumerable<WireJob> jobs)
    {
        foreach (var batch in jobs.Where(j => !_done.Contains(j.Key)).GroupBy(j => j.QuestionId, StringComparer.Ordinal)) _pending.AddLast(batch.ToList());
    }

    void RemoveDonePending()
    {
        for (var node = _pending.First; node is not null;)
        {
            var next = node.Next;
            if (_done.Contains(node.Value[^1].Key) && node.Value.All(j => _done.Contains(j.Key))) _pending.Remove(node);
            node = next;
        }
    }

    /// <summary>
    /// Queues a lease taken back whole, its finished jobs too: the next silo reruns the question's batch from its first
    /// job, so every job meets the prefix-cache state it would have met on one machine (the reruns' records are dropped).
    /// </summary>
    void Reassign(Lease lease)
    {
        if (lease.Jobs.Any(j => !_done.Contains(j.Key))) _pending.AddFirst(lease.Jobs);
    }

    static string? Mismatch(SiloIdentity silo, SweepSettings settings) =>
        silo.Policy != settings.Policy ? $"its policy is {silo.Policy}, the sweep's {settings.Policy}"
        : silo.Verifier != settings.Verifier ? $"its verifier is {silo.Verifier}, the sweep's {settings.Verifier}"
        : settings.Reviser != "none" && silo.Reviser != settings.Reviser ? $"its revision model is {silo.Reviser}, the sweep's {settings.Reviser}"
        : null;

    /// <summary>Refuses a malformed submission, naming the field.</summary>
    internal static void Validate(SweepSubmission submission)
    {
        ArgumentNullException.ThrowIfNull(submission);
        var s = submission.Settings ?? throw new ArgumentException("the sweep has no settings", "settings");
        if (string.IsNullOrWhiteSpace(s.Policy)) throw new ArgumentException("settings.policy: the policy fingerprint is empty", "settings.policy");
        if (string.IsNullOrWhiteSpace(s.Verifier)) throw new ArgumentException("settings.verifier: the verifier fingerprint is empty (\"none\" for no verifier)", "settings.verifier");
        if (!float.IsFinite(s.Temperature) || s.Temperature < 0) throw new ArgumentException($"settings.temperature must be finite and >= 0, got {s.Temperature}", "settings.temperature");
        if (s.MaxStepTokens < 1) throw new ArgumentException($"settings.maxStepTokens must be >= 1, got {s.MaxStepTokens}", "settings.maxStepTokens");
        if (s.MaxRounds < 1) throw new ArgumentException($"settings.maxRounds must be >= 1, got {s.MaxRounds}", "settings.maxRounds");
        if (submission.Jobs is not { Count: > 0 }) throw new ArgumentException($"sweep '{submission.Name}' has no jobs", "jobs");
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < submission.Jobs.Count; i++)
        {
            var job = submission.Jobs[i] ?? throw new ArgumentException($"jobs[{i}] is null", $"jobs[{i}]");
            if (string.IsNullOrEmpty(job.Key)) throw new ArgumentException($"jobs[{i}].key is empty", $"jobs[{i}].key");
            if (!seen.TryAdd(job.Key, i)) throw new ArgumentException($"jobs[{i}].key repeats jobs[{seen[job.Key]}].key '{job.Key}'", $"jobs[{i}].key");
            if (string.IsNullOrEmpty(job.QuestionId) || string.IsNullOrEmpty(job.Question))
                throw new ArgumentException($"jobs[{i}] ({job.Key}) has no question", $"jobs[{i}].question");
            if (!Enum.TryParse<AnswerSelection>(job.Selection, ignoreCase: true, out _))
                throw new ArgumentException($"jobs[{i}].selection '{job.Selection}' is not one of {string.Join(", ", Enum.GetNames<AnswerSelection>())}", $"jobs[{i}].selection");
            if (job.Strategy == "revisions" && s.Reviser == "none")
                throw new ArgumentException($"jobs[{i}] is a revisions run, but settings.reviser is \"none\"", $"jobs[{i}].strategy");
            try { StrategySpec.Parse(job.Strategy, job.Params, job.Budget).Create(); }
            catch (ArgumentException e) { throw new ArgumentException($"jobs[{i}].strategy: {e.Message}", $"jobs[{i}].strategy"); }
        }
    }
}

/// <summary>The <see cref="ISweepDirectory"/> grain.</summary>
public sealed class SweepDirectoryGrain([PersistentState("sweeps", PonderCluster.Storage)] IPersistentState<List<string>> state) : Grain, ISweepDirectory
{
    /// <inheritdoc />
    public Task<IReadOnlyList<string>> ActiveAsync() => Task.FromResult<IReadOnlyList<string>>([.. state.State]);

    /// <inheritdoc />
    public async Task AddAsync(string sweep)
    {
        if (state.State.Contains(sweep)) return;
        state.State.Add(sweep);
        await state.WriteStateAsync();
    }

    /// <inheritdoc />
    public async Task RemoveAsync(string sweep)
    {
        if (state.State.Remove(sweep)) await state.WriteStateAsync();
    }
}
