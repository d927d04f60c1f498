using System.CommandLine;
using Ponder.Hosting;
using Ponder.Server;

namespace Ponder.Cli.Commands;

/// <summary><c>ponder serve</c>: an OpenAI-compatible HTTP server (see <see cref="PonderServer"/>).</summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = CliCommon.ModelOption();
        var prm = new Option<string?>("--prm") { Description = "A value-head PRM (same tokenizer) for beam / lookahead / DVTS / weighted best-of-N" };
        var urls = new Option<string>("--urls") { Description = "Addresses to listen on, ';'-separated", DefaultValueFactory = _ => "http://127.0.0.1:8000" };
        var kvTokens = new Option<int>("--kv-tokens") { Description = "KV cache capacity in tokens, shared by all requests", DefaultValueFactory = _ => 65536 };
        var threads = CliCommon.ThreadsOption();
        var chatMl = new Option<bool>("--allow-chatml-fallback") { Description = "Serve a model without a usable chat template (tokenizer_config.json) with ChatML instead of failing" };
        var cmd = new Command("serve", "Serve a model over an OpenAI-compatible HTTP API (/v1/models, /v1/completions, /v1/chat/completions)")
        {
            model, prm, urls, kvTokens, threads, chatMl,
        };
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            await using var policy = await CliCommon.LoadAsync(r.GetValue(model)!, r.GetValue(threads), r.GetValue(kvTokens), ct);
            PonderModel? verifier = r.GetValue(prm) is { } prmPath ? await CliCommon.LoadAsync(prmPath, r.GetValue(threads), r.GetValue(kvTokens), ct) : null;
            using var engine = new CompletionEngine(policy, verifier, ownsPrm: true);
            var template = ChatTemplate.ForModel(policy, allowChatMlFallback: r.GetValue(chatMl));
            if (template.FallbackReason is { } why) Console.Error.WriteLine($"chat template: ChatML ({why})");
            string[] addresses = r.GetValue(urls)!.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            await using var app = PonderServer.Create(engine, new PonderServerOptions { Urls = addresses, Template = template });
            await app.StartAsync(ct);
            Console.Error.WriteLine($"serving {engine.ModelId} on {string.Join(", ", app.Urls)} (Ctrl+C stops)");
            try { await Task.Delay(Timeout.Infinite, ct); }
            catch (OperationCanceledException) { }
            await app.StopAsync(CancellationToken.None);
            return 0;
        }));
        return cmd;
    }
}
