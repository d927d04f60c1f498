using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Orleans;
using Ponder.Evaluation.Study;

namespace Ponder.Cluster;

/// <summary>
/// Runs a study's sweep on a cluster: submits the wanted jobs to the sweep's coordinator grain (id: a hash of every job
/// key of the sweep, so a rerun of the same study finds the same coordinator and its persisted progress), then polls it,
/// handing each new record to the study (which adds it to the record cache) and reporting done / in flight / per-silo
/// throughput. Used by <c>ponder sweep --cluster</c>.
/// </summary>
public sealed class ClusterSweepExecutor(IGrainFactory grains, TimeSpan? pollInterval = null, TimeSpan? unreachableTimeout = null) : IStudySweepExecutor
{
    readonly TimeSpan _poll = pollInterval ?? TimeSpan.FromMilliseconds(250);
    // How long the coordinator may stay out of reach (its silo died and it is moving, the gateway went) before the sweep fails.
    readonly TimeSpan _unreachable = unreachableTimeout ?? TimeSpan.FromSeconds(60);

    /// <summary>The last status seen (null before the first).</summary>
    public SweepStatus? LastStatus { get; private set; }

    /// <summary>Called once the sweep is submitted: its id and the silo its coordinator runs on.</summary>
    public Action<string, Orleans.Runtime.SiloAddress>? Submitted { get; init; }

    /// <summary>The coordinator id of a sweep: "sweep-" and 16 hex digits of SHA-256 over its jobs' keys.</summary>
    public static string SweepId(IEnumerable<string> keys)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (string k in keys) { sha.AppendData(Encoding.UTF8.GetBytes(k)); sha.AppendData([0]); }
        return "sweep-" + Convert.ToHexStringLower(sha.GetHashAndReset())[..16];
    }

    /// <summary>The submission of <paramref name="indices"/> of <paramref name="sweep"/>.</summary>
    public static SweepSubmission Submission(StudySweep sweep, IReadOnlyList<int> indices)
    {
        ArgumentNullException.ThrowIfNull(sweep);
        var m = sweep.Models;
        var settings = new SweepSettings(m.Policy.Fingerprint, m.VerifierFingerprint, m.Reviser?.Fingerprint ?? "none",
            sweep.Search.Temperature, sweep.Search.MaxStepTokens, sweep.Search.MaxRounds);
        return new SweepSubmission(sweep.Name, settings, [.. indices.Select(i => SiloEngine.ToWire(sweep.Jobs[i], sweep.Keys[i]))]);
    }

    /// <inheritdoc />
    public async Task RunAsync(StudySweep sweep, IReadOnlyList<int> indices, Action<int, StudyRecord> done, int alreadyDone,
        IProgress<StudyProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(sweep);
        ArgumentNullException.ThrowIfNull(done);
        var coordinator = grains.GetGrain<ISweepCoordinator>(SweepId(sweep.Keys));
        var wanted = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (int i in indices) wanted[sweep.Keys[i]] = i;
        var submission = Submission(sweep, indices);
        await RetryAsync(() => coordinator.SubmitAsync(submission), cancellationToken);
        if (Submitted is { } submitted) submitted(coordinator.GetPrimaryKeyString(), await RetryAsync(coordinator.HostAsync, cancellationToken));
        var received = new HashSet<int>();
        int next = 0;
        while (true)
        {
            int from = next;
            var status = await RetryAsync(() => coordinator.StatusAsync(from), cancellationToken);
            LastStatus = status;
            next = status.Next;
            foreach (var wire in status.Records)
                if (wanted.TryGetValue(wire.Key, out int i) && received.Add(i)) done(i, RecordJson.Read(wire));
            progress?.Report(new StudyProgress("sweep", alreadyDone + received.Count, sweep.Jobs.Count, Describe(status)));
            if (status.Failure is not null) throw new InvalidOperationException($"cluster sweep '{sweep.Name}' failed: {status.Failure}");
            if (received.Count == wanted.Count) break;
            await Task.Delay(_poll, cancellationToken);
        }
        await RetryAsync(async () => { await coordinator.FinishAsync(); return true; }, cancellationToken);
    }

    /// <summary>
    /// A coordinator call, retried while the cluster is in transition (a silo or gateway died, the grain is moving); a
    /// refusal (<see cref="ArgumentException"/>) or a sweep failure is final.
    /// </summary>
    async Task<T> RetryAsync<T>(Func<Task<T>> call, CancellationToken cancellationToken)
    {
        var since = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            try { return await call().WaitAsync(cancellationToken); }
            catch (Exception e) when (e is not (ArgumentException or InvalidOperationException or OperationCanceledException) && since.Elapsed < _unreachable)
            {
                await Task.Delay(_poll, cancellationToken);
            }
        }
    }

    /// <summary>"3 in flight, 1 reassigned; silo-a 2.1/s, silo-b 1.9/s (gone)": what the progress bar shows beside the count.</summary>
    public static string Describe(SweepStatus status)
    {
        ArgumentNullException.ThrowIfNull(status);
        var text = new StringBuilder(string.Create(CultureInfo.InvariantCulture, $"{status.InFlight} in flight"));
        if (status.Reassigned > 0) text.Append(CultureInfo.InvariantCulture, $", {status.Reassigned} reassigned");
        if (status.Silos.Count == 0) text.Append("; no silo has asked for work yet");
        else text.Append("; ").AppendJoin(", ", status.Silos.Select(s => string.Create(CultureInfo.InvariantCulture,
            $"{s.Name} {s.JobsPerSecond:0.00}/s{(s.Alive ? "" : " (gone)")}")));
        foreach (string w in status.Warnings) text.Append("; ").Append(w);
        return text.ToString();
    }
}
