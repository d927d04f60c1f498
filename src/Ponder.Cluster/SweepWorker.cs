using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans;
using Orleans.Runtime;

namespace Ponder.Cluster;

/// <summary>How a silo takes sweep work.</summary>
public sealed class SweepWorkerOptions
{
    /// <summary>Batches run at once (each a question's jobs one after another); their searches batch on the silo's scheduler.</summary>
    public int Slots { get; set; } = 4;
    /// <summary>How long an idle slot waits before asking again.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(200);
    /// <summary>How often the silo tells the coordinators it is alive (well under their lease timeout).</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(5);
}

/// <summary>
/// A silo's sweep worker: <see cref="SweepWorkerOptions.Slots"/> loops, each asking the active sweeps' coordinators for
/// a batch, running it on the silo's <see cref="SiloEngine"/> and reporting each record as it finishes; a heartbeat keeps
/// its leases. Work is pulled, so a silo that joins late simply starts asking, and one that dies stops holding anything
/// once the coordinator notices.
/// </summary>
public sealed class SweepWorker(IGrainFactory grains, SiloEngine engine, ILocalSiloDetails silo, IOptions<SweepWorkerOptions> options,
    ILogger<SweepWorker> logger) : BackgroundService
{
    SiloIdentity? _identity;
    SiloIdentity Identity => _identity ??= engine.Identity(silo.SiloAddress);

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value;
        if (o.Slots < 1) throw new ArgumentException($"sweep worker slots must be >= 1, got {o.Slots}");
        var loops = Enumerable.Range(0, o.Slots).Select(_ => SlotAsync(stoppingToken)).Append(HeartbeatAsync(stoppingToken)).ToList();
        try { await Task.WhenAll(loops); }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
    }

    async Task SlotAsync(CancellationToken stop)
    {
        var o = options.Value;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                var (coordinator, lease) = await NextAsync();
                if (lease is null)
                {
                    await Task.Delay(o.PollInterval, stop);
                    continue;
                }
                await RunAsync(coordinator!, lease, stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested) { return; }
            catch (Exception e)
            {
                // The cluster may still be starting, or a coordinator moving after a silo's death: ask again later.
                logger.LogWarning(e, "sweep worker on {Silo}: {Message}", engine.Name, e.Message);
                await Task.Delay(o.PollInterval * 5, stop);
            }
        }
    }

    async Task<(ISweepCoordinator?, SweepLease?)> NextAsync()
    {
        foreach (string id in await grains.GetGrain<ISweepDirectory>(0).ActiveAsync())
        {
            var coordinator = grains.GetGrain<ISweepCoordinator>(id);
            if (await coordinator.LeaseAsync(Identity) is { } lease) return (coordinator, lease);
        }
        return (null, null);
    }

    async Task RunAsync(ISweepCoordinator coordinator, SweepLease lease, CancellationToken stop)
    {
        var reports = new List<Task>();
        try
        {
            await engine.RunBatchAsync(lease, record => reports.Add(ReportAsync(coordinator, lease.Batch, record)), stop);
        }
        catch (Exception e) when (!stop.IsCancellationRequested)
        {
            await coordinator.FailAsync(Identity, lease.Batch, e.Message);
        }
        await Task.WhenAll(reports);
    }

    async Task ReportAsync(ISweepCoordinator coordinator, int batch, WireRecord record)
    {
        // A few tries: a record lost here would keep its lease open while the heartbeat says the silo is fine.
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                await coordinator.CompleteAsync(Identity, batch, [record]);
                return;
            }
            catch (Exception e) when (attempt < 5 && e is not OperationCanceledException)
            {
                await Task.Delay(options.Value.PollInterval * attempt);
            }
        }
    }

    async Task HeartbeatAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            await Task.Delay(options.Value.HeartbeatInterval, stop);
            try
            {
                foreach (string id in await grains.GetGrain<ISweepDirectory>(0).ActiveAsync())
                    await grains.GetGrain<ISweepCoordinator>(id).HeartbeatAsync(Identity);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogDebug(e, "heartbeat from {Silo} failed", engine.Name);
            }
        }
    }
}
