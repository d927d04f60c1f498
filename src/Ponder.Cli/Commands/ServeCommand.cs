using System.CommandLine;
using System.Runtime.InteropServices;
using Ponder.Hosting;
using Ponder.Server;

namespace Ponder.Cli.Commands;

/// <summary><c>ponder serve</c>: an OpenAI-compatible HTTP server (see <see cref="PonderServer"/>).</summary>
public static class ServeCommand
{
    /// <summary>The environment variable read for the API key when <c>--api-key</c> is not given.</summary>
    public const string ApiKeyVariable = "PONDER_API_KEY";

    public static Command Create()
    {
        var defaults = new ServerLimits();
        var model = CliCommon.ModelOption();
        model.Required = false; // --cluster serves the silos' models
        var cluster = ClusterCommands.ClusterOption(required: false,
            "Serve as the cluster's front end: route each request to a silo (ponder silo --serve-urls) by prompt prefix; a Redis connection string or dev");
        var gateways = ClusterCommands.GatewaysOption();
        var routing = new Option<string>("--routing") { Description = "With --cluster: affinity (shared prompt prefix -> same silo; least-loaded when saturated) or random", DefaultValueFactory = _ => "affinity" };
        var prm = new Option<string[]>("--prm")
        {
            Description = "A value-head PRM (same tokenizer): name=path registers it under a name requests may choose (\"ponder\": {\"prm\": name}); " +
                          "a bare path is the default PRM. Repeatable.",
            AllowMultipleArgumentsPerToken = false,
        };
        var urls = new Option<string>("--urls") { Description = "Addresses to listen on, ';'-separated", DefaultValueFactory = _ => "http://127.0.0.1:8000" };
        var kvTokens = new Option<int>("--kv-tokens") { Description = "KV cache capacity in tokens, shared by all requests", DefaultValueFactory = _ => 65536 };
        var threads = CliCommon.ThreadsOption();
        var chatMl = new Option<bool>("--allow-chatml-fallback") { Description = "Serve a model without a usable chat template (tokenizer_config.json) with ChatML instead of failing" };
        var apiKey = new Option<string?>("--api-key") { Description = $"Require 'Authorization: Bearer <key>' on every request (default: ${ApiKeyVariable}, else no key)" };
        var hosts = new Option<string?>("--allowed-hosts") { Description = "Host header names to answer, ';'-separated (default: those of --urls; loopback names for loopback and wildcard addresses)" };
        var maxBody = new Option<long>("--max-body-bytes") { Description = "Largest request body", DefaultValueFactory = _ => defaults.MaxBodyBytes };
        var maxPrompt = new Option<int>("--max-prompt-chars") { Description = "Most characters in a prompt (or all chat messages), checked before tokenization", DefaultValueFactory = _ => defaults.MaxPromptChars };
        var maxN = new Option<int>("--max-n") { Description = "Largest ponder.n", DefaultValueFactory = _ => defaults.MaxN };
        var maxBeam = new Option<int>("--max-beam-width") { Description = "Largest ponder.beam_width", DefaultValueFactory = _ => defaults.MaxBeamWidth };
        var maxGenerations = new Option<double>("--max-budget-generations") { Description = "Largest ponder.budget_generations", DefaultValueFactory = _ => defaults.MaxBudgetGenerations };
        var maxFlops = new Option<long?>("--max-budget-flops") { Description = "Largest ponder.budget_flops (default: no cap)" };
        var kvShare = new Option<double>("--max-request-kv-share")
        {
            Description = "Share of the KV cache one request may hold at worst (prompt + every branch at its longest); 1 = the whole cache",
            DefaultValueFactory = _ => defaults.MaxRequestKvShare ?? 1,
        };
        var maxConcurrent = new Option<int>("--max-concurrent") { Description = "Requests generating at once; more wait (--queue-timeout), then get 503", DefaultValueFactory = _ => defaults.MaxConcurrentRequests };
        var queueTimeout = new Option<double>("--queue-timeout") { Description = "Seconds a request waits for a slot before 503", DefaultValueFactory = _ => defaults.QueueTimeout.TotalSeconds };
        var requestTimeout = new Option<double>("--request-timeout") { Description = "Seconds a request may run before it is cancelled (504)", DefaultValueFactory = _ => defaults.RequestTimeout.TotalSeconds };
        var shutdownTimeout = new Option<double>("--shutdown-timeout") { Description = "On SIGTERM/SIGINT, seconds in-flight requests may run on before they are cancelled", DefaultValueFactory = _ => 10 };
        var cmd = new Command("serve", "Serve a model over an OpenAI-compatible HTTP API (/v1/models, /v1/completions, /v1/chat/completions)")
        {
            model, prm, urls, kvTokens, threads, chatMl, apiKey, hosts, maxBody, maxPrompt, maxN, maxBeam, maxGenerations, maxFlops, kvShare,
            maxConcurrent, queueTimeout, requestTimeout, shutdownTimeout, cluster, gateways, routing,
        };
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            var (defaultPrm, namedPrms) = ParsePrms(r.GetValue(prm) ?? []);
            var limits = new ServerLimits
            {
                MaxBodyBytes = r.GetValue(maxBody),
                MaxPromptChars = r.GetValue(maxPrompt),
                MaxN = r.GetValue(maxN),
                MaxBeamWidth = r.GetValue(maxBeam),
                MaxBudgetGenerations = r.GetValue(maxGenerations),
                MaxBudgetFlops = r.GetValue(maxFlops),
                MaxRequestKvShare = r.GetValue(kvShare),
                MaxConcurrentRequests = r.GetValue(maxConcurrent),
                QueueTimeout = TimeSpan.FromSeconds(r.GetValue(queueTimeout)),
                RequestTimeout = TimeSpan.FromSeconds(r.GetValue(requestTimeout)),
            }.Validate();
            // SIGTERM (docker stop, systemd) and SIGINT (Ctrl+C) stop the server gracefully instead of killing the process.
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
            using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });

            string? key = r.GetValue(apiKey) ?? Environment.GetEnvironmentVariable(ApiKeyVariable);
            if (r.GetValue(cluster) is { } on)
                return await ClusterCommands.ServeAsync(on, r.GetValue(gateways), r.GetValue(routing)!, new PonderServerOptions
                {
                    Urls = Split(r.GetValue(urls)!), ApiKey = string.IsNullOrEmpty(key) ? null : key,
                    AllowedHosts = r.GetValue(hosts) is { } ah ? Split(ah) : null, Limits = limits, ShutdownTimeout = TimeSpan.FromSeconds(r.GetValue(shutdownTimeout)),
                }, stop.Token);
            if (r.GetValue(model) is null) throw new ArgumentException("--model is required (or --cluster to front a cluster's silos)");
            await using var policy = await CliCommon.LoadAsync(r.GetValue(model)!, r.GetValue(threads), r.GetValue(kvTokens), stop.Token);
            var loaded = new Dictionary<string, PonderModel>(StringComparer.Ordinal);
            PonderModel? verifier = null;
            try
            {
                if (defaultPrm is not null) verifier = await CliCommon.LoadAsync(defaultPrm, r.GetValue(threads), r.GetValue(kvTokens), stop.Token);
                foreach (var (name, path) in namedPrms) loaded[name] = await CliCommon.LoadAsync(path, r.GetValue(threads), r.GetValue(kvTokens), stop.Token);
            }
            catch
            {
                verifier?.Dispose();
                foreach (var m in loaded.Values) m.Dispose();
                throw;
            }
            using var engine = new CompletionEngine(policy, verifier, ownsPrm: true, namedPrms: loaded);
            var template = ChatTemplate.ForModel(policy, allowChatMlFallback: r.GetValue(chatMl));
            if (template.FallbackReason is { } why) Console.Error.WriteLine($"chat template: ChatML ({why})");
            string[] addresses = Split(r.GetValue(urls)!);
            await using var app = PonderServer.Create(engine, new PonderServerOptions
            {
                Urls = addresses,
                Template = template,
                ApiKey = string.IsNullOrEmpty(key) ? null : key,
                AllowedHosts = r.GetValue(hosts) is { } h ? Split(h) : null,
                Limits = limits,
                ShutdownTimeout = TimeSpan.FromSeconds(r.GetValue(shutdownTimeout)),
            });
            await app.StartAsync(stop.Token);
            string prms = engine.PrmNames.Count == 0 ? "" : $", PRMs {string.Join(", ", engine.PrmNames)}";
            Console.Error.WriteLine($"serving {engine.ModelId}{prms} on {string.Join(", ", app.Urls)}{(key is null ? "" : " (API key required)")} (Ctrl+C or SIGTERM stops)");
            try { await Task.Delay(Timeout.Infinite, stop.Token); }
            catch (OperationCanceledException) { }
            Console.Error.WriteLine("stopping: no new requests; in-flight ones finish or are cancelled");
            await app.StopAsync(CancellationToken.None);
            return 0;
        }));
        return cmd;
    }

    static string[] Split(string list) => list.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>
    /// The <c>--prm</c> values: "name=path" registers a named PRM; a bare path is the default PRM (at most one). A value
    /// is "name=path" when the text before its first '=' is a valid PRM name.
    /// </summary>
    public static (string? Default, IReadOnlyList<(string Name, string Path)> Named) ParsePrms(IReadOnlyList<string> values)
    {
        string? bare = null;
        var named = new List<(string, string)>();
        foreach (string value in values)
        {
            int eq = value.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0 && CompletionEngine.IsPrmName(value[..eq]))
            {
                string name = value[..eq], path = value[(eq + 1)..];
                if (path.Length == 0) throw new ArgumentException($"--prm {value}: no path after '='");
                if (named.Any(n => n.Item1 == name)) throw new ArgumentException($"--prm: the name '{name}' is given twice");
                named.Add((name, path));
            }
            else if (bare is not null) throw new ArgumentException($"--prm: two default PRMs ('{bare}' and '{value}'); name them with name=path");
            else bare = value;
        }
        return (bare, named);
    }
}
