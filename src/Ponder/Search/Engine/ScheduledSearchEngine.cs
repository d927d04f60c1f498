using System.Runtime.CompilerServices;
using System.Text;
using Ponder.Models;
using Ponder.Sampling;
using Ponder.Scheduling;
using Ponder.Tokenization;

namespace Ponder.Search.Engine;

/// <summary>How the engine cuts and ends steps.</summary>
public sealed record SearchEngineOptions
{
    /// <summary>Text that ends a step (the paper: a newline). A step ends at the first token whose text completes it.</summary>
    public string StepDelimiter { get; init; } = "\n";
    /// <summary>Whether a step (delimiter stripped) is the task's final answer, which finishes its branch. Default: it starts with "A:".</summary>
    public Func<string, bool> IsFinalStep { get; init; } = DefaultIsFinalStep;
    /// <summary>The request's name in reports.</summary>
    public string Name { get; init; } = "search";

    /// <summary>The arithmetic task's answer line: a step starting with "A:" (after leading white space).</summary>
    public static bool DefaultIsFinalStep(string step) => step.AsSpan().TrimStart().StartsWith("A:", StringComparison.Ordinal);
}

/// <summary>
/// <see cref="ISearchEngine"/> over the <see cref="StepScheduler"/>: every branch's tokens run in batched forwards
/// shared with all other branches (and other searches on the same scheduler), every forward is charged exactly to the
/// search's <see cref="Scheduling.Budget"/>, and forks share KV blocks.
/// <code>
///   Start("Q: 2+3\n") ×N ──► one prompt root per distinct prompt: its policy sequence (prefix-cache aware) is
///                            prefilled once; each branch forks it on its first step (shares every block)
///   branch  = policy Sequence (+ next-token logits)          ── Fork(): sequences forked, no copy
///           + what the verifier keeps for it (a PRM's mirror sequence; see <see cref="StepVerifier"/>)
///   ExtendAsync: per branch, reserve the worst case (MaxStepTokens decodes + an unfilled prompt root) in the
///                budget, or skip it untouched; sample with Rng.Derive(Rng.Derive(seed, branch index), depth)
///                until the delimiter, EOS or MaxStepTokens; release what the step did not use
///   ScoreAsync:  the verifier scores each branch's unscored steps
/// </code>
/// Sequences are created, forked and released through the scheduler, which owns the pools; the engine's own lock
/// guards only its bookkeeping (prompt roots, branch lists).
/// Generations (the paper's unit) are charged as the width of the widest level of the search tree: the most steps
/// sampled at any one depth (see <see cref="BudgetLimits.Generations"/>). Cancelling (the engine's token or a call's)
/// ends the search: queued work stops, every branch and prompt root is disposed, their blocks return to the pools.
/// </summary>
public sealed class ScheduledSearchEngine : ISearchEngine, IDisposable
{
    readonly StepScheduler _scheduler;
    readonly ScheduledModel _policy;
    readonly StepScorer? _scorer;
    readonly ITokenizer _tokenizer;
    readonly SearchEngineOptions _options;
    readonly ScheduledRequest _request;
    readonly HashSet<int> _eos;
    readonly Dictionary<string, PromptRoot> _roots = [];
    readonly List<int> _widthAtDepth = [];
    int _generations;

    /// <summary>
    /// An engine for one search: <paramref name="policy"/> samples steps, <paramref name="verifier"/> (optional) scores
    /// them, <paramref name="budget"/> (null = unlimited) caps them. <paramref name="tokenizer"/> must be the one
    /// both models share.
    /// </summary>
    public ScheduledSearchEngine(StepScheduler scheduler, ScheduledModel policy, ITokenizer tokenizer, StepVerifier? verifier = null,
        Budget? budget = null, SearchEngineOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(scheduler);
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (policy.Config.Head != HeadKind.LanguageModel) throw new ArgumentException($"policy '{policy.Name}' has a value head; it cannot sample steps", nameof(policy));
        if (verifier is not null && verifier.Model.Config.Vocab < policy.Config.Vocab)
            throw new ArgumentException($"verifier '{verifier.Model.Name}' has a vocabulary of {verifier.Model.Config.Vocab} ids, the policy {policy.Config.Vocab}: they must share the tokenizer", nameof(verifier));
        _options = options ?? new SearchEngineOptions();
        ArgumentException.ThrowIfNullOrEmpty(_options.StepDelimiter, nameof(SearchEngineOptions.StepDelimiter));
        ArgumentNullException.ThrowIfNull(_options.IsFinalStep, nameof(SearchEngineOptions.IsFinalStep));
        _scheduler = scheduler; _policy = policy; _tokenizer = tokenizer;
        _eos = [.. tokenizer.EosIds.Count > 0 ? tokenizer.EosIds : policy.Config.EosTokenIds];
        _request = scheduler.CreateRequest(budget, _options.Name, cancellationToken);
        try { _scorer = verifier?.Open(this); }
        catch { _request.Dispose(); throw; }
    }

    /// <summary>The scheduler request every forward of this search is charged to (its report: FLOPs per model and category).</summary>
    public ScheduledRequest Request => _request;

    /// <summary>The search's budget.</summary>
    public Budget SearchBudget => _request.Budget;

    /// <inheritdoc/>
    public BudgetReport Budget
    {
        get
        {
            var spent = _request.Budget.Spent;
            var limits = _request.Budget.Limits;
            var report = _request.Report();
            return new BudgetReport(spent.Flops.Total, limits.Flops, _request.Generations, limits.Generations, report.TokensComputed, report.TokensReused);
        }
    }

    /// <inheritdoc/>
    public int PromptTokens(string prompt) => _tokenizer.Encode(prompt, addSpecialTokens: true).Length;

    /// <inheritdoc/>
    public int ContextTokens => _policy.Config.MaxPositions;

    /// <inheritdoc/>
    public Branch Start(string prompt) => Start(prompt, null);

    /// <inheritdoc/>
    public Branch Start(string prompt, string? verifierPrompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (verifierPrompt == prompt) verifierPrompt = null; // the same context: one root, one encoding
        int[] tokens = _tokenizer.Encode(prompt, addSpecialTokens: true);
        if (tokens.Length == 0) throw new ArgumentException("the prompt encodes to no tokens", nameof(prompt));
        if (tokens.Length >= _policy.Config.MaxPositions)
            throw new ArgumentException($"the prompt has {tokens.Length} tokens; policy '{_policy.Name}' has {_policy.Config.MaxPositions} positions", nameof(prompt));
        _scorer?.CheckVerifierPrompt(verifierPrompt is not null);
        int[] verifierTokens = verifierPrompt is null ? tokens : _tokenizer.Encode(verifierPrompt, addSpecialTokens: true);
        if (verifierTokens.Length == 0) throw new ArgumentException("the verifier prompt encodes to no tokens", nameof(verifierPrompt));
        string key = verifierPrompt is null ? prompt : prompt + "\0" + verifierPrompt;
        lock (Gate)
        {
            ThrowIfClosed();
            if (!_roots.TryGetValue(key, out var root))
            {
                var sequence = _scheduler.CreateSequence(_request, _policy, tokens);
                root = new PromptRoot(this, key, tokens, verifierTokens, sequence);
                _request.Own(root);
                _roots[key] = root;
                if (sequence.ComputedLength > 0) _request.RecordReuse(_policy.Name, sequence.ComputedLength, _policy.Counter.Prefill(sequence.ComputedLength));
            }
            var branch = new EngineBranch(this, root);
            _request.Own(branch);
            return branch;
        }
    }

    /// <inheritdoc/>
    public async ValueTask<StepOutcome> ExtendAsync(IReadOnlyList<Branch> branches, StepSampling sampling, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(branches);
        ArgumentNullException.ThrowIfNull(sampling);
        if (sampling.MaxStepTokens < 1) throw new ArgumentException($"MaxStepTokens {sampling.MaxStepTokens} must be >= 1", nameof(sampling));
        var samplingOptions = new SamplingOptions { Temperature = sampling.Temperature, TopP = sampling.TopP }.Validate();
        using var registration = cancellationToken.Register(static r => ((ScheduledRequest)r!).Dispose(), _request);
        cancellationToken.ThrowIfCancellationRequested();
        var steps = new List<Task<bool>>();
        int admitted = 0, skipped = 0;
        lock (Gate)
        {
            ThrowIfClosed();
            var engineBranches = Check(branches);
            var counter = _policy.Counter;
            for (int i = 0; i < engineBranches.Length; i++)
            {
                var b = engineBranches[i];
                if (b.IsFinished) continue;
                int context = b.Root.Tokens.Length + b.Generated.Count;
                int maxTokens = Math.Min(sampling.MaxStepTokens, _policy.Config.MaxPositions - context);
                if (_scorer is not null) maxTokens = Math.Min(maxTokens, _scorer.StepTokenLimit(b));
                if (maxTokens <= 0) { b.FinishAtContextLimit(); continue; }
                bool carriesRoot = b.Policy is null && b.Root.PolicyReady is null;
                int depth = b.Steps.Count;
                int width = depth < _widthAtDepth.Count ? _widthAtDepth[depth] : 0;
                int generations = Math.Max(0, width + 1 - _generations);
                // Worst case: every token of the step is computed (the last one too, for the next step's logits).
                Charge Worst(int stepTokens)
                {
                    var flops = counter.Decode(context, stepTokens);
                    long tokens = stepTokens;
                    if (carriesRoot)
                    {
                        var root = b.Root.Policy;
                        flops += counter.Chunk(root.PendingLength, root.ComputedLength, 1);
                        tokens += root.PendingLength;
                    }
                    return new Charge(flops, tokens, generations);
                }
                var charge = Worst(maxTokens);
                var reservation = _request.Budget.TryReserve(charge);
                if (reservation is null && admitted == 0 && maxTokens > 1)
                {
                    // Nothing admitted in this call yet: a step of fewer tokens that the budget can still pay beats none
                    // (it ends early if it reaches its cap), so a search spends its budget to within one token's cost.
                    int affordable = LargestAffordable(maxTokens - 1, m => _request.Budget.CanAfford(Worst(m)));
                    if (affordable > 0)
                    {
                        maxTokens = affordable;
                        reservation = _request.Budget.TryReserve(charge = Worst(maxTokens));
                    }
                }
                if (reservation is null)
                {
                    _request.BudgetExhaustedReason = _request.Budget.Explain(charge);
                    skipped++;
                    continue;
                }
                // Generations are spent when the step is admitted: a step begun is a sample drawn.
                if (!reservation.TrySpend(new Charge(FlopCounts.Zero, 0, generations)))
                    throw new InvalidOperationException("a fresh reservation refused its own generations (budget bookkeeping is broken)");
                while (_widthAtDepth.Count <= depth) _widthAtDepth.Add(0);
                _widthAtDepth[depth]++;
                _generations += generations;
                _request.RecordGenerations(generations);
                if (carriesRoot) b.Root.PolicyReady = ComputeRootAsync(b.Root, reservation);
                ulong seed = Rng.Derive(Rng.Derive(sampling.Seed, (ulong)i), (ulong)depth);
                steps.Add(StepAsync(b, reservation, samplingOptions with { Seed = seed }, maxTokens));
                admitted++;
            }
        }
        int cut = (await Task.WhenAll(steps).ConfigureAwait(false)).Count(paid => !paid);
        await LeavePump();
        return new StepOutcome(admitted - cut, skipped + cut, skipped + cut > 0);
    }

    /// <inheritdoc/>
    public async ValueTask<StepOutcome> ScoreAsync(IReadOnlyList<Branch> branches, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(branches);
        var scorer = _scorer ?? throw new InvalidOperationException("this search engine has no verifier (PRM): pass one to the constructor to score steps");
        using var registration = cancellationToken.Register(static r => ((ScheduledRequest)r!).Dispose(), _request);
        cancellationToken.ThrowIfCancellationRequested();
        EngineBranch[] engineBranches;
        lock (Gate)
        {
            ThrowIfClosed();
            engineBranches = Check(branches);
        }
        var jobs = engineBranches.Where(b => b.StepScores.Count < b.Steps.Count).Select(scorer.ScoreAsync).ToArray();
        bool[] done = await Task.WhenAll(jobs).ConfigureAwait(false);
        await LeavePump();
        int completed = done.Count(d => d);
        return new StepOutcome(completed, done.Length - completed, completed < done.Length);
    }

    /// <summary>The largest m in [1, <paramref name="max"/>] with <paramref name="fits"/>(m) (monotone: fewer tokens cost less), or 0.</summary>
    static int LargestAffordable(int max, Func<int, bool> fits)
    {
        int lo = 1, hi = max, best = 0;
        while (lo <= hi)
        {
            int mid = lo + (hi - lo) / 2;
            if (fits(mid)) { best = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        return best;
    }

    /// <summary>
    /// Continues on the thread pool: the work above completes on the scheduler's pump, and a caller resumed there that
    /// then blocks (waits on a task, spins) would stall every round.
    /// </summary>
    static ConfiguredTaskAwaitable LeavePump() => Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);

    /// <summary>Ends the search: queued work is refused, every branch and prompt root is disposed.</summary>
    public void Dispose() => _request.Dispose();

    async Task ComputeRootAsync(PromptRoot root, BudgetReservation reservation)
    {
        var logits = new float[_policy.Config.HeadRows];
        var result = await _scheduler.SubmitAsync(_request, _policy, root.Policy, [], logits, reservation).ConfigureAwait(false);
        if (!result.Completed) throw new InvalidOperationException($"the prompt's reservation did not cover its prefill: {result.Reason}");
        root.Logits = logits;
    }

    /// <summary>Samples one step of <paramref name="b"/>; false when the budget refused to recompute its evicted context.</summary>
    async Task<bool> StepAsync(EngineBranch b, BudgetReservation reservation, SamplingOptions sampling, int maxTokens)
    {
        bool paid = true;
        try
        {
            if (b.Policy is null)
            {
                await b.Root.PolicyReady!.ConfigureAwait(false);
                lock (Gate)
                {
                    b.Policy = _scheduler.Fork(_request, b.Root.Policy);
                    b.ShareLogits(b.Root.Logits!);
                    if (b.Root.PolicyUses++ > 0) _request.RecordReuse(_policy.Name, b.Policy.ComputedLength, _policy.Counter.Prefill(b.Policy.ComputedLength));
                }
            }
            var sampler = new Sampler(sampling);
            var decoder = new StreamingDecoder(_tokenizer, skipSpecialTokens: true);
            int vocab = _policy.Config.Vocab;
            var scratch = new float[vocab];
            var stepTokens = new List<int>();
            var text = new StringBuilder();
            bool finished;
            string delimiter = _options.StepDelimiter;
            while (true)
            {
                b.Logits.AsSpan(0, vocab).CopyTo(scratch); // the sampler reads the vocabulary only, never a value row
                int token = sampler.Sample(scratch, []);
                stepTokens.Add(token);
                bool ends;
                if (_eos.Contains(token)) finished = ends = true;
                else
                {
                    text.Append(decoder.Push(token));
                    ends = stepTokens.Count == maxTokens || Contains(text, delimiter);
                    finished = ends && _options.IsFinalStep(StepOf(text.ToString()));
                }
                // A finished branch needs no next-token logits, unless the verifier reads the step's score from the
                // forward of its last token (the reservation covers every token of the step).
                if (finished && _scorer is not { ReadsFinalTokenOutput: true }) break;
                var result = await _scheduler.SubmitAsync(_request, _policy, b.Policy, [token], b.ExclusiveLogits(), reservation).ConfigureAwait(false);
                if (!result.Completed)
                {
                    // Only recomputing what a preemption evicted is charged beyond the reservation: when the budget
                    // cannot pay it, the branch ends here, cut off (it has no logits to go on from).
                    paid = false;
                    finished = true;
                    break;
                }
                if (ends) break;
            }
            _request.RecordSampled(stepTokens.Count); // once a step, not a lock per token
            text.Append(decoder.Flush());
            string stepText = text.ToString();
            lock (Gate)
            {
                b.CommitStep(stepTokens, stepText, StepOf(stepText), finished);
                _scorer?.OnStep(b, _scorer.ReadsFinalTokenOutput ? b.Logits : default);
            }
            return paid;
        }
        finally
        {
            reservation.Dispose();
        }
    }

    string StepOf(string text)
    {
        int k = text.IndexOf(_options.StepDelimiter, StringComparison.Ordinal);
        return k >= 0 ? text[..k] : text;
    }

    static bool Contains(StringBuilder text, string delimiter)
    {
        // Only the tail can have changed since the last token: look at the last few characters.
        int from = Math.Max(0, text.Length - delimiter.Length - 8);
        return text.ToString(from, text.Length - from).Contains(delimiter, StringComparison.Ordinal);
    }

    EngineBranch[] Check(IReadOnlyList<Branch> branches)
    {
        var result = new EngineBranch[branches.Count];
        var seen = new HashSet<EngineBranch>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < branches.Count; i++)
        {
            if (branches[i] is not EngineBranch b || b.Engine != this) throw new ArgumentException($"branch {i} does not belong to this search engine", nameof(branches));
            if (b.IsDisposed) throw new ObjectDisposedException($"branch {i}", "branch {i} was disposed");
            if (!seen.Add(b)) throw new ArgumentException($"branch {i} appears twice in the list", nameof(branches));
            result[i] = b;
        }
        return result;
    }

    void ThrowIfClosed()
    {
        _request.CancellationToken.ThrowIfCancellationRequested();
        if (_request.IsClosed) throw new ObjectDisposedException(nameof(ScheduledSearchEngine), "the search engine was disposed or cancelled");
    }

    /// <summary>Guards the engine's bookkeeping (prompt roots, branches' state); pool changes go through the scheduler.</summary>
    internal object Gate { get; } = new();
    internal StepScheduler Scheduler => _scheduler;
    internal ScheduledRequest RequestInternal => _request;
    internal ScheduledModel Policy => _policy;

    /// <summary>A fork of <paramref name="parent"/>: its sequences forked (sharing every block), the verifier's state too.</summary>
    internal EngineBranch Fork(EngineBranch parent)
    {
        lock (Gate)
        {
            var fork = parent.Copy();
            if (parent.Policy is { } policy)
            {
                fork.Policy = _scheduler.Fork(_request, policy);
                if (fork.Policy.ComputedLength > 0) _request.RecordReuse(_policy.Name, fork.Policy.ComputedLength, _policy.Counter.Prefill(fork.Policy.ComputedLength));
            }
            _scorer?.OnFork(parent, fork);
            _request.Own(fork);
            return fork;
        }
    }

    /// <summary>Releases a disposed branch's sequences; the last branch of a prompt releases the prompt's.</summary>
    internal void Release(EngineBranch branch)
    {
        lock (Gate)
        {
            if (!branch.MarkDisposed()) return;
            if (branch.Policy is { } policy) _scheduler.Release(policy);
            _scorer?.OnRelease(branch);
            branch.Root.Release();
        }
        _request.Disown(branch);
    }

    /// <summary>
    /// A distinct prompt's sequences, prefilled once and forked by every branch started from it; disposed when the
    /// last such branch is (its full blocks stay in the prefix index, so starting the prompt again recomputes little).
    /// </summary>
    internal sealed class PromptRoot(ScheduledSearchEngine engine, string key, int[] tokens, int[] verifierTokens, Ponder.Cache.Sequence policy) : IDisposable
    {
        int _holders;
        bool _disposed;

        public int[] Tokens { get; } = tokens;
        /// <summary>What the verifier reads steps after: the policy's prompt, or the verifier prompt the branch was started with.</summary>
        public int[] VerifierTokens { get; } = verifierTokens;
        public Ponder.Cache.Sequence Policy { get; } = policy;
        /// <summary>The verifier's per-prompt state (see <see cref="StepScorer"/>).</summary>
        public object? VerifierState { get; set; }
        public float[]? Logits { get; set; }
        public Task? PolicyReady { get; set; }
        public int PolicyUses { get; set; }

        /// <summary>A branch started from or forked off this prompt holds it (caller holds the engine's gate).</summary>
        public void Hold() => _holders++;

        /// <summary>A holding branch was disposed (caller holds the engine's gate); the last one disposes the root.</summary>
        public void Release()
        {
            if (--_holders > 0) return;
            if (engine._roots.TryGetValue(key, out var current) && current == this) engine._roots.Remove(key);
            Dispose();
            engine._request.Disown(this);
        }

        public void Dispose()
        {
            lock (engine.Gate)
            {
                if (_disposed) return;
                _disposed = true;
                engine._scheduler.Release(Policy);
                engine._scorer?.OnRelease(this);
            }
        }
    }
}
