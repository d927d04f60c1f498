using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using Ponder.Hosting;
using Ponder.Server;

namespace Ponder.Bench;

/// <summary>
/// A bounded load test of the OpenAI-compatible server on loopback: a fixed number of concurrent clients send
/// <c>/v1/completions</c> requests for a fixed time against <c>weights/policy-small</c> (arithmetic questions, sampled
/// at T = 1), then it reports requests/s, completion tokens/s, latency percentiles and every non-200 answer.
/// Optionally each request asks for test-time compute (<c>ponder: {strategy: "majority", n}</c>).
/// Run: <c>./build.sh bench --server-load [clients=8] [seconds=20] [n=1]</c>.
/// </summary>
public static class ServerLoad
{
    public static async Task RunAsync(string[] args)
    {
        int clients = args.Length > 0 ? int.Parse(args[0]) : 8;
        int seconds = args.Length > 1 ? int.Parse(args[1]) : 20;
        int n = args.Length > 2 ? int.Parse(args[2]) : 1;
        string weights = Path.Combine(FindRoot(), "weights", "policy-small");

        await using var model = await PonderModel.LoadAsync(weights, new ModelOptions { KvCacheTokens = 32768 });
        using var engine = new CompletionEngine(model);
        await using var app = PonderServer.Create(engine, new PonderServerOptions { Urls = ["http://127.0.0.1:0"] });
        await app.StartAsync();
        var baseAddress = new Uri(app.Urls.Single());
        if (!baseAddress.IsLoopback) throw new InvalidOperationException($"load test must stay on loopback, got {baseAddress}");
        using var http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(120) };

        var questions = File.ReadLines(Path.Combine(weights, "test.jsonl")).Take(200)
            .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("question").GetString()!).ToArray();
        var latencies = new List<double>();
        var failures = new List<string>();
        long tokens = 0, requests = 0;
        var deadline = Stopwatch.StartNew();
        Console.WriteLine($"// server load: {clients} clients x {seconds} s on {baseAddress}, policy-small, n = {n}");

        async Task Client(int id)
        {
            int i = id;
            while (deadline.Elapsed.TotalSeconds < seconds)
            {
                object body = n <= 1
                    ? new { model = "policy-small", prompt = $"Q: {questions[i % questions.Length]}\n", max_tokens = 64, temperature = 1.0, seed = i }
                    : new { model = "policy-small", prompt = $"Q: {questions[i % questions.Length]}\n", max_tokens = 64, temperature = 1.0, seed = i, ponder = new { strategy = "majority", n } };
                i += clients;
                var watch = Stopwatch.StartNew();
                using var response = await http.PostAsJsonAsync("/v1/completions", body);
                string text = await response.Content.ReadAsStringAsync();
                watch.Stop();
                lock (latencies)
                {
                    requests++;
                    if (!response.IsSuccessStatusCode) { failures.Add($"{(int)response.StatusCode}: {text}"); continue; }
                    latencies.Add(watch.Elapsed.TotalMilliseconds);
                    tokens += JsonDocument.Parse(text).RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt64();
                }
            }
        }

        await Task.WhenAll(Enumerable.Range(0, clients).Select(Client));
        double elapsed = deadline.Elapsed.TotalSeconds;
        await app.StopAsync();

        latencies.Sort();
        double P(double q) => latencies.Count == 0 ? double.NaN : latencies[Math.Min(latencies.Count - 1, (int)(q * latencies.Count))];
        Console.WriteLine($"| clients | n | requests | ok | errors | req/s | completion tok/s | p50 ms | p95 ms | p99 ms | max ms |");
        Console.WriteLine($"|---|---|---|---|---|---|---|---|---|---|---|");
        Console.WriteLine($"| {clients} | {n} | {requests} | {latencies.Count} | {failures.Count} | {latencies.Count / elapsed:F1} | {tokens / elapsed:F0} | {P(0.5):F0} | {P(0.95):F0} | {P(0.99):F0} | {(latencies.Count > 0 ? latencies[^1] : double.NaN):F0} |");
        foreach (var f in failures.Take(5)) Console.WriteLine($"// error: {f}");
        var stats = model.Pool.Stats();
        Console.WriteLine($"// after the run: {model.Pool.SequenceCount} live sequences; KV blocks {stats}");
        if (failures.Count > 0) Environment.ExitCode = 1;
    }

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("cannot find the repository root (Engine.sln) above " + AppContext.BaseDirectory);
    }
}
