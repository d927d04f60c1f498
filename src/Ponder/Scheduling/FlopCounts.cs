using Ponder.Backends;

namespace Ponder.Scheduling;

/// <summary>Exact FLOPs by <see cref="FlopCategory"/> (integers; a multiply-add is 2 FLOPs). A value type: add, subtract, compare.</summary>
public readonly record struct FlopCounts(long Projection, long Attention, long LmHead, long PrmHead, long Elementwise)
{
    /// <summary>No FLOPs.</summary>
    public static FlopCounts Zero => default;

    /// <summary>Sum over categories.</summary>
    public long Total => checked(Projection + Attention + LmHead + PrmHead + Elementwise);

    /// <summary>The count of one category.</summary>
    public long this[FlopCategory category] => category switch
    {
        FlopCategory.Projection => Projection,
        FlopCategory.Attention => Attention,
        FlopCategory.LmHead => LmHead,
        FlopCategory.PrmHead => PrmHead,
        FlopCategory.Elementwise => Elementwise,
        _ => throw new ArgumentOutOfRangeException(nameof(category), $"unknown FLOP category {category}"),
    };

    /// <summary>Only <paramref name="flops"/> in <paramref name="category"/>.</summary>
    public static FlopCounts Of(FlopCategory category, long flops) => category switch
    {
        FlopCategory.Projection => new(flops, 0, 0, 0, 0),
        FlopCategory.Attention => new(0, flops, 0, 0, 0),
        FlopCategory.LmHead => new(0, 0, flops, 0, 0),
        FlopCategory.PrmHead => new(0, 0, 0, flops, 0),
        FlopCategory.Elementwise => new(0, 0, 0, 0, flops),
        _ => throw new ArgumentOutOfRangeException(nameof(category), $"unknown FLOP category {category}"),
    };

    /// <summary>The counts a backend's ledger holds (e.g. a <see cref="FlopLedger.Since"/> delta).</summary>
    public static FlopCounts From(FlopLedger ledger)
    {
        ArgumentNullException.ThrowIfNull(ledger);
        return new(ledger[FlopCategory.Projection], ledger[FlopCategory.Attention], ledger[FlopCategory.LmHead],
            ledger[FlopCategory.PrmHead], ledger[FlopCategory.Elementwise]);
    }

    /// <summary>Category by category sum (checked: an overflow throws).</summary>
    public static FlopCounts operator +(FlopCounts a, FlopCounts b) => new(
        checked(a.Projection + b.Projection), checked(a.Attention + b.Attention), checked(a.LmHead + b.LmHead),
        checked(a.PrmHead + b.PrmHead), checked(a.Elementwise + b.Elementwise));

    /// <summary>Category by category difference (checked).</summary>
    public static FlopCounts operator -(FlopCounts a, FlopCounts b) => new(
        checked(a.Projection - b.Projection), checked(a.Attention - b.Attention), checked(a.LmHead - b.LmHead),
        checked(a.PrmHead - b.PrmHead), checked(a.Elementwise - b.Elementwise));

    /// <summary>Whether every category is at most <paramref name="other"/>'s.</summary>
    public bool AllAtMost(FlopCounts other) =>
        Projection <= other.Projection && Attention <= other.Attention && LmHead <= other.LmHead
        && PrmHead <= other.PrmHead && Elementwise <= other.Elementwise;

    /// <inheritdoc/>
    public override string ToString() =>
        $"projection={Projection}, attention={Attention}, lm_head={LmHead}, prm_head={PrmHead}, elementwise={Elementwise}, total={Total}";
}
