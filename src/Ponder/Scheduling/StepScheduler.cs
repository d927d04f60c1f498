using Ponder.Backends;
using Ponder.Cache;
using Ponder.Models;

namespace Ponder.Scheduling;

/// <summary>A model the scheduler runs: its forward pass, its KV block pool, and its FLOP counter.</summary>
public sealed class ScheduledModel
{
    /// <summary>
    /// Registers <paramref name="transformer"/> with the pool its sequences live in, under <paramref name="name"/>
    /// ("policy", "prm"); <paramref name="index"/>, when given, is the pool's prefix index that new sequences attach cached prompts from.
    /// </summary>
    public ScheduledModel(string name, Transformer transformer, BlockPool pool, PrefixIndex? index = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(transformer);
        ArgumentNullException.ThrowIfNull(pool);
        if (pool.Layout.NLayers != transformer.Config.NLayers || pool.Layout.KvDim != transformer.Config.KvDim)
            throw new ArgumentException($"model '{name}': the pool's KV layout {pool.Layout} does not fit the model (nLayers {transformer.Config.NLayers}, kvDim {transformer.Config.KvDim})", nameof(pool));
        if (index is not null && index.Pool != pool) throw new ArgumentException($"model '{name}': the prefix index belongs to another pool", nameof(index));
        Name = name; Transformer = transformer; Pool = pool; Index = index;
        Counter = FlopCounter.For(transformer);
        Batch = new SequenceBatch(pool.BlockSize);
    }

    public string Name { get; }
    public Transformer Transformer { get; }
    public BlockPool Pool { get; }
    /// <summary>The pool's prefix index (null: sequences start empty).</summary>
    public PrefixIndex? Index { get; }
    public FlopCounter Counter { get; }

    /// <summary>A new sequence holding <paramref name="prompt"/>, attaching its longest cached prefix when there is an index; caller holds the scheduler's SyncRoot.</summary>
    public Sequence CreateSequence(ReadOnlySpan<int> prompt)
    {
        if (Index is not null) return Index.CreateSequence(prompt);
        var s = new Sequence(Pool);
        try { s.Append(prompt); }
        catch { s.Dispose(); throw; }
        return s;
    }
    public ModelConfig Config => Transformer.Config;
    internal SequenceBatch Batch { get; }
    internal float[] Outputs { get; set; } = [];
    internal List<StepScheduler.WorkItem> Admitted { get; } = [];
}

/// <summary>How the scheduler packs forwards.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Rows (new tokens) per forward: long prefills are cut into chunks of at most this so decodes are not stalled.</summary>
    public int MaxTokensPerForward { get; init; } = 512;
    /// <summary>Sequences per forward.</summary>
    public int MaxSequencesPerForward { get; init; } = 256;
    /// <summary>Check after every forward that the backend's FLOP ledger equals the prediction (cheap; a mismatch is a bug).</summary>
    public bool VerifyFlops { get; init; } = true;
}

/// <summary>Whether a piece of work ran, or its request's budget could not pay for it.</summary>
public enum WorkStatus
{
    /// <summary>The sequence's pending tokens were computed; the head's output at its last token was written.</summary>
    Completed,
    /// <summary>The budget (or the work's reservation) could not pay for the next chunk; nothing more was charged.</summary>
    BudgetExhausted,
}

/// <summary>The outcome of <see cref="StepScheduler.SubmitAsync"/>.</summary>
public readonly record struct WorkResult(WorkStatus Status, string? Reason = null)
{
    public bool Completed => Status == WorkStatus.Completed;
}

/// <summary>
/// Batches the work of all requests (searches, sampling runs, PRM scoring) into one forward per model per round,
/// and enforces every request's <see cref="Budget"/> with exact FLOP predictions.
/// <code>
///   requests submit work ─►  queue: [ A: policy s3 decode 1 | B: policy s9 prefill 900 | A: prm m3 step 14 | ... ]
///   round:  per model, pack in order (decodes first, then prefill chunks up to MaxTokensPerForward rows):
///             cost = FlopCounter.Chunk(n, p, outputs)  ──►  fits the request's budget (or its reservation)?
///                 no  ─► the work completes as BudgetExhausted (the strategy finishes gracefully)
///                 yes ─► charged, added to the batch; a full KV cache defers it to a later round
///           one Transformer.Forward per model; the backend's ledger must equal Σ cost (checked, to the FLOP)
///           work whose pending tokens are all computed completes (its output row copied out); a prefill cut
///           into chunks stays queued for the next round
/// </code>
/// Rounds run on one pump task at a time, so each backend is used from one thread. Completions run their
/// continuations synchronously on the pump (awaiters that use <c>ConfigureAwait(false)</c> sample and submit their
/// next token before the next round starts, so they join the same batch); never block on the scheduler inside one.
/// Public APIs built on it (the search engine, <c>PonderModel.GenerateAsync</c>) hand results to their callers on the
/// thread pool instead, so a caller that blocks cannot stall the pump.
/// Code outside a round that changes sequences of a scheduled pool (create, fork, dispose) must hold
/// <see cref="SyncRoot"/>, which every round holds.
/// </summary>
public sealed class StepScheduler
{
    readonly SchedulerOptions _options;
    readonly SemaphoreSlim? _backendGate;
    readonly object _queueLock = new();
    readonly List<WorkItem> _queue = [];
    bool _pumping;
    long _order;

    /// <summary>A scheduler; <paramref name="backendGate"/>, when given, is held during every round (so other users of the same backend can exclude rounds).</summary>
    public StepScheduler(SchedulerOptions? options = null, SemaphoreSlim? backendGate = null)
    {
        _options = options ?? new SchedulerOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.MaxTokensPerForward, 1, nameof(SchedulerOptions.MaxTokensPerForward));
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.MaxSequencesPerForward, 1, nameof(SchedulerOptions.MaxSequencesPerForward));
        _backendGate = backendGate;
    }

    public SchedulerOptions Options => _options;
    /// <summary>Held by every round; hold it to change sequences of a scheduled pool outside a round.</summary>
    public object SyncRoot { get; } = new();
    /// <summary>Rounds run.</summary>
    public long Rounds { get; private set; }
    /// <summary>Batched forwards run (at most one per model per round).</summary>
    public long Forwards { get; private set; }
    /// <summary>Rows computed by all forwards.</summary>
    public long TokensComputed { get; private set; }

    /// <summary>A new request charging <paramref name="budget"/> (null = unlimited).</summary>
    public ScheduledRequest CreateRequest(Budget? budget = null, string name = "request", CancellationToken cancellationToken = default)
    {
        var r = new ScheduledRequest(this, budget ?? Budget.Unlimited(), name, cancellationToken);
        if (cancellationToken.IsCancellationRequested) Cancel(r);
        return r;
    }

    /// <summary>
    /// Appends <paramref name="append"/> to <paramref name="sequence"/> (when the round admits the work, so a full KV
    /// cache defers rather than fails) and computes all its pending tokens, in chunks if long; the head's output at
    /// the last token goes to <paramref name="output"/> (HeadRows values, or empty to discard). Each chunk is charged to
    /// <paramref name="reservation"/> when given, else to the request's budget. Completes with
    /// <see cref="WorkStatus.BudgetExhausted"/> when a chunk cannot be paid (earlier chunks stay computed and charged),
    /// with <see cref="OperationCanceledException"/> when the request is cancelled, and with
    /// <see cref="KvCacheFullException"/> when no round could ever fit it.
    /// </summary>
    public Task<WorkResult> SubmitAsync(ScheduledRequest request, ScheduledModel model, Sequence sequence, ReadOnlySpan<int> append, Memory<float> output, BudgetReservation? reservation = null)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sequence);
        if (request.Scheduler != this) throw new ArgumentException($"request '{request.Name}' belongs to another scheduler", nameof(request));
        if (sequence.Pool != model.Pool) throw new ArgumentException($"the sequence is not in model '{model.Name}''s pool", nameof(sequence));
        if (!output.IsEmpty && output.Length != model.Config.HeadRows)
            throw new ArgumentException($"output holds {output.Length} values, model '{model.Name}' writes {model.Config.HeadRows} per token", nameof(output));
        foreach (int t in append)
            if ((uint)t >= (uint)model.Config.Vocab) throw new ArgumentOutOfRangeException(nameof(append), $"token {t} is outside model '{model.Name}''s vocabulary (0..{model.Config.Vocab - 1})");
        if (append.IsEmpty && sequence.PendingLength == 0) throw new ArgumentException("the sequence has no pending tokens and none are appended: nothing to compute", nameof(sequence));
        if (sequence.Length + append.Length > model.Config.MaxPositions)
            throw new ArgumentException($"the sequence would reach {sequence.Length + append.Length} tokens, past model '{model.Name}''s {model.Config.MaxPositions} positions", nameof(append));
        var item = new WorkItem(request, model, sequence, append.ToArray(), output, reservation);
        if (request.IsClosed || request.CancellationToken.IsCancellationRequested)
            return Task.FromCanceled<WorkResult>(request.CancellationToken.IsCancellationRequested ? request.CancellationToken : new CancellationToken(true));
        bool start;
        lock (_queueLock)
        {
            item.Order = _order++;
            _queue.Add(item);
            start = !_pumping;
            _pumping = true;
        }
        if (start) _ = Task.Run(PumpAsync);
        return item.Done.Task;
    }

    /// <summary>Cancels a request: its queued work fails with <see cref="OperationCanceledException"/>, what it owns is disposed.</summary>
    internal void Cancel(ScheduledRequest request)
    {
        List<WorkItem> dropped = [];
        lock (_queueLock)
        {
            for (int i = _queue.Count - 1; i >= 0; i--)
                if (_queue[i].Request == request) { dropped.Add(_queue[i]); _queue.RemoveAt(i); }
        }
        lock (SyncRoot) request.Close();
        var token = request.CancellationToken.IsCancellationRequested ? request.CancellationToken : new CancellationToken(true);
        foreach (var item in dropped) item.Done.TrySetCanceled(token);
    }

    async Task PumpAsync()
    {
        var completions = new List<(WorkItem Item, WorkResult? Result, Exception? Error)>();
        while (true)
        {
            lock (_queueLock)
            {
                if (_queue.Count == 0) { _pumping = false; return; }
            }
            if (_backendGate is not null) await _backendGate.WaitAsync().ConfigureAwait(false);
            try
            {
                lock (SyncRoot) RunRound(completions);
            }
            catch (Exception e)
            {
                // A round that fails outside a forward (a bug) must not strand awaiters: fail everything queued.
                lock (_queueLock) { foreach (var it in _queue) completions.Add((it, null, e)); _queue.Clear(); }
            }
            finally { _backendGate?.Release(); }
            foreach (var (item, result, error) in completions)
            {
                if (error is OperationCanceledException oce) item.Done.TrySetCanceled(oce.CancellationToken);
                else if (error is not null) item.Done.TrySetException(error);
                else item.Done.TrySetResult(result!.Value);
            }
            completions.Clear();
        }
    }

    void RunRound(List<(WorkItem, WorkResult?, Exception?)> completions)
    {
        List<WorkItem> work;
        lock (_queueLock) work = [.. _queue];
        Rounds++;
        // Decodes (at most one pending token) before prefills, each group in arrival order: a long prompt waits its turn in chunks.
        work.Sort((a, b) => a.Priority != b.Priority ? a.Priority.CompareTo(b.Priority) : a.Order.CompareTo(b.Order));
        var models = new List<ScheduledModel>();
        foreach (var item in work)
            if (!models.Contains(item.Model)) models.Add(item.Model);
        bool progressed = false;
        WorkItem? starved = null;
        foreach (var model in models)
        {
            var batch = model.Batch;
            batch.Clear();
            model.Admitted.Clear();
            int rowsLeft = _options.MaxTokensPerForward;
            foreach (var item in work)
            {
                if (item.Model != model) continue;
                if (batch.Count >= _options.MaxSequencesPerForward || rowsLeft == 0) break;
                if (item.Request.IsClosed) { Finish(item, null, new OperationCanceledException(item.Request.CancellationToken), completions); continue; }
                if (item.Sequence.IsDisposed) { Finish(item, null, new ObjectDisposedException(nameof(Sequence), "a sequence was disposed while its work was queued"), completions); continue; }
                if (!item.Appended)
                {
                    try { item.Sequence.Append(item.Append); item.Appended = true; }
                    catch (KvCacheFullException) { starved ??= item; continue; }
                }
                var seq = item.Sequence;
                int n = Math.Min(seq.PendingLength, rowsLeft);
                int outputs = n == seq.PendingLength ? 1 : 0;
                var charge = new Charge(model.Counter.Chunk(n, seq.ComputedLength, outputs), n);
                BudgetReservation? temporary = null;
                if (item.Reservation is { } r)
                {
                    if (!r.Covers(charge))
                    {
                        string why = $"the work's reservation ({r.Remaining}) cannot pay the next chunk ({charge})";
                        item.Request.BudgetExhaustedReason = why;
                        Finish(item, new WorkResult(WorkStatus.BudgetExhausted, why), null, completions);
                        continue;
                    }
                }
                else if ((temporary = item.Request.Budget.TryReserve(charge)) is null)
                {
                    string why = item.Request.Budget.Explain(charge) ?? "the budget cannot pay the next chunk";
                    item.Request.BudgetExhaustedReason = why;
                    Finish(item, new WorkResult(WorkStatus.BudgetExhausted, why), null, completions);
                    continue;
                }
                try { batch.Add(seq, n); }
                catch (KvCacheFullException)
                {
                    temporary?.Dispose();
                    starved ??= item;
                    continue;
                }
                catch (ArgumentException e)
                {
                    // e.g. the same sequence submitted twice at once: that work fails, the round goes on.
                    temporary?.Dispose();
                    Finish(item, null, e, completions);
                    continue;
                }
                bool paid = (item.Reservation ?? temporary!).TrySpend(charge);
                temporary?.Dispose();
                if (!paid) throw new InvalidOperationException($"a reservation that covered {charge} refused to pay it (budget bookkeeping is broken)");
                item.Chunk = new ChunkWork(n, seq.ComputedLength, outputs);
                item.Cost = charge.Flops;
                model.Admitted.Add(item);
                rowsLeft -= n;
            }
            if (batch.Count == 0) continue;
            progressed = true;
            RunForward(model, completions);
        }
        if (!progressed && starved is not null)
        {
            // Nothing could run and nothing ran: waiting would wait forever, so the oldest starved work fails.
            var pool = starved.Model.Pool;
            Finish(starved, null, new KvCacheFullException(
                $"KV cache of model '{starved.Model.Name}' is full: {pool.FreeBlocks} of {pool.BlockCount} blocks free and no queued work could run; " +
                "release branches or give the pool more blocks"), completions);
        }
    }

    void RunForward(ScheduledModel model, List<(WorkItem, WorkResult?, Exception?)> completions)
    {
        var batch = model.Batch;
        var admitted = model.Admitted;
        int headRows = model.Config.HeadRows, outputCount = batch.OutputRows.Length;
        if (model.Outputs.Length < outputCount * headRows) model.Outputs = new float[Math.Max(outputCount * headRows, model.Outputs.Length * 2)];
        var predicted = FlopCounts.Zero;
        foreach (var item in admitted) predicted += item.Cost;
        var ledger = model.Transformer.Backend.Flops;
        var before = ledger.Snapshot();
        try
        {
            model.Transformer.Forward(batch.Layout, batch.Tokens, model.Pool.Storage, batch.OutputRows, model.Outputs.AsSpan(0, outputCount * headRows));
            var measured = FlopCounts.From(ledger.Since(before));
            if (_options.VerifyFlops && measured != predicted)
                throw new InvalidOperationException($"model '{model.Name}': the backend performed {measured} but the scheduler predicted {predicted}");
            batch.MarkComputed();
        }
        catch (Exception e)
        {
            foreach (var item in admitted) Finish(item, null, e, completions);
            return;
        }
        Forwards++;
        TokensComputed += batch.Layout.TokenCount;
        for (int i = 0; i < admitted.Count; i++)
        {
            var item = admitted[i];
            item.Request.RecordComputed(model.Name, item.Chunk.NewTokens, item.Cost, model.Counter.Approximate(item.Chunk.NewTokens));
            int o = batch.OutputIndex(i);
            if (o < 0) continue; // a prefill chunk that does not reach the last token: stays queued
            if (!item.Output.IsEmpty) model.Outputs.AsSpan(o * headRows, headRows).CopyTo(item.Output.Span);
            Finish(item, new WorkResult(WorkStatus.Completed), null, completions);
        }
    }

    void Finish(WorkItem item, WorkResult? result, Exception? error, List<(WorkItem, WorkResult?, Exception?)> completions)
    {
        lock (_queueLock) _queue.Remove(item);
        completions.Add((item, result, error));
    }

    internal sealed class WorkItem(ScheduledRequest request, ScheduledModel model, Sequence sequence, int[] append, Memory<float> output, BudgetReservation? reservation)
    {
        public ScheduledRequest Request { get; } = request;
        public ScheduledModel Model { get; } = model;
        public Sequence Sequence { get; } = sequence;
        public int[] Append { get; } = append;
        public Memory<float> Output { get; } = output;
        public BudgetReservation? Reservation { get; } = reservation;
        public TaskCompletionSource<WorkResult> Done { get; } = new();
        public long Order { get; set; }
        public bool Appended { get; set; }
        public ChunkWork Chunk { get; set; }
        public FlopCounts Cost { get; set; }
        /// <summary>0 for a decode (one token to compute), 1 for a prefill.</summary>
        public int Priority => (Appended ? Sequence.PendingLength : Sequence.PendingLength + Append.Length) <= 1 ? 0 : 1;
    }
}
