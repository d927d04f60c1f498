using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Orleans.Hosting;

namespace Ponder.Cluster;

/// <summary>Where a node of the cluster listens and what it advertises.</summary>
public sealed record ClusterEndpoints
{
    /// <summary>Silo-to-silo port.</summary>
    public int SiloPort { get; init; } = 11111;
    /// <summary>Client gateway port.</summary>
    public int GatewayPort { get; init; } = 30000;
    /// <summary>The address other machines reach this one at (Redis clustering; default loopback).</summary>
    public IPAddress Advertised { get; init; } = IPAddress.Loopback;
    /// <summary>Dev clustering: the first silo's port (it is the primary).</summary>
    public int PrimarySiloPort { get; init; } = 11111;
    /// <summary>Dev clustering: the gateways a client may use.</summary>
    public IReadOnlyList<int> DevGateways { get; init; } = [30000];
}

/// <summary>
/// Configures Orleans for Ponder: <c>--cluster dev</c> is localhost clustering with in-memory grain storage (one machine,
/// nothing to install); anything else is a Redis connection string (StackExchange.Redis form, e.g. "10.0.0.5:6379" or
/// "host:6379,password=..."), which holds both the membership table and the coordinators' persisted progress.
/// </summary>
public static class PonderCluster
{
    /// <summary>The grain storage name for sweep progress.</summary>
    public const string Storage = "ponder";
    /// <summary>The <c>--cluster</c> value for single-machine development clustering.</summary>
    public const string Dev = "dev";
    /// <summary>ClusterId and ServiceId of every Ponder cluster (one per Redis database).</summary>
    public const string ClusterId = "ponder";

    /// <summary>True for <c>--cluster dev</c>.</summary>
    public static bool IsDev(string cluster) => string.Equals(cluster, Dev, StringComparison.OrdinalIgnoreCase);

    /// <summary>Clustering, endpoints and grain storage of a silo.</summary>
    public static ISiloBuilder UsePonderCluster(this ISiloBuilder silo, string cluster, ClusterEndpoints? endpoints = null)
    {
        ArgumentNullException.ThrowIfNull(silo);
        ArgumentException.ThrowIfNullOrWhiteSpace(cluster);
        endpoints ??= new ClusterEndpoints();
        silo.Configure<ClusterOptions>(o => { o.ClusterId = ClusterId; o.ServiceId = ClusterId; });
        if (IsDev(cluster))
        {
            silo.UseLocalhostClustering(endpoints.SiloPort, endpoints.GatewayPort,
                endpoints.SiloPort == endpoints.PrimarySiloPort ? null : new IPEndPoint(IPAddress.Loopback, endpoints.PrimarySiloPort));
            silo.AddMemoryGrainStorage(Storage);
        }
        else
        {
            silo.ConfigureEndpoints(endpoints.Advertised, endpoints.SiloPort, endpoints.GatewayPort, listenOnAnyHostAddress: !IPAddress.IsLoopback(endpoints.Advertised));
            silo.UseRedisClustering(cluster);
            silo.AddRedisGrainStorage(Storage, o => o.ConfigurationOptions = StackExchange.Redis.ConfigurationOptions.Parse(cluster));
        }
        return silo;
    }

    /// <summary>Clustering of a client (the sweep client and the serving front end).</summary>
    public static IClientBuilder UsePonderCluster(this IClientBuilder client, string cluster, ClusterEndpoints? endpoints = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentException.ThrowIfNullOrWhiteSpace(cluster);
        endpoints ??= new ClusterEndpoints();
        client.Configure<ClusterOptions>(o => { o.ClusterId = ClusterId; o.ServiceId = ClusterId; });
        if (IsDev(cluster)) client.UseLocalhostClustering([.. endpoints.DevGateways]);
        else client.UseRedisClustering(cluster);
        return client;
    }

    /// <summary>A silo's Ponder services: its engine (one per silo), the sweep worker and the serving registration.</summary>
    public static ISiloBuilder AddPonderSilo(this ISiloBuilder silo, Func<IServiceProvider, SiloEngine> engine, Action<SweepWorkerOptions>? worker = null,
        Action<SweepCoordinatorOptions>? coordinator = null, Action<ServingOptions>? serving = null)
    {
        ArgumentNullException.ThrowIfNull(silo);
        ArgumentNullException.ThrowIfNull(engine);
        silo.Services.AddSingleton(engine);
        silo.Services.AddHostedService<SweepWorker>();
        silo.Services.AddSingleton<SiloServing>();
        silo.Services.AddHostedService(sp => sp.GetRequiredService<SiloServing>());
        silo.Services.Configure(worker ?? (_ => { }));
        silo.Services.Configure(coordinator ?? (_ => { }));
        silo.Services.Configure(serving ?? (_ => { }));
        return silo;
    }

    /// <summary>Starts a client host connected to <paramref name="cluster"/>.</summary>
    public static async Task<IHost> StartClientAsync(string cluster, ClusterEndpoints? endpoints = null, CancellationToken cancellationToken = default)
    {
        var host = Host.CreateDefaultBuilder()
            // A call through a gateway that died fails after 10 s instead of Orleans' 30 s; the sweep client retries it.
            .UseOrleansClient(client => client.UsePonderCluster(cluster, endpoints).Configure<ClientMessagingOptions>(o => o.ResponseTimeout = TimeSpan.FromSeconds(10)))
            .ConfigureLogging(l => l.SetMinimumLevel(LogLevel.Warning))
            .Build();
        try { await host.StartAsync(cancellationToken); }
        catch (Exception e)
        {
            host.Dispose();
            throw new InvalidOperationException($"cannot reach cluster '{cluster}': {e.Message}", e);
        }
        return host;
    }
}
