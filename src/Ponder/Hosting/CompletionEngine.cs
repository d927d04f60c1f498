using System.Runtime.CompilerServices;
using Ponder.Models;
using Ponder.Sampling;
using Ponder.Scheduling;
using Ponder.Search;
using Ponder.Search.Engine;
using Ponder.Tokenization;

namespace Ponder.Hosting;

/// <summary>
/// Text completions on one policy model, with optional test-time compute (best-of-N, majority, beam, lookahead, DVTS)
/// scored by a PRM (a value head, or a token-logit PRM described by its prm.json: <see cref="StepVerifier.ForPrm"/>): what the <see cref="PonderChatClient"/> and the server run.
/// <para>
/// Thread safety: every member may be called from many threads at once. Each call gets its own scheduler request
/// and budget; the model's <see cref="StepScheduler"/> batches all calls' tokens into shared forwards, and a call's
/// sequences return their KV blocks when it ends, is cancelled, or fails. A PRM moves onto the policy's scheduler
/// (its pool has one scheduler), so it cannot serve a second policy's engine at the same time.
/// </para>
/// </summary>
public sealed class CompletionEngine : IDisposable
{
    readonly StepVerifier? _prm;
    readonly Dictionary<string, (PonderModel Model, StepVerifier Verifier)> _namedPrms = new(StringComparer.Ordinal);
    readonly bool _ownsPrm;

    /// <summary>An engine over <paramref name="model"/>; <paramref name="prm"/> (a PRM sharing the tokenizer, in a format <see cref="StepVerifier.ForPrm"/> reads) scores search steps.</summary>
    /// <param name="model">The policy; it must have a tokenizer and a language-model head.</param>
    /// <param name="prm">Optional PRM.</param>
    /// <param name="ownsPrm">Dispose <paramref name="prm"/> with the engine.</param>
    /// <param name="modelId">The name reported to clients (default: the model folder's name).</param>
    /// <param name="namedPrms">PRMs a request may choose by name (<c>prm</c> in <see cref="TestTimeComputeOptions"/>); the
    /// host picks them, so no request ever makes the engine read a file. Owned like <paramref name="prm"/>.</param>
    public CompletionEngine(PonderModel model, PonderModel? prm = null, bool ownsPrm = false, string? modelId = null,
        IReadOnlyDictionary<string, PonderModel>? namedPrms = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Tokenizer is null) throw new ArgumentException($"model '{model.Location}' has no tokenizer: a completion engine takes text", nameof(model));
        if (model.Config.Head != HeadKind.LanguageModel) throw new ArgumentException($"model '{model.Location}' has a value head; it cannot generate", nameof(model));
        Model = model;
        Prm = prm;
        _ownsPrm = ownsPrm;
        if (prm is not null) _prm = ScheduledPrm(prm, nameof(prm));
        foreach (var (name, named) in namedPrms ?? new Dictionary<string, PonderModel>())
        {
            ArgumentNullException.ThrowIfNull(named, nameof(namedPrms));
            if (!IsPrmName(name)) throw new ArgumentException($"PRM name '{name}' must be 1-64 letters, digits, '.', '_' or '-'", nameof(namedPrms));
            _namedPrms[name] = (named, ScheduledPrm(named, nameof(namedPrms)));
        }
        ModelId = modelId ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(model.Location));
        if (string.IsNullOrEmpty(ModelId)) ModelId = "ponder";
        PonderTelemetry.Track(ModelId, model);
    }

    /// <summary>The policy.</summary>
    public PonderModel Model { get; }
    /// <summary>The PRM given at construction, if any.</summary>
    public PonderModel? Prm { get; }
    /// <summary>The model's name for clients.</summary>
    public string ModelId { get; }
    /// <summary>
    /// The most KV tokens one request may hold at worst (prompt + every branch at its longest); a request that could hold
    /// more is refused with <see cref="ArgumentException"/> (param <c>n</c> or <c>max_tokens</c>) before it starts, so
    /// one request cannot take the whole cache. Null = no check. Set it before serving.
    /// </summary>
    public long? MaxRequestKvTokens { get; set; }

    /// <summary>Names of the PRMs a request may choose, sorted.</summary>
    public IReadOnlyList<string> PrmNames => [.. _namedPrms.Keys.Order(StringComparer.Ordinal)];

    /// <summary>Whether <paramref name="name"/> can name a PRM: 1-64 ASCII letters, digits, '.', '_' or '-'.</summary>
    public static bool IsPrmName(string? name) =>
        name is { Length: > 0 and <= 64 } && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');

    StepVerifier ScheduledPrm(PonderModel prm, string param)
    {
        if (prm.Config.Vocab < Model.Config.Vocab)
            throw new ArgumentException($"PRM '{prm.Location}' has a vocabulary of {prm.Config.Vocab} ids, the policy {Model.Config.Vocab}: they must share the tokenizer", param);
        return StepVerifier.ForPrm(prm, Model.Scheduler);
    }

    /// <summary>Generates the whole completion and returns its text and report.</summary>
    public Task<(string Text, CompletionReport Report)> CompleteAsync(string prompt, SamplingOptions? sampling = null, TestTimeComputeOptions? compute = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return CompleteAsync(ChatPrompt.Plain(prompt), sampling, compute, cancellationToken);
    }

    /// <summary>Generates the whole completion of a rendered chat prompt and returns its text and report.</summary>
    public async Task<(string Text, CompletionReport Report)> CompleteAsync(ChatPrompt prompt, SamplingOptions? sampling = null, TestTimeComputeOptions? compute = null, CancellationToken cancellationToken = default)
    {
        var sb = new System.Text.StringBuilder();
        CompletionReport? report = null;
        await foreach (var chunk in StreamAsync(prompt, sampling, compute, cancellationToken).ConfigureAwait(false))
        {
            sb.Append(chunk.Text);
            report ??= chunk.Report;
        }
        return (sb.ToString(), report!);
    }

    /// <summary>
    /// Streams the completion of <paramref name="prompt"/> (no chat template applied: see <see cref="ChatTemplate"/>).
    /// Plain generation streams token by token; a search yields its selected candidate's text once it ends. The last
    /// chunk carries the <see cref="CompletionReport"/>. Bad options throw <see cref="ArgumentException"/> (naming the
    /// option) before any work; cancelling stops the work and frees its blocks.
    /// </summary>
    public IAsyncEnumerable<CompletionChunk> StreamAsync(string prompt, SamplingOptions? sampling = null, TestTimeComputeOptions? compute = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return StreamAsync(ChatPrompt.Plain(prompt), sampling, compute, cancellationToken);
    }

    /// <summary>
    /// Streams the completion of a rendered chat prompt (<see cref="ChatTemplate.RenderPrompt"/>): control tokens count
    /// only where the template wrote them, never inside a message's content. Otherwise as the string overload.
    /// </summary>
    public async IAsyncEnumerable<CompletionChunk> StreamAsync(ChatPrompt prompt, SamplingOptions? sampling = null, TestTimeComputeOptions? compute = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        sampling = (sampling ?? new SamplingOptions()).Validate();
        compute ??= new TestTimeComputeOptions();
        int[] tokens = prompt.Encode(Model.Tokenizer!);
        if (tokens.Length == 0) throw new ArgumentException("the prompt is empty (no tokens)", "prompt");
        int context = Model.Config.MaxPositions;
        if (tokens.Length >= context)
            throw new ArgumentException($"the prompt has {tokens.Length} tokens; the model has {context} positions", "prompt");
        if (MaxRequestKvTokens is { } maxKv)
        {
            // The most KV this request could hold: its prompt plus every branch grown to its longest within the context.
            bool search = compute.Strategy is not null;
            long branches = compute.Strategy?.Branches ?? 1;
            long perBranch = Math.Min(search ? (long)compute.MaxStepTokens * compute.MaxRounds : sampling.MaxNewTokens, context - tokens.Length);
            long worst = tokens.Length + branches * perBranch;
            if (worst > maxKv)
                throw new ArgumentException($"this request could hold {worst} KV tokens ({tokens.Length}-token prompt + {branches} x {perBranch}); one request may hold at most {maxKv}: " +
                    (search ? "lower n, max_step_tokens or max_rounds" : "lower max_tokens"), search ? "n" : "max_tokens");
        }
        // A budget that cannot pay for the prompt itself is a client's mistake, not an empty answer.
        long prefill = Model.Scheduled.Counter.Chunk(tokens.Length, 0, 1).Total;
        if (compute.BudgetFlops < prefill)
            throw new ArgumentException($"budget_flops {compute.BudgetFlops} is below the {prefill} FLOPs the {tokens.Length}-token prompt's prefill needs", "budget_flops");
        var prm = ResolvePrm(compute);
        // Without a separate PRM, a policy with a shared value row scores its own steps.
        StepVerifier? verifier = prm ?? (Model.Config.SharedValueHead ? new SharedValueHeadVerifier(Model.Scheduled) : null);
        var strategy = compute.Strategy is null ? null : CreateStrategy(compute, compute.Strategy, sampling, verifier is not null);

        var activity = PonderTelemetry.Start(ModelId, strategy?.Name ?? "none", tokens.Length);
        CompletionReport? report = null;
        try
        {
            if (strategy is null)
            {
                using var request = Model.CreateRequest(compute.CreateBudget(), "completion", cancellationToken);
                await foreach (var token in Model.GenerateAsync(tokens, sampling, request, cancellationToken).ConfigureAwait(false))
                    if (token.Text.Length > 0) yield return new CompletionChunk(token.Text);
                var flops = request.Report();
                int output = (int)flops.TokensSampled;
                bool exhausted = flops.BudgetExhaustedReason is not null;
                // The context ending the answer is "length" too (the answer was cut, not finished).
                string finish = exhausted || output >= sampling.MaxNewTokens || tokens.Length + output >= context ? "length" : "stop";
                report = new CompletionReport(tokens.Length, output, finish, "none", null, exhausted, flops);
            }
            else
            {
                SearchResult result;
                RequestReport flops;
                using (var engine = new ScheduledSearchEngine(Model.Scheduler, Model.Scheduled, new PromptTokenizer(Model.Tokenizer!, prompt.Text, tokens),
                           verifier, compute.CreateBudget(), new SearchEngineOptions { Name = "completion" }, cancellationToken))
                {
                    result = await strategy.RunAsync(engine, prompt.Text, cancellationToken).ConfigureAwait(false);
                    flops = engine.Request.Report();
                }
                var chosen = result.Candidates.Where(c => c.Answer is not null && c.Answer == result.Answer).MaxBy(c => c.Score)
                             ?? result.Candidates.MaxBy(c => c.Score);
                string text = chosen?.Text ?? "";
                // Every branch's sampled tokens: the search's whole output, as usage counts n choices.
                report = new CompletionReport(tokens.Length, (int)flops.TokensSampled, result.BudgetExhausted || chosen is { Finished: false } ? "length" : "stop",
                    strategy.Name, result.Answer, result.BudgetExhausted, flops);
                if (text.Length > 0) yield return new CompletionChunk(text);
            }
            yield return new CompletionChunk("", report);
        }
        finally
        {
            PonderTelemetry.Stop(activity, report, report is null ? new OperationCanceledException("the completion did not finish") : null, ModelId);
        }
    }

    static ISearchStrategy CreateStrategy(TestTimeComputeOptions compute, StrategySpec spec, SamplingOptions sampling, bool hasPrm)
    {
        // Best-of-N without a PRM falls back to majority voting; the searches cannot.
        if (!hasPrm && spec is { Kind: StrategyKind.BestOfN }) spec = spec with { Selection = AnswerSelection.Majority };
        if (!hasPrm && spec.NeedsVerifier)
            throw new ArgumentException($"strategy '{spec.RecordName}' needs a PRM to score steps: load the engine with one or pass 'prm'", "strategy");
        var options = new SearchOptions
        {
            Prompt = static p => p,
            Selector = new AnswerSelector(spec.Selection),
            // Temperature 0 is greedy here too (every branch proposes the same steps): the caller asked for it.
            Temperature = sampling.Temperature,
            TopP = sampling.TopP,
            Seed = sampling.Seed,
            MaxStepTokens = compute.MaxStepTokens,
            MaxRounds = compute.MaxRounds,
        };
        return spec.Create(options);
    }

    StepVerifier? ResolvePrm(TestTimeComputeOptions compute)
    {
        if (compute.PrmName is not { } name) return _prm;
        if (_namedPrms.TryGetValue(name, out var named)) return named.Verifier;
        // The client's text is echoed only when it is a well-formed name: never a path or arbitrary bytes.
        string shown = IsPrmName(name) ? $"'{name}'" : "(not a valid name)";
        string known = _namedPrms.Count == 0 ? "this server registers no named PRMs" : "registered: " + string.Join(", ", PrmNames);
        throw new ArgumentException($"prm {shown} is not a registered PRM ({known})", "prm");
    }

    /// <summary>Stops the gauges; disposes the PRMs when owned. The policy stays the caller's.</summary>
    public void Dispose()
    {
        PonderTelemetry.Untrack(Model);
        if (!_ownsPrm) return;
        Prm?.Dispose();
        foreach (var (model, _) in _namedPrms.Values) if (!ReferenceEquals(model, Prm)) model.Dispose();
    }

    /// <summary>
    /// The model's tokenizer, except that the prompt the search starts from encodes to the ids it was given (the chat
    /// prompt's, with control tokens only where the template put them): the search engine encodes prompts by text.
    /// </summary>
    sealed class PromptTokenizer(ITokenizer inner, string prompt, int[] ids) : ITokenizer
    {
        public int VocabSize => inner.VocabSize;
        public int? BosId => inner.BosId;
        public IReadOnlyList<int> EosIds => inner.EosIds;
        public bool AddBos => inner.AddBos;
        public IReadOnlyList<AddedToken> SpecialTokens => inner.SpecialTokens;
        public int[] Encode(string text, bool addSpecialTokens = true) =>
            addSpecialTokens && text == prompt ? (int[])ids.Clone() : inner.Encode(text, addSpecialTokens);
        public int[] EncodeOrdinary(string text) => inner.EncodeOrdinary(text);
        public string Decode(ReadOnlySpan<int> tokens, bool skipSpecialTokens = false) => inner.Decode(tokens, skipSpecialTokens);
        public byte[] TokenBytes(int id) => inner.TokenBytes(id);
    }
}
