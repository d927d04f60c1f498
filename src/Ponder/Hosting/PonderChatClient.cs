using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Ponder.Sampling;

namespace Ponder.Hosting;

/// <summary>Options of <see cref="PonderChatClient"/>.</summary>
public sealed record PonderChatClientOptions
{
    /// <summary>The chat template; null = the model's own (tokenizer_config.json; see <see cref="ChatTemplate.ForModel"/>).</summary>
    public ChatTemplate? Template { get; init; }
    /// <summary>Opt-in: when the model has no usable template, use ChatML (logged to <see cref="Logger"/>, reason in <see cref="ChatTemplate.FallbackReason"/>) instead of failing.</summary>
    public bool AllowChatMlFallback { get; init; }
    /// <summary>Where a ChatML fallback is logged.</summary>
    public Microsoft.Extensions.Logging.ILogger? Logger { get; init; }
    /// <summary>A value-head PRM sharing the policy's tokenizer, for beam / lookahead / DVTS / weighted best-of-N.</summary>
    public PonderModel? Prm { get; init; }
    /// <summary>The model id reported in responses (default: the model folder's name).</summary>
    public string? ModelId { get; init; }
    /// <summary>
    /// Sampling defaults that <see cref="ChatOptions"/> override (temperature, top-p, top-k, max tokens, stops). Its
    /// <see cref="SamplingOptions.Seed"/> is not used: see <see cref="Seed"/>.
    /// </summary>
    public SamplingOptions Sampling { get; init; } = new();
    /// <summary>
    /// Seed of calls whose <see cref="ChatOptions.Seed"/> is null; null (the default) = a fresh random seed per call, so
    /// repeated calls sample different answers. Set it (or <see cref="ChatOptions.Seed"/>) to reproduce a call.
    /// </summary>
    public ulong? Seed { get; init; }
}

/// <summary>
/// <see cref="IChatClient"/> over a <see cref="PonderModel"/>: messages go through the model's chat template, the
/// answer streams token by token (or arrives whole from a search). Test-time compute is chosen per call through
/// <see cref="ChatOptions.AdditionalProperties"/>: the keys of <see cref="TestTimeComputeOptions.Keys"/> (<c>strategy</c>,
/// <c>n</c>, <c>beam_width</c>, <c>budget_flops</c>, <c>budget_generations</c>, <c>prm</c>, ...), or a whole
/// <see cref="TestTimeComputeOptions"/> under <see cref="OptionsKey"/> ("ponder"). Any other key is refused by name
/// (<see cref="ArgumentException.ParamName"/> is the key), as is <see cref="ChatOptions.MaxOutputTokens"/> with a search
/// (a search's length is bounded by max_step_tokens x max_rounds and its budget). Temperature 0 is greedy, with or
/// without a search. Without a seed each call samples with a fresh random one (<see cref="PonderChatClientOptions.Seed"/>).
/// The response's <see cref="UsageDetails"/> has input/output tokens and, in <c>AdditionalCounts</c>,
/// <c>flops</c>, <c>flops.{projection,attention,lm_head,prm_head,elementwise}</c> and <c>generations</c>; its
/// <c>AdditionalProperties["ponder"]</c> holds the whole <see cref="CompletionReport"/>.
/// Thread-safe: one client may serve many concurrent calls (see <see cref="CompletionEngine"/>).
/// <code>
///   using var chat = model.AsChatClient();
///   var reply = await chat.GetResponseAsync("Q: 2+3*4",
///       new ChatOptions { AdditionalProperties = new() { ["strategy"] = "best_of_n", ["n"] = 8, ["budget_flops"] = 1_000_000_000L } });
/// </code>
/// </summary>
public sealed class PonderChatClient : IChatClient
{
    readonly PonderChatClientOptions _options;

    /// <summary>The <see cref="ChatOptions.AdditionalProperties"/> key of typed <see cref="TestTimeComputeOptions"/>.</summary>
    public const string OptionsKey = "ponder";

    /// <summary>A client over <paramref name="model"/> (which stays the caller's to dispose).</summary>
    public PonderChatClient(PonderModel model, PonderChatClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        _options = options ?? new PonderChatClientOptions();
        Engine = new CompletionEngine(model, _options.Prm, ownsPrm: false, _options.ModelId);
        Template = _options.Template ?? ChatTemplate.ForModel(model, _options.AllowChatMlFallback, _options.Logger);
        Metadata = new ChatClientMetadata("ponder", null, Engine.ModelId);
    }

    /// <summary>The engine calls run on.</summary>
    public CompletionEngine Engine { get; }
    /// <summary>The template messages go through.</summary>
    public ChatTemplate Template { get; }
    /// <summary>Provider "ponder" and the model id.</summary>
    public ChatClientMetadata Metadata { get; }

    /// <inheritdoc/>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (prompt, sampling, compute) = Prepare(messages, options);
        var (text, report) = await Engine.CompleteAsync(prompt, sampling, compute, cancellationToken).ConfigureAwait(false);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text))
        {
            ModelId = Engine.ModelId,
            FinishReason = report.FinishReason == "length" ? ChatFinishReason.Length : ChatFinishReason.Stop,
            Usage = Usage(report),
            AdditionalProperties = new AdditionalPropertiesDictionary { ["ponder"] = report },
            CreatedAt = DateTimeOffset.UtcNow,
        };
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (prompt, sampling, compute) = Prepare(messages, options);
        string id = Guid.NewGuid().ToString("N");
        await foreach (var chunk in Engine.StreamAsync(prompt, sampling, compute, cancellationToken).ConfigureAwait(false))
        {
            if (chunk.Report is { } report)
            {
                yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(report))])
                {
                    ResponseId = id, ModelId = Engine.ModelId,
                    FinishReason = report.FinishReason == "length" ? ChatFinishReason.Length : ChatFinishReason.Stop,
                    AdditionalProperties = new AdditionalPropertiesDictionary { ["ponder"] = report },
                };
            }
            else if (chunk.Text.Length > 0)
                yield return new ChatResponseUpdate(ChatRole.Assistant, chunk.Text) { ResponseId = id, ModelId = Engine.ModelId };
        }
    }

    (ChatPrompt Prompt, SamplingOptions Sampling, TestTimeComputeOptions? Compute) Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var turns = messages.Select(m => new ChatTurn(m.Role.Value, m.Text)).ToList();
        if (turns.Count == 0) throw new ArgumentException("no chat messages", nameof(messages));
        var prompt = Template.RenderPrompt(turns, addGenerationPrompt: true);
        var sampling = _options.Sampling;
        if (options is not null)
        {
            sampling = sampling with
            {
                Temperature = options.Temperature ?? sampling.Temperature,
                TopP = options.TopP ?? sampling.TopP,
                TopK = options.TopK ?? sampling.TopK,
                MaxNewTokens = options.MaxOutputTokens ?? sampling.MaxNewTokens,
                StopStrings = [.. sampling.StopStrings, .. options.StopSequences ?? []],
            };
        }
        ulong seed = options?.Seed is long s ? unchecked((ulong)s) : _options.Seed ?? unchecked((ulong)Random.Shared.NextInt64(long.MinValue, long.MaxValue));
        sampling = sampling with { Seed = seed, StopStrings = [.. sampling.StopStrings, .. Template.StopStrings] };
        var compute = ComputeOptions(options?.AdditionalProperties);
        if (compute?.Strategy is { } strategy && options?.MaxOutputTokens is int max)
            throw new ArgumentException($"MaxOutputTokens ({max}) does not apply to strategy '{strategy.RecordName}': a search is bounded by " +
                "max_step_tokens x max_rounds and its budget (budget_flops, budget_generations)", nameof(ChatOptions.MaxOutputTokens));
        return (prompt, sampling, compute);
    }

    /// <summary>The test-time compute options of a call: typed under <see cref="OptionsKey"/>, or loose keys; any other key is refused by name.</summary>
    static TestTimeComputeOptions? ComputeOptions(AdditionalPropertiesDictionary? properties)
    {
        if (properties is null || properties.Count == 0) return null;
        foreach (var key in properties.Keys)
            if (key != OptionsKey && !TestTimeComputeOptions.Keys.Contains(key))
                throw new ArgumentException($"ChatOptions.AdditionalProperties['{key}'] is not a Ponder option (known: {OptionsKey}, {string.Join(", ", TestTimeComputeOptions.Keys)})", key);
        if (!properties.TryGetValue(OptionsKey, out object? typed) || typed is null) return TestTimeComputeOptions.FromProperties(properties);
        if (typed is not TestTimeComputeOptions compute)
            throw new ArgumentException($"ChatOptions.AdditionalProperties['{OptionsKey}'] must be a {nameof(TestTimeComputeOptions)}, got {typed.GetType().Name}", OptionsKey);
        if (properties.Count > 1)
            throw new ArgumentException($"ChatOptions.AdditionalProperties['{OptionsKey}'] (typed options) cannot be combined with loose keys ({string.Join(", ", properties.Keys.Where(k => k != OptionsKey))})", OptionsKey);
        return compute;
    }

    /// <summary>Token counts plus the FLOP report as <see cref="UsageDetails.AdditionalCounts"/>.</summary>
    public static UsageDetails Usage(CompletionReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var counts = new AdditionalPropertiesDictionary<long> { ["flops"] = report.Flops.Flops.Total };
        foreach (var c in Enum.GetValues<Backends.FlopCategory>()) counts["flops." + CompletionReport.CategoryName(c)] = report.Flops.Flops[c];
        counts["generations"] = (long)Math.Ceiling(report.Generations);
        counts["tokens_reused"] = report.Flops.TokensReused;
        return new UsageDetails
        {
            InputTokenCount = report.InputTokens,
            OutputTokenCount = report.OutputTokens,
            TotalTokenCount = report.InputTokens + report.OutputTokens,
            AdditionalCounts = counts,
        };
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return Metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(Engine.Model)) return Engine.Model;
        if (serviceType.IsInstanceOfType(Engine)) return Engine;
        return null;
    }

    int _disposed;

    /// <summary>Releases the engine (its gauges) once, however often called; the model stays the caller's.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) Engine.Dispose();
    }
}

/// <summary>Extension methods for hosts.</summary>
public static class PonderChatClientExtensions
{
    /// <summary>The model as an <see cref="IChatClient"/> (see <see cref="PonderChatClient"/>).</summary>
    public static PonderChatClient AsChatClient(this PonderModel model, PonderChatClientOptions? options = null) => new(model, options);
}
