using Ponder.Backends;
using Ponder.Cache;
using Ponder.Models;

namespace Ponder.Scheduling;

/// <summary>
/// Batches the work of all requests (searches, sampling runs, PRM scoring) into one forward per model per round,
/// enforces every request's <see cref="Budget"/> with exact FLOP predictions, and is the only owner of its models'
/// KV pools: sequences are created, forked and released through it (<see cref="CreateSequence"/>, <see cref="Fork"/>,
/// <see cref="Release"/>), from any thread.
/// <code>
///   requests submit work ─►  queue: [ A: policy s3 decode 1 | B: policy s9 prefill 900 | A: prm m3 step 14 | ... ]
///   round = Plan ─► Execute ─► Complete (Plan and Complete change pools; Execute only runs forwards, so sequences
///           can be created and released meanwhile):
///     Plan      per model, in order (decodes first, then prefill chunks up to MaxTokensPerForward rows; work of a
///               preempted request last): place the work's tokens in the pool (a full cache defers it), price the
///               chunk with FlopCounter.Chunk and charge the request's budget or the work's reservation (a refusal
///               completes the work as BudgetExhausted). Nothing could run and work waits for blocks: preempt the
///               request holding the most blocks (its sequences keep their tokens and recompute later, charged
///               to its budget), or fail the waiting work if its own request is all the cache holds.
///     Execute   one forward per model; the backend's FLOP ledger must equal the plan's Σ cost (to the FLOP)
///     Complete  advance sequences, copy each finished work's output row, evict a preempted request's blocks;
///               a prefill cut into chunks stays queued for the next round
/// </code>
/// Rounds run on one pump task at a time, so each backend is used from one thread. Completions run their
/// continuations synchronously on the pump, after the round (awaiters that use <c>ConfigureAwait(false)</c> sample
/// and submit their next token before the next round starts, so they join the same batch); never block on the
/// scheduler inside one. Public APIs built on it (the search engine, <c>PonderModel.GenerateAsync</c>) hand results
/// to their callers on the thread pool instead, so a caller that blocks cannot stall the pump.
/// </summary>
public sealed class StepScheduler
{
    readonly SchedulerOptions _options;
    readonly IForwardExecutor _executor;
    readonly bool _manualRounds;
    // Pools and queue bookkeeping change under _roundLock (planning, completing, creating and releasing sequences);
    // forwards run under _forwardLock only, so a request's sequences come and go while a forward runs. A forward reads
    // the batch's own copies of tokens and block tables; blocks released meanwhile are written by no one else before
    // the next round, so what it writes into them is harmless.
    readonly object _roundLock = new();
    readonly object _forwardLock = new();
    readonly object _queueLock = new();
    readonly List<WorkItem> _queue = [];
    readonly Dictionary<ScheduledModel, SequenceBatch> _batches = new(ReferenceEqualityComparer.Instance);
    readonly Dictionary<Sequence, ScheduledRequest> _owners = new(ReferenceEqualityComparer.Instance);
    readonly Dictionary<ScheduledModel, float[]> _outputs = new(ReferenceEqualityComparer.Instance);
    bool _pumping;
    long _order, _requestOrder;

    /// <summary>A scheduler that runs rounds on a pump task whenever work is queued.</summary>
    public StepScheduler(SchedulerOptions? options = null) : this(options, null, manualRounds: false) { }

    /// <summary>
    /// A scheduler whose forwards run on <paramref name="executor"/> (null: the models' transformers); with
    /// <paramref name="manualRounds"/>, no pump: the caller runs each round with <see cref="RunRound"/> (tests).
    /// </summary>
    internal StepScheduler(SchedulerOptions? options, IForwardExecutor? executor, bool manualRounds)
    {
        _options = options ?? new SchedulerOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.MaxTokensPerForward, 1, nameof(SchedulerOptions.MaxTokensPerForward));
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.MaxSequencesPerForward, 1, nameof(SchedulerOptions.MaxSequencesPerForward));
        _executor = executor ?? TransformerExecutor.Instance;
        _manualRounds = manualRounds;
    }

    /// <summary>How forwards are packed (tokens and sequences per forward, ledger checks).</summary>
    public SchedulerOptions Options => _options;
    /// <summary>Rounds run.</summary>
    public long Rounds { get; private set; }
    /// <summary>Batched forwards run (at most one per model per round).</summary>
    public long Forwards { get; private set; }
    /// <summary>Rows computed by all forwards.</summary>
    public long TokensComputed { get; private set; }
    /// <summary>Requests preempted (their blocks released, to be recomputed) because the cache ran short.</summary>
    public long Preemptions { get; private set; }
    /// <summary>Times work waited a round for KV blocks (or, preempted, for others to get theirs) instead of running.</summary>
    public long Deferrals { get; private set; }

    /// <summary>A new request charging <paramref name="budget"/> (null = unlimited).</summary>
    public ScheduledRequest CreateRequest(Budget? budget = null, string name = "request", CancellationToken cancellationToken = default)
    {
        var r = new ScheduledRequest(this, budget ?? Budget.Unlimited(), name, Interlocked.Increment(ref _requestOrder), cancellationToken);
        if (cancellationToken.IsCancellationRequested) Cancel(r);
        return r;
    }

    /// <summary>
    /// A new sequence of <paramref name="model"/> holding <paramref name="prompt"/> (pending: the next work on it computes
    /// it), owned by <paramref name="request"/> (released when it ends). With a prefix index its longest cached prefix is
    /// attached instead of recomputed. When the cache is full the sequence starts without blocks and gets them when a
    /// round has room: it waits, it does not fail.
    /// </summary>
    public Sequence CreateSequence(ScheduledRequest request, ScheduledModel model, ReadOnlySpan<int> prompt)
    {
        CheckRequest(request);
        ArgumentNullException.ThrowIfNull(model);
        lock (_roundLock)
        {
            Bind(model);
            Sequence sequence;
            try
            {
                if (model.Index is { } index) sequence = index.CreateSequence(prompt);
                else
                {
                    sequence = new Sequence(model.Pool);
                    try { sequence.Append(prompt); }
                    catch { sequence.Dispose(); throw; }
                }
            }
            catch (KvCacheFullException)
            {
                sequence = model.Index is { } index ? Sequence.ForIndex(index) : new Sequence(model.Pool);
                sequence.Evict();
                sequence.Append(prompt);
            }
            Track(request, sequence);
            return sequence;
        }
    }

    /// <summary>A fork of <paramref name="source"/> (shares every block; costs none), owned by <paramref name="request"/>.</summary>
    public Sequence Fork(ScheduledRequest request, Sequence source)
    {
        CheckRequest(request);
        ArgumentNullException.ThrowIfNull(source);
        lock (_roundLock)
        {
            if (source.Pool.Owner is { } owner && owner != this) throw new ArgumentException("the sequence's pool is run by another scheduler", nameof(source));
            var fork = source.Fork();
            Track(request, fork);
            return fork;
        }
    }

    /// <summary>Releases <paramref name="sequence"/>'s blocks (idempotent; waits for a round that uses it to end).</summary>
    public void Release(Sequence sequence)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        lock (_roundLock)
        {
            if (_owners.Remove(sequence, out var owner)) owner.Sequences.Remove(sequence);
            sequence.Dispose();
        }
    }

    /// <summary>
    /// Runs <paramref name="action"/> between rounds, with every pool of this scheduler to itself (e.g. reading pool
    /// statistics, or a forward that does not go through the queue). Do not submit work and wait for it inside.
    /// </summary>
    public T RunExclusive<T>(Func<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        lock (_roundLock) lock (_forwardLock) return action();
    }

    /// <inheritdoc cref="RunExclusive{T}(Func{T})"/>
    public void RunExclusive(Action action)
    {
        ArgumentNullException.ThrowIfNull(action);
        lock (_roundLock) lock (_forwardLock) action();
    }

    /// <summary>
    /// Appends <paramref name="append"/> to <paramref name="sequence"/> (when the round admits the work, so a full KV
    /// cache defers rather than fails) and computes all its pending tokens, in chunks if long; the head's output at
    /// the last token goes to <paramref name="output"/> (HeadRows values, or empty to discard). Each chunk is charged to
    /// <paramref name="reservation"/> when given, else to the request's budget; recomputing what a preemption evicted
    /// is charged to the request's budget. Completes with <see cref="WorkStatus.BudgetExhausted"/> when a chunk cannot
    /// be paid (earlier chunks stay computed and charged), with <see cref="OperationCanceledException"/> when the
    /// request is cancelled, and with <see cref="KvCacheFullException"/> when the work cannot fit even with every other
    /// request preempted.
    /// </summary>
    public Task<WorkResult> SubmitAsync(ScheduledRequest request, ScheduledModel model, Sequence sequence, ReadOnlySpan<int> append, Memory<float> output, BudgetReservation? reservation = null)
    {
        CheckRequest(request);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sequence);
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
            if (model.IsRetired) return Task.FromException<WorkResult>(Retired(model));
            model.Pool.Owner ??= this;
            if (model.Pool.Owner != this) throw new ArgumentException($"model '{model.Name}''s pool is run by another scheduler (a pool has one)", nameof(model));
            item.Order = _order++;
            _queue.Add(item);
            start = !_pumping && !_manualRounds;
            _pumping |= start;
            if (!start) Monitor.Pulse(_queueLock);
        }
        // The pump is a thread of its own, not a thread-pool worker: it computes for as long as work is queued, and a
        // pool worker held that long starves the pool (a server's requests then wait for a thread to start and end).
        if (start) new Thread(Pump) { IsBackground = true, Name = "Ponder scheduler" }.Start();
        return item.Done.Task;
    }

    /// <summary>Cancels a request: its queued work fails with <see cref="OperationCanceledException"/>, what it owns is released.</summary>
    internal void Cancel(ScheduledRequest request)
    {
        List<WorkItem> dropped = [];
        lock (_queueLock)
        {
            for (int i = _queue.Count - 1; i >= 0; i--)
                if (_queue[i].Request == request) { dropped.Add(_queue[i]); _queue.RemoveAt(i); }
        }
        // Outside the round lock: owners (branches, prompt roots) release their sequences through Release.
        request.Close();
        lock (_roundLock)
            foreach (var sequence in request.Sequences.ToArray()) Release(sequence);
        var token = request.CancellationToken.IsCancellationRequested ? request.CancellationToken : new CancellationToken(true);
        foreach (var item in dropped) item.Done.TrySetCanceled(token);
    }

    /// <summary>
    /// Takes <paramref name="model"/> out of service before its memory is freed: its queued work fails with
    /// <see cref="ObjectDisposedException"/>, requests holding its sequences are cancelled, the round in progress
    /// ends, and later work for it is refused.
    /// </summary>
    internal void Retire(ScheduledModel model)
    {
        List<WorkItem> dropped = [];
        lock (_queueLock)
        {
            model.IsRetired = true;
            for (int i = _queue.Count - 1; i >= 0; i--)
                if (_queue[i].Model == model) { dropped.Add(_queue[i]); _queue.RemoveAt(i); }
        }
        ScheduledRequest[] holders;
        lock (_roundLock) holders = [.. _owners.Where(o => o.Key.Pool == model.Pool).Select(o => o.Value).Distinct()];
        foreach (var request in holders) Cancel(request);
        lock (_roundLock) lock (_forwardLock) // the forward in flight ends before the model's memory may go
            foreach (var sequence in _owners.Keys.Where(s => s.Pool == model.Pool).ToArray()) Release(sequence);
        foreach (var item in dropped) item.Done.TrySetException(Retired(model));
    }

    static ObjectDisposedException Retired(ScheduledModel model) => new($"model '{model.Name}'", $"model '{model.Name}' was disposed");

    void CheckRequest(ScheduledRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Scheduler != this) throw new ArgumentException($"request '{request.Name}' belongs to another scheduler", nameof(request));
    }

    void Bind(ScheduledModel model)
    {
        if (model.IsRetired) throw Retired(model);
        model.Pool.Owner ??= this;
        if (model.Pool.Owner != this) throw new ArgumentException($"model '{model.Name}''s pool is run by another scheduler (a pool has one)", nameof(model));
    }

    void Track(ScheduledRequest request, Sequence sequence)
    {
        if (request.IsClosed)
        {
            sequence.Dispose();
            throw new OperationCanceledException($"request '{request.Name}' was cancelled or disposed", request.CancellationToken);
        }
        _owners[sequence] = request;
        request.Sequences.Add(sequence);
    }

    void Pump()
    {
        while (true)
        {
            lock (_queueLock)
            {
                // Linger briefly for the next work (a decode loop submits its next token right after a round), so a
                // busy scheduler keeps one thread rather than starting one per burst.
                if (_queue.Count == 0) Monitor.Wait(_queueLock, PumpLinger);
                if (_queue.Count == 0) { _pumping = false; return; }
            }
            RunRound();
        }
    }

    static readonly TimeSpan PumpLinger = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// Runs one round (plan, execute, complete) over the queued work, then completes the finished work's tasks
    /// (their continuations run here). Returns false when nothing was queued. The pump calls it; tests of a
    /// scheduler created with manual rounds call it themselves.
    /// </summary>
    internal bool RunRound()
    {
        RoundPlan plan;
        try
        {
            lock (_roundLock)
            {
                plan = Plan();
                if (plan.IsEmpty) return false;
                Rounds++;
            }
            lock (_forwardLock) Execute(plan);
            lock (_roundLock) Complete(plan);
        }
        catch (Exception e)
        {
            // A round that fails outside a forward (a bug) must not strand awaiters: fail everything queued.
            plan = new RoundPlan();
            lock (_queueLock) { foreach (var it in _queue) plan.Finished.Add(new(it, null, e)); _queue.Clear(); }
        }
        Deliver(plan);
        return true;
    }

    /// <summary>Completes the tasks of the plan's finished work (their continuations run on this thread).</summary>
    internal static void Deliver(RoundPlan plan)
    {
        foreach (var (item, result, error) in plan.Finished)
        {
            if (error is OperationCanceledException oce) item.Done.TrySetCanceled(oce.CancellationToken);
            else if (error is not null) item.Done.TrySetException(error);
            else item.Done.TrySetResult(result!.Value);
        }
    }

    /// <summary>
    /// Decides the round from the queue and the pools: which work runs in which model's forward (its tokens placed in
    /// the pool and its chunk charged, so the plan can always execute), which work ends without a forward (cancelled,
    /// refused by its budget, unable to fit), and which request is preempted. Runs no forward.
    /// </summary>
    internal RoundPlan Plan()
    {
        var plan = new RoundPlan();
        List<WorkItem> work;
        lock (_queueLock) work = [.. _queue];
        if (work.Count == 0) return plan;
        plan.Queued = work.Count;
        // Decodes (at most one pending token) before prefills, each group in arrival order: a long prompt waits its
        // turn in chunks. A preempted request's work goes last, and waits while others wait for blocks.
        work.Sort((a, b) => a.Request.Preempted != b.Request.Preempted ? a.Request.Preempted.CompareTo(b.Request.Preempted)
            : a.Priority != b.Priority ? a.Priority.CompareTo(b.Priority) : a.Order.CompareTo(b.Order));
        var models = new List<ScheduledModel>();
        foreach (var item in work)
            if (!models.Contains(item.Model)) models.Add(item.Model);
        WorkItem? starved = null;
        bool othersWait = false;
        foreach (var model in models)
        {
            if (!_batches.TryGetValue(model, out var batch)) _batches[model] = batch = new SequenceBatch(model.Pool.BlockSize);
            batch.Clear();
            var forward = new ModelForward(model, batch);
            int rowsLeft = _options.MaxTokensPerForward;
            foreach (var item in work)
            {
                if (item.Model != model) continue;
                if (batch.Count >= _options.MaxSequencesPerForward || rowsLeft == 0) break;
                if (item.Request.IsClosed) { plan.Finish(item, null, new OperationCanceledException(item.Request.CancellationToken)); continue; }
                if (item.Sequence.IsDisposed) { plan.Finish(item, null, new ObjectDisposedException(nameof(Sequence), "a sequence was disposed while its work was queued")); continue; }
                if (item.Request.Preempted && othersWait) { plan.Deferred++; continue; }
                if (!Place(item))
                {
                    starved ??= item;
                    othersWait |= !item.Request.Preempted;
                    plan.Deferred++;
                    continue;
                }
                var seq = item.Sequence;
                int n = Math.Min(seq.PendingLength, rowsLeft);
                // Recomputing what a preemption evicted is the request's cost, not the work's: its own chunks stop there.
                bool recompute = seq.ComputedLength < seq.EvictedComputedLength;
                if (recompute) n = Math.Min(n, seq.EvictedComputedLength - seq.ComputedLength);
                int outputs = n == seq.PendingLength ? 1 : 0;
                var charge = new Charge(model.Counter.Chunk(n, seq.ComputedLength, outputs), n);
                var payer = recompute ? null : item.Reservation;
                BudgetReservation? temporary = null;
                if (payer is { } r)
                {
                    if (!r.Covers(charge))
                    {
                        string why = $"the work's reservation ({r.Remaining}) cannot pay the next chunk ({charge})";
                        item.Request.BudgetExhaustedReason = why;
                        plan.Finish(item, new WorkResult(WorkStatus.BudgetExhausted, why), null);
                        continue;
                    }
                }
                else if ((temporary = item.Request.Budget.TryReserve(charge)) is null)
                {
                    string why = item.Request.Budget.Explain(charge) ?? "the budget cannot pay the next chunk";
                    item.Request.BudgetExhaustedReason = why;
                    plan.Finish(item, new WorkResult(WorkStatus.BudgetExhausted, why), null);
                    continue;
                }
                try { batch.Add(seq, n); }
                catch (KvCacheFullException)
                {
                    temporary?.Dispose();
                    starved ??= item;
                    othersWait |= !item.Request.Preempted;
                    plan.Deferred++;
                    continue;
                }
                catch (ArgumentException e)
                {
                    // e.g. the same sequence submitted twice at once: that work fails, the round goes on.
                    temporary?.Dispose();
                    plan.Finish(item, null, e);
                    continue;
                }
                bool paid = (payer ?? temporary!).TrySpend(charge);
                temporary?.Dispose();
                if (!paid) throw new InvalidOperationException($"a reservation that covered {charge} refused to pay it (budget bookkeeping is broken)");
                forward.Add(item, new ChunkWork(n, seq.ComputedLength, outputs), charge.Flops);
                rowsLeft -= n;
            }
            if (batch.Count > 0) plan.Forwards.Add(forward);
        }
        if (!othersWait)
            foreach (var item in work) item.Request.Preempted = false;
        if (plan.Forwards.Count == 0 && starved is not null) PlanForStarvation(plan, starved);
        return plan;
    }

    /// <summary>Gives the work's tokens places in the pool (appending, restoring an evicted sequence); false: no room now.</summary>
    bool Place(WorkItem item)
    {
        var seq = item.Sequence;
        try
        {
            if (!item.Appended) { seq.Append(item.Append); item.Appended = true; }
            if (!seq.IsResident)
            {
                int attached = seq.Restore();
                if (attached > 0) item.Request.RecordReuse(item.Model.Name, attached, item.Model.Counter.Prefill(attached));
            }
            return true;
        }
        catch (KvCacheFullException) { return false; }
    }

    /// <summary>
    /// Nothing could run and <paramref name="starved"/> waits for blocks: waiting would wait forever. Preempt the
    /// request holding the most of that pool's blocks (oldest first on a tie); if that is the waiting work's own
    /// request and no other holds any, it cannot fit even alone: it fails, alone.
    /// </summary>
    void PlanForStarvation(RoundPlan plan, WorkItem starved)
    {
        var pool = starved.Model.Pool;
        var held = new Dictionary<ScheduledRequest, HashSet<int>>(ReferenceEqualityComparer.Instance);
        foreach (var (sequence, owner) in _owners)
        {
            if (sequence.Pool != pool || !sequence.IsResident || sequence.Blocks.Count == 0) continue;
            if (!held.TryGetValue(owner, out var blocks)) held[owner] = blocks = [];
            blocks.UnionWith(sequence.Blocks);
        }
        var victim = held.OrderByDescending(h => h.Value.Count).ThenBy(h => h.Key.Order).Select(h => h.Key).FirstOrDefault();
        if (victim is not null && !(victim == starved.Request && held.Count == 1))
        {
            plan.Preempt = victim;
            plan.PreemptPool = pool;
            return;
        }
        string why = victim is null
            ? $"KV cache of model '{starved.Model.Name}' is full: {pool.FreeBlocks} of {pool.BlockCount} blocks free and no queued work could run; " +
              "release branches or give the pool more blocks"
            : $"KV cache of model '{starved.Model.Name}' is full: request '{starved.Request.Name}' holds {held[victim].Count} of its {pool.BlockCount} blocks " +
              "and needs more, with no other request left to preempt: it cannot fit even alone; lower its n or length, or give the pool more blocks";
        plan.Finish(starved, null, new KvCacheFullException(why));
    }

    /// <summary>Runs the plan's forwards, one per model, and checks each backend's FLOP ledger against the plan's prediction.</summary>
    internal void Execute(RoundPlan plan)
    {
        foreach (var forward in plan.Forwards)
        {
            var model = forward.Model;
            int size = forward.Batch.OutputRows.Length * model.Config.HeadRows;
            if (!_outputs.TryGetValue(model, out var buffer) || buffer.Length < size)
                _outputs[model] = buffer = new float[Math.Max(size, (buffer?.Length ?? 0) * 2)];
            forward.Outputs = buffer.AsMemory(0, size);
            // Retired between this round's plan and now (Retire waits for the forward lock, not the plan): its memory
            // may already be freed, so the forward must not run. Seen under the forward lock, the flag is current.
            if (model.IsRetired) { forward.Error = Retired(model); continue; }
            try
            {
                var measured = _executor.Forward(model, forward.Batch, forward.Outputs.Span);
                if (_options.VerifyFlops && measured != forward.Predicted)
                    throw new InvalidOperationException($"model '{model.Name}': the backend performed {measured} but the scheduler predicted {forward.Predicted}");
            }
            catch (Exception e) { forward.Error = e; }
        }
    }

    /// <summary>
    /// Advances the plan's work: marks each forward's chunks computed, records what they cost, copies each finished
    /// work's output row (work whose prefill chunk did not reach its last token stays queued), fails the work of a
    /// failed forward, evicts a preempted request's sequences, and takes finished work off the queue.
    /// </summary>
    internal void Complete(RoundPlan plan)
    {
        foreach (var forward in plan.Forwards)
        {
            if (forward.Error is { } e)
            {
                foreach (var (item, _, _) in forward.Items) plan.Finish(item, null, e);
                continue;
            }
            var model = forward.Model;
            forward.Batch.MarkComputed(); // a sequence released while the forward ran is skipped
            Forwards++;
            TokensComputed += forward.Batch.Layout.TokenCount;
            int headRows = model.Config.HeadRows;
            for (int i = 0; i < forward.Items.Count; i++)
            {
                var (item, chunk, cost) = forward.Items[i];
                item.Request.RecordComputed(model.Name, chunk.NewTokens, cost, model.Counter.Approximate(chunk.NewTokens));
                if (item.Sequence.IsDisposed)
                {
                    plan.Finish(item, null, item.Request.IsClosed ? new OperationCanceledException(item.Request.CancellationToken)
                        : new ObjectDisposedException(nameof(Sequence), "a sequence was released while its work ran"));
                    continue;
                }
                int o = forward.Batch.OutputIndex(i);
                if (o < 0) continue; // a chunk that does not reach the last token: stays queued
                if (!item.Output.IsEmpty) forward.Outputs.Span.Slice(o * headRows, headRows).CopyTo(item.Output.Span);
                plan.Finish(item, new WorkResult(WorkStatus.Completed), null);
            }
        }
        if (plan.Preempt is { } victim)
        {
            foreach (var sequence in victim.Sequences)
                if (sequence.Pool == plan.PreemptPool) sequence.Evict();
            victim.Preempted = true;
            Preemptions++;
        }
        Deferrals += plan.Deferred;
        lock (_queueLock)
            foreach (var (item, _, _) in plan.Finished) _queue.Remove(item);
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
        /// <summary>0 for a decode (one token to compute), 1 for a prefill.</summary>
        public int Priority => (Appended ? Sequence.PendingLength : Sequence.PendingLength + Append.Length) <= 1 ? 0 : 1;
    }
}
