using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Runtime;
using System.Text;
using System.Text.Json;
using Ponder.Hosting;
using Ponder.Server;

namespace Ponder.Bench;

/// <summary>
/// A bounded load test of the OpenAI-compatible server on loopback: a fixed number of concurrent clients send
/// <c>/v1/completions</c> requests for a fixed time against <c>weights/policy-small</c> (arithmetic questions, sampled
/// at T = 1), then it reports requests/s, completion tokens/s, latency percentiles and every non-200 answer.
/// Optionally each request asks for test-time compute (<c>ponder: {strategy: "majority", n}</c>).
/// With <c>--faults</c> it is a soak: part of the requests are faults (a client that disconnects mid-stream, one that
/// cancels, oversized and malformed bodies, requests the KV-share limit refuses, bursts of big-n searches that fill
/// the KV cache, a big-n search among the small ones), each with the answers the server may give; any other answer,
/// any 500 and any request left unanswered is a violation. Every request the mix lets in fits the cache alone, so a
/// full cache makes it wait (the scheduler defers work and preempts the request holding the most blocks): a 503 may
/// only be the server's slots staying taken past the queue timeout (server_busy), never kv_cache_full. At the end no
/// KV block may be held and no sequence live.
/// Both modes report the process's RSS (start, peak, end), the GC's pauses and the thread pool's queueing delay
/// (a probe work item every 10 ms), to tell where a latency tail comes from.
/// Run: <c>./build.sh bench --server-load [clients=8] [seconds=20] [n=1] [--faults] [--kv-tokens N]</c>.
/// </summary>
public static class ServerLoad
{
    /// <summary>The kinds of request the fault mix sends, with the share of requests each takes.</summary>
    enum Kind { Normal, BigN, Disconnect, Cancel, Oversized, Malformed, WrongType, KvShare, Burst }

    static readonly (Kind Kind, int Weight)[] Mix =
    [
        (Kind.Normal, 60), (Kind.BigN, 6), (Kind.Disconnect, 8), (Kind.Cancel, 8), (Kind.Oversized, 2),
        (Kind.Malformed, 6), (Kind.WrongType, 3), (Kind.KvShare, 4), (Kind.Burst, 3),
    ];

    public static async Task RunAsync(string[] args)
    {
        var positional = args.Where(a => !a.StartsWith("--", StringComparison.Ordinal)).ToList();
        bool faults = args.Contains("--faults");
        int kvIndex = Array.IndexOf(args, "--kv-tokens");
        if (kvIndex >= 0) positional.Remove(args[kvIndex + 1]);
        // --threads N: the CPU backend's worker threads (default: one per core).
        int threadsIndex = Array.IndexOf(args, "--threads");
        int? threads = threadsIndex >= 0 ? int.Parse(args[threadsIndex + 1]) : null;
        if (threadsIndex >= 0) positional.Remove(args[threadsIndex + 1]);
        // --min-threads N: the thread pool starts with N workers instead of one per core (it adds more only every ~0.5 s
        // while starved), to test whether the latency tail is the pool's thread injection.
        int minIndex = Array.IndexOf(args, "--min-threads");
        if (minIndex >= 0)
        {
            positional.Remove(args[minIndex + 1]);
            int minThreads = int.Parse(args[minIndex + 1]);
            ThreadPool.SetMinThreads(minThreads, minThreads);
        }
        int clients = positional.Count > 0 ? int.Parse(positional[0]) : 8;
        int seconds = positional.Count > 1 ? int.Parse(positional[1]) : 20;
        int n = positional.Count > 2 ? int.Parse(positional[2]) : 1;
        // The soak's cache is small enough that a burst of big-n searches fills it (each fits the KV share alone).
        int kvTokens = kvIndex >= 0 ? int.Parse(args[kvIndex + 1]) : faults ? 2048 : 32768;
        string weights = Path.Combine(FindRoot(), "weights", "policy-small");

        await using var model = await PonderModel.LoadAsync(weights, new ModelOptions { KvCacheTokens = kvTokens, Threads = threads });
        using var engine = new CompletionEngine(model);
        // The soak lets one request hold the whole cache (the default caps it at half), so that bursts of big-n searches
        // really fill it and the scheduler's deferral and preemption run; a request over the whole cache is still
        // refused up front (400).
        var limits = faults ? new ServerLimits { MaxRequestKvShare = 1.0 } : new ServerLimits();
        await using var app = PonderServer.Create(engine, new PonderServerOptions { Urls = ["http://127.0.0.1:0"], Limits = limits });
        await app.StartAsync();
        var baseAddress = new Uri(app.Urls.Single());
        if (!baseAddress.IsLoopback) throw new InvalidOperationException($"load test must stay on loopback, got {baseAddress}");
        using var http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(120) };

        var questions = File.ReadLines(Path.Combine(weights, "test.jsonl")).Take(200)
            .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("question").GetString()!).ToArray();
        var latencies = new List<double>();
        var perRequest = new List<(double Ms, long Tokens)>();
        var failures = new List<string>();
        var outcomes = new Dictionary<string, int>();
        long tokens = 0, requests = 0;
        void Count(Kind kind, string outcome) { lock (outcomes) outcomes[$"{kind} -> {outcome}"] = outcomes.GetValueOrDefault($"{kind} -> {outcome}") + 1; }
        void Violation(Kind kind, string what) { lock (failures) failures.Add($"{kind}: {what}"); Count(kind, "VIOLATION"); }

        // What a request waits for to start and to end: a sequence created and released through the scheduler.
        var probeRequest = model.Scheduler.CreateRequest(name: "load probe");
        using var probe = new Probe(() => model.Scheduler.Release(model.Scheduler.CreateSequence(probeRequest, model.Scheduled, [1])));
        var deadline = Stopwatch.StartNew();
        var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        var gcBefore = GcSnapshot.Take();
        long roundsBefore = model.Scheduler.Rounds;
        ThreadPool.GetMinThreads(out int minWorkers, out _);
        Console.WriteLine($"// server load: {clients} clients x {seconds} s on {baseAddress}, policy-small, n = {n}, KV cache {kvTokens} tokens{(faults ? ", fault mix" : "")}; GC: {(GCSettings.IsServerGC ? "server" : "workstation")}, {GCSettings.LatencyMode}; thread pool min {minWorkers}; backend threads {threads?.ToString() ?? "one per core"}");
        Console.WriteLine($"// RSS at start {Probe.RssMiB():F0} MiB; load average {File.ReadAllText("/proc/loadavg").Trim()}");

        object Body(int seed, int samples, int maxTokens, bool stream = false) => samples <= 1
            ? new { model = "policy-small", prompt = $"Q: {questions[seed % questions.Length]}\n", max_tokens = maxTokens, temperature = 1.0, seed, stream }
            : new { model = "policy-small", prompt = $"Q: {questions[seed % questions.Length]}\n", max_tokens = maxTokens, temperature = 1.0, seed, stream, ponder = new { strategy = "majority", n = samples } };

        // A 503 and its check: Retry-After, and a reason other than a full KV cache (every request here fits it alone,
        // so the server must make it wait rather than refuse it). Counted by its error code.
        void Unavailable(Kind kind, HttpResponseMessage response, string text)
        {
            string? code = null;
            try { code = JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("code").GetString(); }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException) { }
            Count(kind, $"503 {code}");
            if (response.Headers.RetryAfter is null) Violation(kind, "503 without Retry-After");
            if (code != "server_busy") Violation(kind, $"503 {code} (only server_busy may refuse a request that fits the cache): {Trim(text)}");
        }

        // One request and its check: the statuses the server may answer with, 503s as above, JSON error bodies.
        async Task Expect(Kind kind, HttpRequestMessage request, params int[] allowed)
        {
            using var response = await http.SendAsync(request);
            string text = await response.Content.ReadAsStringAsync();
            int status = (int)response.StatusCode;
            if (status == 503) Unavailable(kind, response, text);
            else Count(kind, status.ToString(System.Globalization.CultureInfo.InvariantCulture));
            if (!allowed.Contains(status)) { Violation(kind, $"{status} (allowed {string.Join("/", allowed)}): {Trim(text)}"); return; }
            if (status >= 400)
            {
                try { _ = JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("message").GetString(); }
                catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException) { Violation(kind, $"{status} without a JSON error body: {Trim(text)}"); }
            }
        }

        static HttpRequestMessage Post(object body) => new(HttpMethod.Post, "/v1/completions") { Content = JsonContent.Create(body) };
        static HttpRequestMessage Raw(byte[] body, string contentType = "application/json") =>
            new(HttpMethod.Post, "/v1/completions") { Content = new ByteArrayContent(body) { Headers = { ContentType = MediaTypeHeaderValue.Parse(contentType) } } };

        async Task Fault(Kind kind, int seed, Random rng)
        {
            switch (kind)
            {
                case Kind.BigN:
                    await Expect(kind, Post(Body(seed, 8, 64)), 200, 503);
                    break;
                case Kind.Burst:
                    // Four big-n searches at once can need more than the whole cache: they wait their turn (deferred or
                    // preempted and recomputed), and all four must be answered 200 (or server_busy, should 16 slots stay taken).
                    await Task.WhenAll(Enumerable.Range(0, 4).Select(j => Expect(kind, Post(Body(seed + j, 8, 64)), 200, 503)));
                    break;
                case Kind.KvShare:
                    // Worst case 64 branches x 200 tokens: over the per-request KV share, refused before any forward.
                    await Expect(kind, Post(Body(seed, 64, 200)), 400);
                    break;
                case Kind.Oversized:
                {
                    // Expect: 100-continue, as a well-behaved client uploading a large body does: the server answers 413
                    // from the headers and the body is never sent (without it, the server closes the connection while
                    // the client is still sending, and the client sees a reset instead of the 413).
                    var request = Raw(Encoding.UTF8.GetBytes($$"""{"prompt": "{{new string('x', (int)limits.MaxBodyBytes)}}"}"""));
                    request.Headers.ExpectContinue = true;
                    await Expect(kind, request, 413);
                    break;
                }
                case Kind.Malformed:
                {
                    byte[][] bodies =
                    [
                        "{\"prompt\": \"Q: 1+1\n\", \"max_tokens\": "u8.ToArray(),
                        [.. "{\"prompt\": \"Q: "u8, 0xC3, 0x28, .. "\"}"u8], // invalid UTF-8 inside a string
                        "{\"prompt\": \"\\uD800 lone surrogate\"}"u8.ToArray(),
                        "[1, 2, 3]"u8.ToArray(),
                        "{\"prompt\": 7}"u8.ToArray(),
                        "{\"prompt\": \"Q\", \"max_tokens\": -5}"u8.ToArray(),
                        "{\"prompt\": \"Q\", \"ponder\": {\"strategy\": \"telepathy\"}}"u8.ToArray(),
                        "{\"prompt\": \"Q\", \"ponder\": {\"strategy\": \"majority\", \"n\": 1000}}"u8.ToArray(),
                        "{\"prompt\": \"Q\", \"temperature\": \"hot\"}"u8.ToArray(),
                    ];
                    await Expect(kind, Raw(bodies[rng.Next(bodies.Length)]), 400);
                    break;
                }
                case Kind.WrongType:
                    await Expect(kind, Raw("{\"prompt\": \"Q\"}"u8.ToArray(), "text/plain"), 415);
                    break;
                case Kind.Disconnect:
                {
                    // Read the stream's first event, then drop the connection: the server must cancel and free the work.
                    using var cts = new CancellationTokenSource();
                    using var request = Post(Body(seed, rng.Next(2) == 0 ? 1 : 8, 64, stream: true));
                    try
                    {
                        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
                        if (response.StatusCode is not (HttpStatusCode.OK or HttpStatusCode.ServiceUnavailable))
                        {
                            Violation(kind, $"{(int)response.StatusCode} before the stream");
                            break;
                        }
                        if (response.StatusCode == HttpStatusCode.OK)
                        {
                            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
                            await reader.ReadLineAsync(cts.Token);
                            Count(kind, "disconnected mid-stream");
                        }
                        else Unavailable(kind, response, await response.Content.ReadAsStringAsync(cts.Token));
                        cts.Cancel();
                    }
                    catch (OperationCanceledException) { Count(kind, "disconnected mid-stream"); }
                    break;
                }
                case Kind.Cancel:
                {
                    // Cancel at a random moment: before the answer, mid-generation or after it.
                    using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(rng.Next(1, 80)));
                    try
                    {
                        using var response = await http.SendAsync(Post(Body(seed, rng.Next(2) == 0 ? 1 : 8, 64)), cts.Token);
                        string text = await response.Content.ReadAsStringAsync(cts.Token);
                        if (response.StatusCode == HttpStatusCode.ServiceUnavailable) Unavailable(kind, response, text);
                        else if (response.StatusCode != HttpStatusCode.OK) Violation(kind, $"{(int)response.StatusCode}: {Trim(text)}");
                        else Count(kind, "finished before the cancel");
                    }
                    catch (OperationCanceledException) { Count(kind, "cancelled"); }
                    break;
                }
                default:
                    throw new InvalidOperationException($"no fault {kind}");
            }
        }

        async Task Client(int id)
        {
            int i = id;
            var rng = new Random(id);
            int total = Mix.Sum(m => m.Weight);
            while (deadline.Elapsed.TotalSeconds < seconds)
            {
                int seed = i;
                i += clients;
                Kind kind = Kind.Normal;
                if (faults)
                {
                    int pick = rng.Next(total);
                    foreach (var (k, w) in Mix) { if (pick < w) { kind = k; break; } pick -= w; }
                }
                Interlocked.Increment(ref requests);
                try
                {
                    if (kind != Kind.Normal) { await Fault(kind, seed, rng); continue; }
                    var watch = Stopwatch.StartNew();
                    using var response = await http.PostAsJsonAsync("/v1/completions", Body(seed, n, 64));
                    string text = await response.Content.ReadAsStringAsync();
                    watch.Stop();
                    if (faults && response.StatusCode == HttpStatusCode.ServiceUnavailable)
                    {
                        Unavailable(kind, response, text);
                        continue;
                    }
                    lock (latencies)
                    {
                        if (!response.IsSuccessStatusCode) { Violation(kind, $"{(int)response.StatusCode}: {Trim(text)}"); continue; }
                        latencies.Add(watch.Elapsed.TotalMilliseconds);
                        long completion = JsonDocument.Parse(text).RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt64();
                        tokens += completion;
                        perRequest.Add((watch.Elapsed.TotalMilliseconds, completion));
                    }
                    Count(kind, "200");
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    Violation(kind, $"no answer: {e.GetType().Name}: {e.Message}");
                }
            }
        }

        await Task.WhenAll(Enumerable.Range(0, clients).Select(Client));
        double elapsed = deadline.Elapsed.TotalSeconds;
        var gc = GcSnapshot.Take() - gcBefore;
        long rounds = model.Scheduler.Rounds - roundsBefore;
        double cpuCores = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalSeconds / elapsed;
        double rssPeak = probe.PeakRssMiB;
        // Disconnected streams are cancelled asynchronously: give the server a moment to free their work.
        var settle = Stopwatch.StartNew();
        while ((model.Pool.SequenceCount > 0 || model.Pool.Stats().HeldBlocks > 0) && settle.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(50);
        var stats = model.Pool.Stats();
        int live = model.Pool.SequenceCount;
        await app.StopAsync();
        double rssEnd = Probe.RssMiB();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        double rssEndAfterGc = Probe.RssMiB();

        latencies.Sort();
        double P(double q) => latencies.Count == 0 ? double.NaN : latencies[Math.Min(latencies.Count - 1, (int)(q * latencies.Count))];
        Console.WriteLine($"| clients | n | requests | ok | violations | req/s | completion tok/s | p50 ms | p95 ms | p99 ms | max ms |");
        Console.WriteLine($"|---|---|---|---|---|---|---|---|---|---|---|");
        Console.WriteLine($"| {clients} | {n} | {requests} | {latencies.Count} | {failures.Count} | {latencies.Count / elapsed:F1} | {tokens / elapsed:F0} | {P(0.5):F0} | {P(0.95):F0} | {P(0.99):F0} | {(latencies.Count > 0 ? latencies[^1] : double.NaN):F0} |");
        if (faults)
            foreach (var (outcome, count) in outcomes.OrderBy(o => o.Key, StringComparer.Ordinal)) Console.WriteLine($"//   {outcome}: {count}");
        foreach (var f in failures.Distinct().Take(10)) Console.WriteLine($"// violation: {f}");
        if (perRequest.Count > 0)
        {
            // Where the tail is: a request's latency is (roughly) its tokens x the round time, so split the two.
            var msPerToken = perRequest.Select(r => r.Ms / Math.Max(1, r.Tokens)).Order().ToArray();
            double Q(double[] xs, double q) => xs[Math.Min(xs.Length - 1, (int)(q * xs.Length))];
            var slowest = perRequest.OrderByDescending(r => r.Ms).Take(Math.Max(1, perRequest.Count / 100)).ToArray();
            var toks = perRequest.Select(r => (double)r.Tokens).Order().ToArray();
            Console.WriteLine($"// tail: completion tokens p50 {Q(toks, 0.5):F0}, p99 {Q(toks, 0.99):F0}; ms per token p50 {Q(msPerToken, 0.5):F2}, p99 {Q(msPerToken, 0.99):F2}; the slowest 1% ({slowest.Length}) average {slowest.Average(r => r.Tokens):F0} tokens, {slowest.Average(r => r.Ms / Math.Max(1, r.Tokens)):F2} ms/token");
            Console.WriteLine($"// scheduler: {rounds} rounds in {elapsed:F1} s, {1000 * elapsed / Math.Max(1, rounds):F2} ms a round on average (wall, incl. idle)");
        }
        Console.WriteLine($"// GC during the run: {gc}; thread-pool probe delay p50 {probe.Delay(0.5):F1} ms, p99 {probe.Delay(0.99):F1} ms, max {probe.Delay(1):F1} ms; thread-pool threads at end {ThreadPool.ThreadCount}");
        Console.WriteLine($"// OS: a dedicated thread's 10 ms wait overshoots p50 {probe.Overshoot(0.5):F1} ms, p99 {probe.Overshoot(0.99):F1} ms, max {probe.Overshoot(1):F1} ms; the process used {cpuCores:F2} of {Environment.ProcessorCount} cores");
        Console.WriteLine($"// sequence create + release through the scheduler (what each request waits for to start and to end): wait p50 {probe.LockWait(0.5):F1} ms, p99 {probe.LockWait(0.99):F1} ms, max {probe.LockWait(1):F1} ms");
        Console.WriteLine($"// RSS MiB: start {probe.StartRssMiB:F0}, peak {rssPeak:F0}, end {rssEnd:F0} (after a full GC {rssEndAfterGc:F0}); managed heap at end {GC.GetTotalMemory(false) / 1048576.0:F0} MiB");
        if (probe.Minutes.Count > 0)
            Console.WriteLine($"// each minute, RSS / managed heap MiB: {string.Join(", ", probe.Minutes.Select(m => $"{m.RssMiB:F0}/{m.HeapMiB:F0}"))}");
        Console.WriteLine($"// after the run: {live} live sequences; KV blocks {stats}; scheduler: {model.Scheduler.Preemptions} preemptions, {model.Scheduler.Deferrals} deferrals; load average {File.ReadAllText("/proc/loadavg").Trim()}");
        if (failures.Count > 0 || live > 0 || stats.HeldBlocks > 0) Environment.ExitCode = 1;
    }

    static string Trim(string text) => text.Length > 200 ? text[..200] + "..." : text;

    /// <summary>GC counts and total pause time, to subtract a start from an end.</summary>
    readonly record struct GcSnapshot(int Gen0, int Gen1, int Gen2, TimeSpan Pause)
    {
        public static GcSnapshot Take() => new(GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2), GC.GetTotalPauseDuration()) { Allocated = GC.GetTotalAllocatedBytes() };
        public long Allocated { get; init; }
        public static GcSnapshot operator -(GcSnapshot a, GcSnapshot b) => new(a.Gen0 - b.Gen0, a.Gen1 - b.Gen1, a.Gen2 - b.Gen2, a.Pause - b.Pause) { Allocated = a.Allocated - b.Allocated };
        public override string ToString() => $"{Gen0} gen0 / {Gen1} gen1 / {Gen2} gen2 collections, {Pause.TotalMilliseconds:F0} ms paused in all, {Allocated / 1048576.0:F0} MiB allocated";
    }

    /// <summary>
    /// Samples the RSS every 250 ms, and every 10 ms queues a work item on the thread pool and records how long it
    /// waited to run: a starved pool (or a GC pause, or a descheduled process) shows up as a long wait.
    /// </summary>
    sealed class Probe : IDisposable
    {
        readonly List<double> _delays = [];
        readonly List<double> _overshoots = [];
        readonly List<double> _lockWaits = [];
        readonly Action _schedulerCall;
        readonly CancellationTokenSource _stop = new();
        readonly Thread _thread;
        public double StartRssMiB { get; } = RssMiB();
        public double PeakRssMiB { get; private set; }
        /// <summary>RSS and managed heap every minute: a leak shows as a climb after the first minutes' warm-up.</summary>
        public List<(double RssMiB, double HeapMiB)> Minutes { get; } = [];

        public Probe(Action schedulerCall)
        {
            _schedulerCall = schedulerCall;
            PeakRssMiB = StartRssMiB;
            _thread = new Thread(Loop) { IsBackground = true, Name = "load probe" };
            _thread.Start();
        }

        void Loop()
        {
            var rss = Stopwatch.StartNew();
            var minute = Stopwatch.StartNew();
            while (!_stop.IsCancellationRequested)
            {
                long queued = Stopwatch.GetTimestamp();
                var ran = new ManualResetEventSlim(); // not disposed: the work item may still set it after a stop
                ThreadPool.UnsafeQueueUserWorkItem(_ =>
                {
                    lock (_delays) _delays.Add(Stopwatch.GetElapsedTime(queued).TotalMilliseconds);
                    ran.Set();
                }, null);
                WaitHandle.WaitAny([ran.WaitHandle, _stop.Token.WaitHandle]);
                if (rss.ElapsedMilliseconds >= 250) { PeakRssMiB = Math.Max(PeakRssMiB, RssMiB()); rss.Restart(); }
                if (minute.Elapsed.TotalSeconds >= 60) { lock (_delays) Minutes.Add((RssMiB(), GC.GetTotalMemory(false) / 1048576.0)); minute.Restart(); }
                // How late this dedicated thread wakes from a 10 ms wait: the OS's scheduling delay, apart from the pool.
                long before = Stopwatch.GetTimestamp();
                _stop.Token.WaitHandle.WaitOne(10);
                double overshoot = Stopwatch.GetElapsedTime(before).TotalMilliseconds - 10;
                lock (_delays) _overshoots.Add(Math.Max(0, overshoot));
                // How long a thread waits for the scheduler's lock, as a request does to create or free its sequence.
                long asked = Stopwatch.GetTimestamp();
                _schedulerCall();
                double waited = Stopwatch.GetElapsedTime(asked).TotalMilliseconds;
                lock (_delays) _lockWaits.Add(waited);
            }
        }

        public double Delay(double q) => Quantile(_delays, q);
        public double Overshoot(double q) => Quantile(_overshoots, q);
        public double LockWait(double q) => Quantile(_lockWaits, q);

        double Quantile(List<double> xs, double q)
        {
            lock (_delays)
            {
                if (xs.Count == 0) return double.NaN;
                var sorted = xs.Order().ToArray();
                return sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
            }
        }

        public static double RssMiB()
        {
            using var self = Process.GetCurrentProcess();
            return self.WorkingSet64 / 1048576.0;
        }

        public void Dispose()
        {
            _stop.Cancel();
            _thread.Join();
            _stop.Dispose();
        }
    }

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("cannot find the repository root (Engine.sln) above " + AppContext.BaseDirectory);
    }
}
