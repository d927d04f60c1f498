using System.CommandLine;
using System.Globalization;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans;
using Orleans.Hosting;
using Ponder.Cluster;
using Ponder.Evaluation;
using Ponder.Evaluation.Study;
using Ponder.Server;
using Spectre.Console;

namespace Ponder.Cli.Commands;

/// <summary>
/// Scale-out on Orleans: <c>ponder silo</c> (a node that loads its models once and runs sweep jobs and completions on its
/// one scheduler), and the <c>--cluster</c> modes of <c>sweep</c> (jobs distributed by a coordinator grain) and
/// <c>serve</c> (a front end routing requests to silos by prompt prefix).
/// </summary>
public static class ClusterCommands
{
    /// <summary>The <c>--cluster</c> option.</summary>
    public static Option<string?> ClusterOption(bool required, string description) => new("--cluster") { Description = description, Required = required };

    /// <summary>The <c>--gateways</c> option (dev clustering: the silos' gateway ports).</summary>
    public static Option<string> GatewaysOption() => new("--gateways")
    {
        Description = "With --cluster dev: the silos' gateway ports on loopback, ','-separated",
        DefaultValueFactory = _ => "30000",
    };

    static ClusterEndpoints ClientEndpoints(string? gateways) => new()
    {
        DevGateways = [.. (gateways ?? "30000").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(g => int.TryParse(g, CultureInfo.InvariantCulture, out int port) && port is > 0 and < 65536 ? port
                : throw new ArgumentException($"--gateways: '{g}' is not a port"))],
    };

    /// <summary><c>ponder silo</c>.</summary>
    public static Command SiloCommand()
    {
        var model = CliCommon.ModelOption();
        var prm = new Option<string?>("--prm") { Description = "Verifier: a value-head PRM path, or exact / random / noisy:<auc> (the task's step checker)" };
        var reviser = new Option<string?>("--reviser") { Description = "Revision model (for the revisions strategy)" };
        var cluster = ClusterOption(required: true, "A Redis connection string (membership and sweep progress live there), or dev (localhost clustering, in-memory progress)");
        var name = new Option<string?>("--name") { Description = "Silo name in progress and routing (default: host:silo-port)" };
        var siloPort = new Option<int>("--silo-port") { Description = "Silo-to-silo port", DefaultValueFactory = _ => 11111 };
        var gatewayPort = new Option<int>("--gateway-port") { Description = "Client gateway port", DefaultValueFactory = _ => 30000 };
        var primaryPort = new Option<int>("--primary-port") { Description = "With --cluster dev: the first silo's port", DefaultValueFactory = _ => 11111 };
        var advertise = new Option<string>("--advertise") { Description = "The address other machines reach this silo at (Redis clustering)", DefaultValueFactory = _ => "127.0.0.1" };
        var slots = new Option<int>("--slots") { Description = "Sweep batches run at once (their searches batch on the silo's scheduler)", DefaultValueFactory = _ => 4 };
        var threads = CliCommon.ThreadsOption();
        var kvTokens = new Option<int>("--kv-tokens") { Description = "KV cache capacity in tokens (use the study's kvCacheTokens)", DefaultValueFactory = _ => 65536 };
        var leaseTimeout = new Option<double>("--lease-timeout") { Description = "Seconds a silent silo keeps its sweep leases", DefaultValueFactory = _ => 30 };
        var serveUrls = new Option<string?>("--serve-urls") { Description = "Also serve the OpenAI-compatible API here (for ponder serve --cluster), ';'-separated" };
        var apiKey = new Option<string?>("--api-key") { Description = $"With --serve-urls: require this key (default: ${ServeCommand.ApiKeyVariable})" };
        var cmd = new Command("silo", "Run a cluster node: load the models once, run sweep jobs and (with --serve-urls) completions on one scheduler")
        {
            model, prm, reviser, cluster, name, siloPort, gatewayPort, primaryPort, advertise, slots, threads, kvTokens, leaseTimeout, serveUrls, apiKey,
        };
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            string on = r.GetValue(cluster)!;
            if (!IPAddress.TryParse(r.GetValue(advertise), out var advertised)) throw new ArgumentException($"--advertise: '{r.GetValue(advertise)}' is not an IP address");
            var endpoints = new ClusterEndpoints
            {
                SiloPort = r.GetValue(siloPort), GatewayPort = r.GetValue(gatewayPort), PrimarySiloPort = r.GetValue(primaryPort), Advertised = advertised,
            };
            string siloName = r.GetValue(name) ?? $"{Dns.GetHostName()}:{endpoints.SiloPort}";
            void Notice(string text) => Console.Error.WriteLine($"notice: {text}");
            var config = new StudyConfig
            {
                Name = siloName, Policy = r.GetValue(model)!, Prm = r.GetValue(prm), Reviser = r.GetValue(reviser), Dataset = "(none)", Budgets = [1],
                Strategies = [new Search.StrategySpec(r.GetValue(reviser) is null ? Search.StrategyKind.BestOfN : Search.StrategyKind.Revisions, 0)],
                Threads = r.GetValue(threads), KvCacheTokens = r.GetValue(kvTokens),
            };
            var models = await StudyModels.LoadAsync(config, Directory.GetCurrentDirectory(), Notice, ct);
            var engine = new SiloEngine(models, siloName);
            string? urls = r.GetValue(serveUrls);
            string? key = r.GetValue(apiKey) ?? Environment.GetEnvironmentVariable(ServeCommand.ApiKeyVariable);
            using var host = Host.CreateDefaultBuilder()
                .UseOrleans(silo => silo.UsePonderCluster(on, endpoints).AddPonderSilo(_ => engine,
                    w => w.Slots = r.GetValue(slots),
                    c => c.LeaseTimeout = TimeSpan.FromSeconds(r.GetValue(leaseTimeout)),
                    s => s.Server = urls is null ? null : new PonderServerOptions
                    {
                        Urls = urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                        ApiKey = string.IsNullOrEmpty(key) ? null : key,
                    }))
                .ConfigureLogging(l => l.SetMinimumLevel(LogLevel.Warning))
                .Build();
            await host.StartAsync(ct);
            Console.Error.WriteLine($"silo {siloName} up on cluster {(PonderCluster.IsDev(on) ? "dev" : "(redis)")}: silo port {endpoints.SiloPort}, gateway {endpoints.GatewayPort}; " +
                                    $"models {models.Policy.Fingerprint}, verifier {models.VerifierFingerprint}, reviser {models.Reviser?.Fingerprint ?? "none"}" +
                                    (urls is null ? "" : $"; serving on {urls}") + " (Ctrl+C or SIGTERM stops)");
            await host.WaitForShutdownAsync(ct);
            Console.Error.WriteLine($"silo {siloName} stopped after {engine.JobsRun} sweep jobs");
            return 0;
        }));
        return cmd;
    }

    /// <summary><c>ponder sweep --config FILE --cluster ...</c>: the study with its sweep on the cluster, then throughput per silo.</summary>
    internal static async Task<int> SweepAsync(string configPath, string cluster, string? gateways, string baseDirectory, string? outDir, int? threads,
        string command, CancellationToken ct)
    {
        var config = StudyConfig.Load(Path.GetFullPath(configPath, baseDirectory));
        using var host = await PonderCluster.StartClientAsync(cluster, ClientEndpoints(gateways), ct);
        var executor = new ClusterSweepExecutor(host.Services.GetRequiredService<IClusterClient>())
        {
            Submitted = (id, on) => Console.Error.WriteLine($"coordinator {id} on silo {on}"),
        };
        var result = await SweepCommand.RunStudyAsync(config, baseDirectory, outDir, threads, command, ct, executor);
        double wall = result.WallTimes["sweep"].TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Cluster sweep: {result.RecordsComputed} jobs computed on the cluster ({result.Records.Count - result.RecordsComputed} from the record cache) in {wall:0.0} s, {result.RecordsComputed / Math.Max(wall, 1e-9):0.00} jobs/s"));
        if (executor.LastStatus is { } status)
        {
            if (status.Reassigned > 0) Console.WriteLine($"  {status.Reassigned} batch(es) reassigned from silos that died or fell silent");
            foreach (var s in status.Silos)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  silo {s.Name}: {s.Jobs} jobs, {s.JobsPerSecond:0.00} jobs/s{(s.Alive ? "" : " (gone)")}"));
        }
        return 0;
    }

    /// <summary><c>ponder serve --cluster ...</c>: the front end, until SIGTERM/SIGINT.</summary>
    internal static async Task<int> ServeAsync(string cluster, string? gateways, string routing, PonderServerOptions options, CancellationToken ct)
    {
        IRequestRouter router = routing switch
        {
            "affinity" => new PrefixAffinityRouter(saturation: options.Limits.MaxConcurrentRequests),
            "random" => new RandomRouter(Environment.TickCount),
            _ => throw new ArgumentException($"--routing '{routing}' is not one of affinity, random"),
        };
        using var host = await PonderCluster.StartClientAsync(cluster, ClientEndpoints(gateways), ct);
        await using var app = ClusterFrontEnd.Create(host.Services.GetRequiredService<IClusterClient>(), options, router);
        await app.StartAsync(ct);
        Console.Error.WriteLine($"front end on {string.Join(", ", app.Urls)} routing by {routing} to the cluster's serving silos (Ctrl+C or SIGTERM stops)");
        try { await Task.Delay(Timeout.Infinite, ct); }
        catch (OperationCanceledException) { }
        await app.StopAsync(CancellationToken.None);
        return 0;
    }
}
