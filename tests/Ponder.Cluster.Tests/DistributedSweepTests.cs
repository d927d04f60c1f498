using Orleans.TestingHost;
using Ponder.Evaluation.Study;

namespace Ponder.Cluster.Tests;

/// <summary>
/// Distributed sweeps on an in-process cluster of 3 silos with tiny random models: the records equal a single-machine
/// run of the same config and seeds, a silo killed mid-sweep loses nothing and duplicates nothing, a restarted
/// coordinator resumes from persisted progress without recomputing, and a malformed sweep is refused by field.
/// </summary>
[Collection("cluster")]
public sealed class DistributedSweepTests(ClusterFixture fixture, Xunit.Abstractions.ITestOutputHelper output) : IAsyncLifetime
{
    readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    void Mark(string what) => output.WriteLine($"{_clock.Elapsed.TotalSeconds:0.00} s {what}");

    readonly string _dir = Directory.CreateTempSubdirectory("ponder-cluster-").FullName;
    readonly TestCluster _cluster = fixture.Cluster;

    public Task InitializeAsync() => fixture.RestoreAsync();

    public Task DisposeAsync()
    {
        Directory.Delete(_dir, recursive: true);
        return Task.CompletedTask;
    }

    int JobsRun() => fixture.JobsRun();

    /// <summary>The single-machine reference: the same sweep through the same job loop on fresh models in this process.</summary>
    async Task<StudyRecord[]> LocalAsync(StudyConfig config)
    {
        using var models = TinyStudy.Models();
        return await TinyStudy.RunAsync(new LocalSweepExecutor(), TinyStudy.Sweep(config, models, _dir));
    }

    [Fact]
    public async Task A_cluster_study_writes_the_same_records_as_a_single_machine_study()
    {
        var config = TinyStudy.Config(_dir);
        int before = JobsRun();
        StudyResult local, distributed;
        using (var models = TinyStudy.Models())
            local = await StudyRunner.RunAsync(config with { RecordCache = Path.Combine(_dir, "local.jsonl") }, models, _dir);
        // The client loads its own models (oracle samples, fingerprints); the sweep runs on the silos.
        using (var models = TinyStudy.Models())
        {
            var executor = new ClusterSweepExecutor(_cluster.Client, TimeSpan.FromMilliseconds(50));
            distributed = await StudyRunner.RunAsync(config with { RecordCache = Path.Combine(_dir, "cluster.jsonl") }, models, _dir, executor: executor);
            Assert.Equal(0, distributed.OracleComputed); // read from the cache the local run wrote
            Assert.Equal(local.Records.Count, executor.LastStatus!.Done);
            Assert.Equal(local.Records.Count, executor.LastStatus.Silos.Sum(s => s.Jobs));

            // A rerun takes every record from the cluster run's record cache: nothing is submitted.
            int run = JobsRun();
            var again = await StudyRunner.RunAsync(config with { RecordCache = Path.Combine(_dir, "cluster.jsonl") }, models, _dir, executor: executor);
            Assert.Equal(0, again.RecordsComputed);
            Assert.Equal(run, JobsRun());
        }
        Assert.Equal(3 * 3 * 6, local.Records.Count);
        Assert.Equal(local.Records.Count, distributed.RecordsComputed);
        // Every field, FLOPs and reused tokens included: each question's batch meets the prefix-cache state it met on one machine.
        Assert.Equal(local.Records, distributed.Records);
        Assert.Equal(local.Records.Count, JobsRun() - before); // no job ran twice
        Assert.Equal(local.Efficiency, distributed.Efficiency);
    }

    [Fact]
    public async Task Killing_a_silo_mid_sweep_still_yields_every_job_exactly_once()
    {
        var config = TinyStudy.Config(_dir, questions: 8);
        Mark("restored");
        var reference = await LocalAsync(config);
        Mark("reference");
        using var models = TinyStudy.Models();
        var sweep = TinyStudy.Sweep(config, models, _dir);
        var executor = new ClusterSweepExecutor(_cluster.Client, TimeSpan.FromMilliseconds(50));
        var run = TinyStudy.RunAsync(executor, sweep);

        // Kill a silo while it holds a lease (not the primary, not the coordinator's host).
        var coordinator = _cluster.Client.GetGrain<ISweepCoordinator>(ClusterSweepExecutor.SweepId(sweep.Keys));
        var host = await coordinator.HostAsync();
        string? killed = null;
        while (killed is null && !run.IsCompleted)
        {
            var status = await coordinator.StatusAsync(int.MaxValue);
            foreach (var silo in _cluster.SecondarySilos.Where(s => !s.SiloAddress.Equals(host)))
            {
                string name = _cluster.Engine(silo).Name;
                if (status.Done > 0 && status.Silos.Any(s => s.Name == name && s.InFlight > 0))
                {
                    killed = name;
                    await _cluster.KillSiloAsync(silo);
                    break;
                }
            }
            if (killed is null) await Task.Delay(10);
        }
        Assert.NotNull(killed);
        Mark("killed");
        var records = await run;
        Mark("done");

        Assert.True(executor.LastStatus!.Reassigned >= 1, "the dead silo's batch was handed out again");
        Assert.Contains(executor.LastStatus.Silos, s => s.Name == killed && !s.Alive);
        Assert.Equal(sweep.Jobs.Count, executor.LastStatus.Done);
        Assert.Equal(sweep.Jobs.Count, executor.LastStatus.Silos.Sum(s => s.Jobs)); // each job's record counted once
        // The reassigned batch was rerun from its first job on a fresh silo, so even FLOPs match one machine.
        Assert.Equal(reference, records);
    }

    [Fact]
    public async Task A_restarted_coordinator_and_client_resume_without_recomputing_finished_jobs()
    {
        var config = TinyStudy.Config(_dir, questions: 5);
        using var models = TinyStudy.Models();
        var sweep = TinyStudy.Sweep(config, models, _dir);
        var coordinator = _cluster.Client.GetGrain<ISweepCoordinator>(ClusterSweepExecutor.SweepId(sweep.Keys));
        int before = JobsRun();

        // The client goes away after a few records; the silos finish the sweep on their own.
        using var cancel = new CancellationTokenSource();
        int received = 0;
        var first = new ClusterSweepExecutor(_cluster.Client, TimeSpan.FromMilliseconds(20));
        var stopped = first.RunAsync(sweep, [.. Enumerable.Range(0, sweep.Jobs.Count)], (_, _) => { if (Interlocked.Increment(ref received) >= 5) cancel.Cancel(); },
            0, null, cancel.Token);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => stopped);
        while ((await coordinator.StatusAsync(int.MaxValue)).Done < sweep.Jobs.Count) await Task.Delay(20);
        int run = JobsRun();
        Assert.Equal(sweep.Jobs.Count, run - before);

        // The coordinator's activation goes; a new client finds its persisted progress and gets every record without a silo computing again.
        await coordinator.FinishAsync();
        await Task.Delay(200);
        var records = await TinyStudy.RunAsync(new ClusterSweepExecutor(_cluster.Client, TimeSpan.FromMilliseconds(20)), sweep);
        Assert.Equal(run, JobsRun());
        Assert.Equal(await LocalAsync(config), records);
    }

    [Fact]
    public async Task A_malformed_sweep_is_refused_naming_the_field()
    {
        var config = TinyStudy.Config(_dir, questions: 2, budgets: [2]);
        using var models = TinyStudy.Models();
        var sweep = TinyStudy.Sweep(config, models, _dir);
        var good = ClusterSweepExecutor.Submission(sweep, [.. Enumerable.Range(0, sweep.Jobs.Count)]);
        var coordinator = _cluster.Client.GetGrain<ISweepCoordinator>("malformed");
        int before = JobsRun();

        var e = await Assert.ThrowsAsync<ArgumentException>(() => coordinator.SubmitAsync(good with { Jobs = [good.Jobs[0], good.Jobs[1] with { Strategy = "beem" }] }));
        Assert.Contains("jobs[1].strategy", e.Message);
        Assert.Contains("'beem'", e.Message);
        e = await Assert.ThrowsAsync<ArgumentException>(() => coordinator.SubmitAsync(good with { Jobs = [good.Jobs[0], good.Jobs[0]] }));
        Assert.Contains("jobs[1].key repeats jobs[0].key", e.Message);
        e = await Assert.ThrowsAsync<ArgumentException>(() => coordinator.SubmitAsync(good with { Jobs = [good.Jobs[0] with { Budget = 0 }] }));
        Assert.Contains("jobs[0].strategy", e.Message);
        Assert.Contains("budget must be >= 1", e.Message);
        e = await Assert.ThrowsAsync<ArgumentException>(() => coordinator.SubmitAsync(good with { Jobs = [] }));
        Assert.Contains("has no jobs", e.Message);
        e = await Assert.ThrowsAsync<ArgumentException>(() => coordinator.SubmitAsync(good with { Settings = good.Settings with { MaxRounds = 0 } }));
        Assert.Contains("settings.maxRounds", e.Message);
        // Nothing was accepted: the coordinator holds no sweep and no silo ran a job.
        Assert.Equal(0, (await coordinator.StatusAsync(0)).Total);
        Assert.Equal(before, JobsRun());
    }
}
