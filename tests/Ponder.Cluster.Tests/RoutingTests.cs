using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Orleans.TestingHost;
using Ponder.Server;

namespace Ponder.Cluster.Tests;

/// <summary>
/// The serving front end on 3 silos: requests sharing a prompt prefix go to one silo, so its prefix index serves the
/// shared blocks (hit rate measured from the silos' own FLOP reports, against seeded random routing); a silo that is
/// gone is routed around; saturation falls back to the least-loaded silo.
/// </summary>
[Collection("cluster")]
public sealed class RoutingTests(ClusterFixture fixture, Xunit.Abstractions.ITestOutputHelper output)
{
    readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    void Mark(string what) => output.WriteLine($"{_clock.Elapsed.TotalSeconds:0.00} s {what}");

    [Fact]
    public void The_router_keeps_a_prefix_on_its_silo_until_saturated_then_goes_least_loaded()
    {
        var router = new PrefixAffinityRouter(chunkChars: 8, saturation: 2);
        string[] silos = ["a", "b", "c"];
        string prefix = new('x', 64);
        string first = router.Choose(prefix + "1", silos);
        Assert.Equal(first, router.Choose(prefix + "2", silos));           // affinity: 8 shared chunks
        string third = router.Choose(prefix + "3", silos);                  // first holds 2 in flight: saturated
        Assert.NotEqual(first, third);
        router.Done(first); router.Done(first);
        Assert.Equal(first, router.Choose(prefix + "4", silos));           // free again: back to its prefix
        Assert.NotEqual(first, router.Choose(new string('y', 64), silos)); // no shared prefix: least-loaded
        router.Forget(first);
        Assert.Contains(router.Choose(prefix + "5", [.. silos.Where(s => s != first)]), silos.Where(s => s != first));
    }

    [Fact]
    public async Task Shared_prefix_requests_land_on_one_silo_and_hit_its_prefix_index_more_than_random_routing()
    {
        await fixture.RestoreAsync();
        var cluster = fixture.Cluster;

        Mark("registered");
        var (affinityRate, affinityLog) = await MeasureAsync(cluster, new PrefixAffinityRouter(), "Context");
        Mark("affinity measured");
        var (randomRate, _) = await MeasureAsync(cluster, new RandomRouter(seed: 7), "Background");

        Mark($"measured: prefix hit rate {affinityRate:0.000} with affinity, {randomRate:0.000} with random routing");
        // Every prefix's requests on one silo, the prefixes spread over the silos.
        var byPrefix = affinityLog.Decisions.GroupBy(d => d.Text[..Prefix("Context", 0).Length]).ToList();
        Assert.Equal(3, byPrefix.Count);
        Assert.All(byPrefix, g => Assert.Single(g.Select(d => d.Silo).Distinct()));
        Assert.Equal(3, byPrefix.Select(g => g.First().Silo).Distinct().Count());
        // With affinity only a prefix's first request computes its blocks: 3 of 4 requests reuse the ~200 shared tokens.
        Assert.True(affinityRate > 0.6, $"affinity hit rate {affinityRate:0.000}");
        Assert.True(affinityRate > randomRate + 0.1, $"affinity hit rate {affinityRate:0.000} vs random {randomRate:0.000}");

        // A silo gone: its prefix is served by another (the front end forgets it on the refused connection).
        var gone = cluster.SecondarySilos.First();
        string goneName = cluster.Engine(gone).Name;
        await cluster.KillSiloAsync(gone);
        Mark("killed");
        var log = new ClusterFrontEnd.RoutingLog();
        await using var app = ClusterFrontEnd.Create(cluster.Client, new PonderServerOptions { Urls = ["http://127.0.0.1:0"] }, new PrefixAffinityRouter(), log);
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.First()) };
        for (int i = 0; i < 3; i++)
        {
            using var response = await http.PostAsJsonAsync("/v1/completions", new { prompt = Prefix("Context", i) + "Q: 1+1\n", max_tokens = 2, temperature = 0 });
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.DoesNotContain(log.Decisions, d => d.Silo == goneName);
        Mark("rerouted");
    }

    /// <summary>A ~200-character shared context, distinct per <paramref name="kind"/> and index.</summary>
    static string Prefix(string kind, int p) =>
        $"{kind} {p}: " + string.Concat(Enumerable.Range(0, 20).Select(i => $"fact {(p * 31 + i) % 97:D2}; ")) + "\n";

    /// <summary>3 prefixes x 4 questions through a front end with <paramref name="router"/>; prefix hit rate = reused / prompt tokens.</summary>
    static async Task<(double Rate, ClusterFrontEnd.RoutingLog Log)> MeasureAsync(TestCluster cluster, IRequestRouter router, string kind)
    {
        var log = new ClusterFrontEnd.RoutingLog();
        await using var app = ClusterFrontEnd.Create(cluster.Client, new PonderServerOptions { Urls = ["http://127.0.0.1:0"] }, router, log);
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.First()) };
        long prompt = 0, reused = 0;
        for (int q = 0; q < 4; q++)
        for (int p = 0; p < 3; p++)
        {
            using var response = await http.PostAsJsonAsync("/v1/completions", new { prompt = Prefix(kind, p) + $"Q: {q}+{p}*3\n", max_tokens = 4, temperature = 0 });
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            prompt += body.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt64();
            // The silo's own exact report: the FLOP report passes through the front end unchanged.
            var ponder = body.RootElement.GetProperty("ponder");
            Assert.True(ponder.GetProperty("flops").GetProperty("total").GetInt64() > 0);
            reused += ponder.GetProperty("tokens_reused").GetInt64();
        }
        await app.StopAsync();
        return ((double)reused / prompt, log);
    }
}
