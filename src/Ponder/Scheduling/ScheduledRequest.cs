using System.Diagnostics;
using System.Text;
using Ponder.Cache;

namespace Ponder.Scheduling;

/// <summary>
/// One client of the <see cref="StepScheduler"/> (a sampling run, a search, a PRM scoring job): its budget, its
/// cancellation, and the account of what its work cost. Create with <see cref="StepScheduler.CreateRequest"/>.
/// Cancelling its token (or disposing it) fails its queued work with <see cref="OperationCanceledException"/>, stops
/// charging, disposes what it <see cref="Own"/>s, and releases every sequence created or forked for it, so their KV
/// blocks return to the pool.
/// </summary>
public sealed class ScheduledRequest : IDisposable
{
    readonly object _sync = new();
    readonly Dictionary<string, ModelUsage> _usage = [];
    readonly List<IDisposable> _owned = [];
    readonly Stopwatch _watch = Stopwatch.StartNew();
    readonly CancellationTokenRegistration _registration;
    TimeSpan? _elapsed;

    internal ScheduledRequest(StepScheduler scheduler, Budget budget, string name, long order, CancellationToken cancellationToken)
    {
        Scheduler = scheduler; Budget = budget; Name = name; Order = order; CancellationToken = cancellationToken;
        if (cancellationToken.CanBeCanceled) _registration = cancellationToken.Register(() => scheduler.Cancel(this));
    }

    /// <summary>The scheduler whose rounds run this request's work.</summary>
    public StepScheduler Scheduler { get; }
    /// <summary>What the request may spend; every forward chunk is charged to it (or to a reservation drawn from it).</summary>
    public Budget Budget { get; }
    /// <summary>The request's name in reports and traces.</summary>
    public string Name { get; }
    /// <summary>Cancelling it cancels the request: queued work fails, sequences are released.</summary>
    public CancellationToken CancellationToken { get; }
    /// <summary>Whether the request was cancelled or disposed: its work is refused.</summary>
    public bool IsClosed { get; private set; }
    /// <summary>Why the budget last refused work (null while it has not).</summary>
    public string? BudgetExhaustedReason { get; internal set; }
    /// <summary>Whether the scheduler preempted the request and it waits for others to get blocks.</summary>
    public bool Preempted { get; internal set; }

    /// <summary>Creation order: the older request wins ties.</summary>
    internal long Order { get; }
    /// <summary>The sequences the scheduler created or forked for this request (read and changed under the round lock).</summary>
    internal HashSet<Sequence> Sequences { get; } = new(ReferenceEqualityComparer.Instance);

    /// <summary>Disposes <paramref name="resource"/> when the request is cancelled or disposed (e.g. a sequence and its blocks).</summary>
    public void Own(IDisposable resource)
    {
        ArgumentNullException.ThrowIfNull(resource);
        lock (_sync)
        {
            if (!IsClosed) { _owned.Add(resource); return; }
        }
        resource.Dispose();
    }

    /// <summary>Stops owning <paramref name="resource"/> (its owner disposed it or handed it on).</summary>
    public void Disown(IDisposable resource) { lock (_sync) _owned.Remove(resource); }

    /// <summary>Records tokens served from the cache or shared blocks instead of computed, with the FLOPs that saved.</summary>
    public void RecordReuse(string model, long tokens, FlopCounts savedFlops)
    {
        lock (_sync)
        {
            var u = Usage(model);
            u.TokensReused += tokens;
            u.SavedFlops += savedFlops;
        }
    }

    /// <summary>Records generations (the paper's unit) charged by the request's owner.</summary>
    public void RecordGenerations(double generations) { lock (_sync) Generations += generations; }

    /// <summary>Generations recorded so far.</summary>
    public double Generations { get; private set; }

    /// <summary>Records tokens sampled for the request (what its owner generated, whether or not it was kept).</summary>
    public void RecordSampled(long tokens) { lock (_sync) TokensSampled += tokens; }

    /// <summary>Tokens sampled so far.</summary>
    public long TokensSampled { get; private set; }

    internal void RecordComputed(string model, long tokens, FlopCounts flops, long approximateFlops)
    {
        lock (_sync)
        {
            var u = Usage(model);
            u.TokensComputed += tokens;
            u.Flops += flops;
            u.ApproximateFlops += approximateFlops;
            u.Forwards++;
        }
    }

    ModelUsage Usage(string model)
    {
        if (!_usage.TryGetValue(model, out var u)) _usage[model] = u = new ModelUsage(model);
        return u;
    }

    /// <summary>What the request's work cost so far, per model.</summary>
    public RequestReport Report()
    {
        lock (_sync)
            return new RequestReport(Name, [.. _usage.Values.Select(u => u.Snapshot())], Generations, _elapsed ?? _watch.Elapsed, BudgetExhaustedReason, TokensSampled);
    }

    /// <summary>Marks the request closed and disposes what it owns (idempotent).</summary>
    internal void Close()
    {
        List<IDisposable> owned;
        lock (_sync)
        {
            if (IsClosed) return;
            IsClosed = true;
            _elapsed = _watch.Elapsed;
            owned = [.. _owned];
            _owned.Clear();
        }
        for (int i = owned.Count - 1; i >= 0; i--)
        {
            if (owned[i] is Sequence sequence) Scheduler.Release(sequence); // pools change under the round lock only
            else owned[i].Dispose();
        }
    }

    /// <summary>Ends the request: queued work is refused, owned resources disposed.</summary>
    public void Dispose()
    {
        _registration.Dispose();
        Scheduler.Cancel(this);
    }

    sealed class ModelUsage(string model)
    {
        public long TokensComputed, TokensReused, Forwards, ApproximateFlops;
        public FlopCounts Flops, SavedFlops;
        public ModelReport Snapshot() => new(model, Flops, SavedFlops, TokensComputed, TokensReused, Forwards, ApproximateFlops);
    }
}

/// <summary>One model's share of a request's work.</summary>
/// <param name="Model">The model's name in the scheduler ("policy", "prm").</param>
/// <param name="Flops">Exact FLOPs performed for the request, by category.</param>
/// <param name="SavedFlops">What the tokens served from the prefix cache or shared blocks would have cost.</param>
/// <param name="TokensComputed">Forward rows computed for the request.</param>
/// <param name="TokensReused">Tokens served from the cache or shared blocks.</param>
/// <param name="Forwards">Batched forwards the request took part in.</param>
/// <param name="ApproximateFlops">The paper's 2 · N · tokens (N non-embedding parameters) for the same tokens.</param>
public sealed record ModelReport(string Model, FlopCounts Flops, FlopCounts SavedFlops, long TokensComputed, long TokensReused, long Forwards, long ApproximateFlops);

/// <summary>A request's account: per model FLOPs and tokens, generations, tokens sampled, wall time.</summary>
public sealed record RequestReport(string Name, IReadOnlyList<ModelReport> Models, double Generations, TimeSpan WallTime, string? BudgetExhaustedReason, long TokensSampled = 0)
{
    /// <summary>Exact FLOPs over all models.</summary>
    public FlopCounts Flops => Models.Aggregate(FlopCounts.Zero, (a, m) => a + m.Flops);
    /// <summary>Tokens computed over all models (prompt, generated and recomputed tokens).</summary>
    public long TokensComputed => Models.Sum(m => m.TokensComputed);
    /// <summary>Tokens served from the prefix cache over all models (not computed again).</summary>
    public long TokensReused => Models.Sum(m => m.TokensReused);

    /// <summary>A plain-text table: per model and category, exact FLOPs, saved FLOPs, and the 2N approximation.</summary>
    public string Format()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"FLOP report: {Name} ({WallTime.TotalSeconds:F2} s, {Generations:0.##} generations)");
        sb.AppendLine($"  {"model",-8} {"category",-12} {"exact FLOPs",20} {"saved FLOPs",20}");
        foreach (var m in Models)
        {
            foreach (var c in Enum.GetValues<Backends.FlopCategory>())
                sb.AppendLine($"  {m.Model,-8} {CategoryName(c),-12} {m.Flops[c],20:N0} {m.SavedFlops[c],20:N0}");
            sb.AppendLine($"  {m.Model,-8} {"total",-12} {m.Flops.Total,20:N0} {m.SavedFlops.Total,20:N0}");
            double ratio = m.ApproximateFlops == 0 ? double.NaN : (double)m.Flops.Total / m.ApproximateFlops;
            sb.AppendLine($"  {m.Model,-8} tokens computed {m.TokensComputed:N0}, reused {m.TokensReused:N0}, forwards {m.Forwards:N0}; " +
                          $"2N·tokens = {m.ApproximateFlops:N0} (exact / 2N = {ratio:F3})");
        }
        if (BudgetExhaustedReason is not null) sb.AppendLine($"  budget exhausted: {BudgetExhaustedReason}");
        return sb.ToString();

        static string CategoryName(Backends.FlopCategory c) => c switch
        {
            Backends.FlopCategory.Projection => "projections",
            Backends.FlopCategory.Attention => "attention",
            Backends.FlopCategory.LmHead => "lm_head",
            Backends.FlopCategory.PrmHead => "prm_head",
            _ => "elementwise",
        };
    }
}
