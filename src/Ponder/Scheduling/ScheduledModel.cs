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
    }

    /// <summary>The model's name in reports and FLOP ledgers ("policy", "prm", ...).</summary>
    public string Name { get; }
    internal Transformer Transformer { get; }
    internal BlockPool Pool { get; }
    /// <summary>The pool's prefix index (null: sequences start empty).</summary>
    public PrefixIndex? Index { get; }
    /// <summary>The model's exact FLOP formula (what the scheduler charges per chunk).</summary>
    public FlopCounter Counter { get; }

    /// <summary>The model's shape and architecture.</summary>
    public ModelConfig Config => Transformer.Config;
    /// <summary>Whether the model's owner disposed it: work for it is refused (set under the scheduler's round lock).</summary>
    internal bool IsRetired { get; set; }
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
    /// <summary>Whether the work was computed (its output written).</summary>
    public bool Completed => Status == WorkStatus.Completed;
}
