using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Orleans;
using Orleans.Hosting;
using Orleans.Runtime;
using Orleans.Runtime.Hosting;
using Orleans.Serialization;
using Orleans.Storage;
using Orleans.TestingHost;
using Ponder.Evaluation.Study;
using Ponder.Tasks;
using Ponder.Search;
using Ponder.Tests.Hosting;

namespace Ponder.Cluster.Tests;

/// <summary>Tiny random study models (the same seeds on every silo and in the reference run), a question file and a study config.</summary>
static class TinyStudy
{
    public static StudyModels Models() =>
        new(new StudyModel(HostingTestModels.Policy(seed: 3), "tiny-policy@1", null), new StudyModel(HostingTestModels.Prm(seed: 4), "tiny-prm@1", null));

    public static StudyConfig Config(string dir, int questions = 6, IReadOnlyList<int>? budgets = null)
    {
        string dataset = Path.Combine(dir, "questions.jsonl");
        if (!File.Exists(dataset)) ArithmeticChainSplits.WriteJsonl(dataset, ArithmeticChainSplits.Test(12, 8));
        return new StudyConfig
        {
            Name = "tiny-cluster",
            Policy = "(in memory)",
            Dataset = dataset,
            Questions = questions,
            OracleSamples = 2,
            OracleCache = Path.Combine(dir, "oracle.jsonl"),
            RecordCache = Path.Combine(dir, "records.jsonl"),
            Strategies =
            [
                new StrategySpec(StrategyKind.BestOfN, 0),
                new StrategySpec(StrategyKind.BestOfN, 0, Selection: AnswerSelection.Majority),
                new StrategySpec(StrategyKind.BeamSearch, 0),
            ],
            Budgets = budgets ?? [1, 2, 4],
            MaxStepTokens = 4,
            MaxRounds = 3,
            Concurrency = 2,
        };
    }

    /// <summary>The sweep of a config on models (every job wanted).</summary>
    public static StudySweep Sweep(StudyConfig config, StudyModels models, string dir)
    {
        var search = StudyJobs.Search(config);
        var jobs = StudyJobs.Plan(config, config.Strategies, StudyRunner.Questions(config, dir));
        return new StudySweep(config.Name, jobs, [.. jobs.Select(j => StudyJobs.Key(j, models, search))], models, search, config.Concurrency);
    }

    /// <summary>Runs a sweep on an executor; fails if a job's record comes twice.</summary>
    public static async Task<StudyRecord[]> RunAsync(IStudySweepExecutor executor, StudySweep sweep, CancellationToken ct = default)
    {
        var records = new StudyRecord[sweep.Jobs.Count];
        await executor.RunAsync(sweep, [.. Enumerable.Range(0, sweep.Jobs.Count)], (i, r) =>
        {
            if (Interlocked.CompareExchange(ref records[i], r, null) is not null) throw new InvalidOperationException($"job {i} reported twice");
        }, 0, null, ct);
        return records;
    }
}

/// <summary>
/// Grain storage shared by the in-process silos of a test (static), so a coordinator's progress outlives the silo it
/// ran on, as Redis's does; state is copied through the Orleans serializer like a real store.
/// </summary>
sealed class SharedTestStorage(Serializer serializer) : IGrainStorage
{
    static readonly ConcurrentDictionary<string, (byte[] Bytes, string ETag)> Store = new();
    static int _version;

    public static void Clear() => Store.Clear();

    static string Key<T>(string stateName, GrainId grainId) => $"{typeof(T).FullName}|{stateName}|{grainId}";

    public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        if (Store.TryGetValue(Key<T>(stateName, grainId), out var entry))
        {
            grainState.State = serializer.Deserialize<T>(entry.Bytes);
            grainState.ETag = entry.ETag;
            grainState.RecordExists = true;
        }
        return Task.CompletedTask;
    }

    public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        string etag = Interlocked.Increment(ref _version).ToString(System.Globalization.CultureInfo.InvariantCulture);
        Store[Key<T>(stateName, grainId)] = (serializer.SerializeToArray(grainState.State), etag);
        grainState.ETag = etag;
        grainState.RecordExists = true;
        return Task.CompletedTask;
    }

    public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        Store.TryRemove(Key<T>(stateName, grainId), out _);
        grainState.RecordExists = false;
        return Task.CompletedTask;
    }
}

/// <summary>Each test silo: its own tiny models and engine, shared test storage, fast heartbeats and lease timeout.</summary>
sealed class PonderSiloConfigurator : ISiloConfigurator
{
    public void Configure(ISiloBuilder silo)
    {
        silo.Services.AddGrainStorage(PonderCluster.Storage, (sp, _) => new SharedTestStorage(sp.GetRequiredService<Serializer>()));
        silo.AddPonderSilo(sp => new SiloEngine(TinyStudy.Models(), sp.GetRequiredService<ILocalSiloDetails>().Name),
            w => { w.Slots = 2; w.PollInterval = TimeSpan.FromMilliseconds(50); w.HeartbeatInterval = TimeSpan.FromMilliseconds(250); },
            c => c.LeaseTimeout = TimeSpan.FromSeconds(2),
            s =>
            {
                s.Server = new Ponder.Server.PonderServerOptions { Urls = ["http://127.0.0.1:0"], AllowChatMlFallback = true };
                s.AnnounceInterval = TimeSpan.FromMilliseconds(200);
                s.AnnounceTimeout = TimeSpan.FromSeconds(1.5);
            });
    }
}

/// <summary>
/// One 3-silo cluster for all cluster tests (Orleans' first start in a process costs ~10 s on 2 cores; later ones ~3 s):
/// tests that kill a silo start a fresh one after, and every test measures its own jobs as differences.
/// </summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    public TestCluster Cluster { get; private set; } = null!;

    public async Task InitializeAsync() => Cluster = await TestClusters.StartAsync();

    public async Task DisposeAsync()
    {
        await Cluster.StopAllSilosAsync();
        await Cluster.DisposeAsync();
    }

    /// <summary>Back to 3 live silos, each serving and listed by the registry.</summary>
    public async Task RestoreAsync()
    {
        while (Cluster.GetActiveSilos().Count() < 3) await Cluster.StartAdditionalSiloAsync();
        var registry = Cluster.Client.GetGrain<IServingRegistry>(0);
        var names = Cluster.GetActiveSilos().Select(s => Cluster.Engine(s).Name).Order().ToList();
        while (!(await registry.ListAsync()).Select(e => e.Name).Order().SequenceEqual(names)) await Task.Delay(50);
    }

    /// <summary>Sweep jobs the live silos have run.</summary>
    public int JobsRun() => Cluster.GetActiveSilos().Sum(s => Cluster.Engine(s).JobsRun);
}

[CollectionDefinition("cluster")]
public sealed class ClusterCollection : ICollectionFixture<ClusterFixture>;

static class TestClusters
{
    public static async Task<TestCluster> StartAsync(int silos = 3)
    {
        SharedTestStorage.Clear();
        var builder = new TestClusterBuilder((short)silos);
        builder.AddSiloBuilderConfigurator<PonderSiloConfigurator>();
        var cluster = builder.Build();
        await cluster.DeployAsync();
        return cluster;
    }

    public static SiloEngine Engine(this TestCluster cluster, SiloHandle silo) => cluster.GetSiloServiceProvider(silo.SiloAddress).GetRequiredService<SiloEngine>();
}
