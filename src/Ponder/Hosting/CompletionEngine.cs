using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Ponder.Models;
using Ponder.Sampling;
using Ponder.Scheduling;
using Ponder.Search;
using Ponder.Search.Engine;

namespace Ponder.Hosting;

/// <summary>
/// Text completions on one policy model, with optional test-time compute (best-of-N, majority, beam, lookahead, DVTS)
/// scored by a value-head PRM: what the <see cref="PonderChatClient"/> and the server run.
/// <para>
/// Thread safety: every member may be called from many threads at once. Each call gets its own scheduler request
/// and budget; the model's <see cref="StepScheduler"/> batches all calls' tokens into shared forwards, and a call's
/// sequences return their KV blocks when it ends, is cancelled, or fails. The PRM (when given) is driven by the policy's
/// scheduler: do not generate with the PRM model elsewhere at the same time.
/// </para>
/// </summary>
public sealed class CompletionEngine : IDisposable
{
    readonly ScheduledModel? _prm;
    readonly ConcurrentDictionary<string, Lazy<Task<(PonderModel Model, ScheduledModel Scheduled)>>> _loadedPrms = new(StringComparer.Ordinal);
    readonly bool _ownsPrm;

    /// <summary>An engine over <paramref name="model"/>; <paramref name="prm"/> (a value-head model sharing the tokenizer) scores search steps.</summary>
    /// <param name="model">The policy; it must have a tokenizer and a language-model head.</param>
    /// <param name="prm">Optional PRM.</param>
    /// <param name="ownsPrm">Dispose <paramref name="prm"/> with the engine.</param>
    /// <param name="modelId">The name reported to clients (default: the model folder's name).</param>
    public CompletionEngine(PonderModel model, PonderModel? prm = null, bool ownsPrm = false, string? modelId = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Tokenizer is null) throw new ArgumentException($"model '{model.Location}' has no tokenizer: a completion engine takes text", nameof(model));
        if (model.Config.Head != HeadKind.LanguageModel) throw new ArgumentException($"model '{model.Location}' has a value head; it cannot generate", nameof(model));
        Model = model;
        Prm = prm;
        _ownsPrm = ownsPrm;
        if (prm is not null) _prm = ScheduledPrm(prm, nameof(prm));
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

    ScheduledModel ScheduledPrm(PonderModel prm, string param)
    {
        if (prm.Config.Head != HeadKind.Value) throw new ArgumentException($"PRM '{prm.Location}' has no value head (a language model cannot score steps)", param);
        if (prm.Config.Vocab < Model.Config.Vocab)
            throw new ArgumentException($"PRM '{prm.Location}' has a vocabulary of {prm.Config.Vocab} ids, the policy {Model.Config.Vocab}: they must share the tokenizer", param);
        return new ScheduledModel("prm", prm.Transformer, prm.Pool, prm.PrefixIndex);
    }

    /// <summary>Generates the whole completion and returns its text and report.</summary>
    public async Task<(string Text, CompletionReport Report)> CompleteAsync(string prompt, SamplingOptions? sampling = null, TestTimeComputeOptions? compute = null, CancellationToken cancellationToken = default)
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
    public async IAsyncEnumerable<CompletionChunk> StreamAsync(string prompt, SamplingOptions? sampling = null, TestTimeComputeOptions? compute = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        sampling = (sampling ?? new SamplingOptions()).Validate();
        compute ??= new TestTimeComputeOptions();
        int[] tokens = Model.Encode(prompt);
        if (tokens.Length == 0) throw new ArgumentException("the prompt is empty (no tokens)", "prompt");
        if (tokens.Length >= Model.Config.MaxPositions)
            throw new ArgumentException($"the prompt has {tokens.Length} tokens; the model has {Model.Config.MaxPositions} positions", "prompt");
        // A budget that cannot pay for the prompt itself is a client's mistake, not an empty answer.
        long prefill = Model.Scheduled.Counter.Chunk(tokens.Length, 0, 1).Total;
        if (compute.BudgetFlops < prefill)
            throw new ArgumentException($"budget_flops {compute.BudgetFlops} is below the {prefill} FLOPs the {tokens.Length}-token prompt's prefill needs", "budget_flops");
        var prm = await ResolvePrmAsync(compute, cancellationToken).ConfigureAwait(false);
        // Without a separate PRM, a policy with a shared value row scores its own steps.
        IStepVerifier? verifier = prm is not null ? new ValueHeadVerifier(prm)
            : Model.Config.SharedValueHead ? new SharedValueHeadVerifier(Model.Scheduled) : null;
        var strategy = compute.Strategy == TestTimeStrategy.None ? null : CreateStrategy(compute, sampling, verifier is not null);

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
                long reused = flops.TokensReused;
                // Every sampled token but the last was fed back (one row each) after the prompt's uncached rows.
                int output = flops.Generations == 0 ? 0 : (int)Math.Max(0, flops.TokensComputed - (tokens.Length - reused) + 1);
                bool exhausted = flops.BudgetExhaustedReason is not null;
                string finish = exhausted || output >= sampling.MaxNewTokens ? "length" : "stop";
                report = new CompletionReport(tokens.Length, output, finish, "none", null, exhausted, flops);
            }
            else
            {
                SearchResult result;
                RequestReport flops;
                using (var engine = new ScheduledSearchEngine(Model.Scheduler, Model.Scheduled, Model.Tokenizer!,
                           verifier, compute.CreateBudget(), new SearchEngineOptions { Name = "completion" }, cancellationToken))
                {
                    result = await strategy.RunAsync(engine, prompt, cancellationToken).ConfigureAwait(false);
                    flops = engine.Request.Report();
                }
                var chosen = result.Candidates.Where(c => c.Answer is not null && c.Answer == result.Answer).MaxBy(c => c.Score)
                             ?? result.Candidates.MaxBy(c => c.Score);
                string text = chosen?.Text ?? "";
                long outputTokens = flops.Models.Where(m => m.Model == Model.Scheduled.Name).Sum(m => m.TokensComputed) - (tokens.Length - Math.Min(tokens.Length, flops.TokensReused));
                report = new CompletionReport(tokens.Length, (int)Math.Max(0, outputTokens), result.BudgetExhausted || chosen is { Finished: false } ? "length" : "stop",
                    strategy.Name, result.Answer, result.BudgetExhausted, flops);
                if (text.Length > 0) yield return new CompletionChunk(text);
            }
            yield return new CompletionChunk("", report);
        }
        finally
        {
            PonderTelemetry.Stop(activity, report, report is null ? new OperationCanceledException("the completion did not finish") : null);
        }
    }

    ISearchStrategy CreateStrategy(TestTimeComputeOptions compute, SamplingOptions sampling, bool hasPrm)
    {
        bool majority = compute.Strategy == TestTimeStrategy.Majority || (compute.Strategy == TestTimeStrategy.BestOfN && !hasPrm);
        if (!hasPrm && compute.Strategy is TestTimeStrategy.Beam or TestTimeStrategy.Lookahead or TestTimeStrategy.Dvts)
            throw new ArgumentException($"strategy '{compute.StrategyName}' needs a PRM to score steps: load the engine with one or pass 'prm'", "strategy");
        var options = new SearchOptions
        {
            Prompt = static p => p,
            Selector = new AnswerSelector(majority ? AnswerSelection.Majority : AnswerSelection.Weighted),
            // Search needs diverse samples: a greedy request still samples its proposals at temperature 1.
            Temperature = sampling.Temperature > 0 ? sampling.Temperature : 1f,
            TopP = sampling.TopP,
            Seed = sampling.Seed,
            MaxStepTokens = compute.MaxStepTokens,
            MaxRounds = compute.MaxRounds,
        };
        return compute.Strategy switch
        {
            TestTimeStrategy.BestOfN or TestTimeStrategy.Majority => new BestOfN(compute.N, options),
            TestTimeStrategy.Beam => new BeamSearch(compute.N, compute.BeamWidth, 0, options),
            TestTimeStrategy.Lookahead => new BeamSearch(compute.N, compute.BeamWidth, compute.LookaheadSteps, options),
            _ => new Dvts(compute.N, compute.BeamWidth, options),
        };
    }

    async Task<ScheduledModel?> ResolvePrmAsync(TestTimeComputeOptions compute, CancellationToken cancellationToken)
    {
        if (compute.PrmPath is null) return _prm;
        string path = Path.GetFullPath(compute.PrmPath);
        if (!Directory.Exists(path) && !File.Exists(path)) throw new ArgumentException($"prm '{compute.PrmPath}' does not exist", "prm");
        var lazy = _loadedPrms.GetOrAdd(path, p => new Lazy<Task<(PonderModel, ScheduledModel)>>(async () =>
        {
            var model = await PonderModel.LoadAsync(p, new ModelOptions { Backend = Model.Backend }).ConfigureAwait(false);
            try { return (model, ScheduledPrm(model, "prm")); }
            catch { model.Dispose(); throw; }
        }));
        try { return (await lazy.Value.WaitAsync(cancellationToken).ConfigureAwait(false)).Scheduled; }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException or FileNotFoundException)
        {
            _loadedPrms.TryRemove(path, out _);
            throw new ArgumentException($"prm '{compute.PrmPath}' could not be loaded: {e.Message}", "prm", e);
        }
    }

    /// <summary>Stops the gauges; disposes PRMs loaded by path (and the constructor's PRM when owned). The policy stays the caller's.</summary>
    public void Dispose()
    {
        PonderTelemetry.Untrack(Model);
        foreach (var lazy in _loadedPrms.Values)
            if (lazy.IsValueCreated && lazy.Value.IsCompletedSuccessfully) lazy.Value.Result.Model.Dispose();
        _loadedPrms.Clear();
        if (_ownsPrm) Prm?.Dispose();
    }
}
