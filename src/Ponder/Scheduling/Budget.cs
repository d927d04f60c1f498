using Ponder.Backends;

namespace Ponder.Scheduling;

/// <summary>
/// Caps of a <see cref="Budget"/>; null = no cap. Several at once all apply.
/// </summary>
/// <param name="Flops">Exact FLOPs, all categories and models together.</param>
/// <param name="FlopsByCategory">Exact FLOPs per category (e.g. only the PRM head, or only attention).</param>
/// <param name="Generations">
/// Generations, the paper's unit. Ponder's precise definition (<c>Search.Engine.ScheduledSearchEngine</c>
/// charges it): the width of the widest level of the search tree, i.e. the largest number of steps sampled at any
/// one depth (step index), rollouts included. Best-of-N costs N, beam search with N beams N, lookahead-k N·(k+1),
/// P sequential revision chains of length L P·L; a search cut short reports the width it reached.
/// </param>
/// <param name="Tokens">Tokens computed by forwards (every row of every forward: prefill, decode, PRM scoring).</param>
public sealed record BudgetLimits(long? Flops = null, IReadOnlyDictionary<FlopCategory, long>? FlopsByCategory = null, double? Generations = null, long? Tokens = null)
{
    /// <summary>No caps.</summary>
    public static BudgetLimits None { get; } = new();

    /// <summary>Throws <see cref="ArgumentException"/> naming a negative cap.</summary>
    public BudgetLimits Validate()
    {
        if (Flops < 0) throw new ArgumentException($"FLOP cap {Flops} must be >= 0", nameof(Flops));
        if (Tokens < 0) throw new ArgumentException($"token cap {Tokens} must be >= 0", nameof(Tokens));
        if (Generations is { } g && !(g >= 0)) throw new ArgumentException($"generation cap {g} must be >= 0", nameof(Generations));
        if (FlopsByCategory is not null)
            foreach (var (c, cap) in FlopsByCategory)
                if (cap < 0) throw new ArgumentException($"FLOP cap {cap} for {c} must be >= 0", nameof(FlopsByCategory));
        return this;
    }
}

/// <summary>An amount of work: exact FLOPs by category, tokens computed, generations.</summary>
public readonly record struct Charge(FlopCounts Flops, long Tokens = 0, double Generations = 0)
{
    /// <summary>No work.</summary>
    public static Charge Zero => default;
    /// <summary>The work of both.</summary>
    public static Charge operator +(Charge a, Charge b) => new(a.Flops + b.Flops, checked(a.Tokens + b.Tokens), a.Generations + b.Generations);
    /// <summary>The work of <paramref name="a"/> less that of <paramref name="b"/>.</summary>
    public static Charge operator -(Charge a, Charge b) => new(a.Flops - b.Flops, checked(a.Tokens - b.Tokens), a.Generations - b.Generations);
    /// <inheritdoc/>
    public override string ToString() => $"{Flops.Total} FLOPs, {Tokens} tokens, {Generations} generations";
}

/// <summary>
/// A compute budget that is never exceeded, not by one FLOP: work is admitted only when its exact predicted cost
/// fits (<see cref="TrySpend"/>), or after reserving its worst case (<see cref="TryReserve"/>).
/// Hierarchical: <see cref="Split"/> makes a child budget (a sub-search) that draws from its parent; a charge must
/// fit in the child and every ancestor, and is recorded in all of them.
/// <code>
///   parent  cap 10 GFLOP   spent 3   reserved 2   ─┬─ child A  cap 4   spent 1  reserved 2
///                                                  └─ child B  cap 8   spent 2
///   child B may admit up to min(8 − 2, 10 − 3 − 2) = 5 GFLOP more
/// </code>
/// Thread-safe (one lock per budget tree).
/// </summary>
public sealed class Budget
{
    readonly object _sync;
    Charge _spent, _reserved;

    /// <summary>A root budget with <paramref name="limits"/> (null = unlimited).</summary>
    public Budget(BudgetLimits? limits = null) : this(limits, null) { }

    Budget(BudgetLimits? limits, Budget? parent)
    {
        Limits = (limits ?? BudgetLimits.None).Validate();
        Parent = parent;
        _sync = parent?._sync ?? new object();
    }

    /// <summary>A budget without caps.</summary>
    public static Budget Unlimited() => new();

    /// <summary>The caps this budget enforces (FLOPs, tokens, generations; null = uncapped).</summary>
    public BudgetLimits Limits { get; }
    /// <summary>The budget this one draws from (null for a root).</summary>
    public Budget? Parent { get; }

    /// <summary>Work charged so far (to this budget and its children).</summary>
    public Charge Spent { get { lock (_sync) return _spent; } }
    /// <summary>Work reserved and not yet spent or released.</summary>
    public Charge Reserved { get { lock (_sync) return _reserved; } }

    /// <summary>A child budget (a sub-search) with its own caps that also draws from this one.</summary>
    public Budget Split(BudgetLimits limits) => new(limits, this);

    /// <summary>Whether <paramref name="charge"/> fits now in this budget and every ancestor.</summary>
    public bool CanAfford(Charge charge) { lock (_sync) return WhyNot(charge) is null; }

    /// <summary>Why <paramref name="charge"/> does not fit (the first cap it would break), or null when it fits.</summary>
    public string? Explain(Charge charge) { lock (_sync) return WhyNot(charge); }

    /// <summary>Charges <paramref name="charge"/> if it fits in this budget and every ancestor; otherwise changes nothing and returns false.</summary>
    public bool TrySpend(Charge charge)
    {
        lock (_sync)
        {
            if (WhyNot(charge) is not null) return false;
            for (var b = this; b is not null; b = b.Parent) b._spent += charge;
            return true;
        }
    }

    /// <summary>Sets <paramref name="charge"/> aside (in this budget and every ancestor) if it fits; the reservation spends from it and releases the rest.</summary>
    public BudgetReservation? TryReserve(Charge charge)
    {
        lock (_sync)
        {
            if (WhyNot(charge) is not null) return null;
            for (var b = this; b is not null; b = b.Parent) b._reserved += charge;
            return new BudgetReservation(this, charge);
        }
    }

    internal bool SpendReserved(BudgetReservation reservation, Charge charge)
    {
        lock (_sync)
        {
            var left = reservation.RemainingUnlocked;
            if (!FitsIn(charge, left)) return false;
            reservation.RemainingUnlocked = left - charge;
            for (var b = this; b is not null; b = b.Parent) { b._reserved -= charge; b._spent += charge; }
            return true;
        }
    }

    internal void Release(BudgetReservation reservation)
    {
        lock (_sync)
        {
            var left = reservation.RemainingUnlocked;
            reservation.RemainingUnlocked = Charge.Zero;
            for (var b = this; b is not null; b = b.Parent) b._reserved -= left;
        }
    }

    internal object Sync => _sync;

    internal static bool FitsIn(Charge charge, Charge room) =>
        charge.Flops.AllAtMost(room.Flops) && charge.Tokens <= room.Tokens && charge.Generations <= room.Generations;

    string? WhyNot(Charge charge)
    {
        if (charge.Flops.Projection < 0 || charge.Flops.Attention < 0 || charge.Flops.LmHead < 0 || charge.Flops.PrmHead < 0
            || charge.Flops.Elementwise < 0 || charge.Tokens < 0 || charge.Generations < 0)
            throw new ArgumentException($"a charge cannot be negative: {charge}", nameof(charge));
        for (var b = this; b is not null; b = b.Parent)
        {
            string level = b.Parent is null ? "budget" : "sub-budget";
            var used = b._spent + b._reserved;
            var l = b.Limits;
            if (l.Flops is { } f && used.Flops.Total + charge.Flops.Total > f)
                return $"{level} FLOP cap {f}: {used.Flops.Total} spent or reserved, the next work needs {charge.Flops.Total}";
            if (l.FlopsByCategory is not null)
                foreach (var (c, cap) in l.FlopsByCategory)
                    if (used.Flops[c] + charge.Flops[c] > cap)
                        return $"{level} {c} FLOP cap {cap}: {used.Flops[c]} spent or reserved, the next work needs {charge.Flops[c]}";
            if (l.Tokens is { } t && used.Tokens + charge.Tokens > t)
                return $"{level} token cap {t}: {used.Tokens} spent or reserved, the next work needs {charge.Tokens}";
            if (l.Generations is { } g && used.Generations + charge.Generations > g)
                return $"{level} generation cap {g}: {used.Generations} spent or reserved, the next work needs {charge.Generations}";
        }
        return null;
    }
}

/// <summary>Work set aside in a <see cref="Budget"/>: spend from it, then dispose to release what is left.</summary>
public sealed class BudgetReservation : IDisposable
{
    internal BudgetReservation(Budget budget, Charge amount) { Budget = budget; Amount = amount; RemainingUnlocked = amount; }

    /// <summary>The budget the reservation was drawn from.</summary>
    public Budget Budget { get; }
    /// <summary>What was reserved.</summary>
    public Charge Amount { get; }
    /// <summary>What is left to spend.</summary>
    public Charge Remaining { get { lock (Budget.Sync) return RemainingUnlocked; } }
    internal Charge RemainingUnlocked { get; set; }

    /// <summary>Whether what is left covers <paramref name="charge"/> in every category.</summary>
    public bool Covers(Charge charge) { lock (Budget.Sync) return Budget.FitsIn(charge, RemainingUnlocked); }

    /// <summary>Spends <paramref name="charge"/> from the reservation if it covers it (every category); otherwise changes nothing and returns false.</summary>
    public bool TrySpend(Charge charge) => Budget.SpendReserved(this, charge);

    /// <summary>Releases the unspent rest (once; later calls do nothing).</summary>
    public void Dispose() => Budget.Release(this);
}
