using Ponder.Cache;

namespace Ponder.Scheduling;

/// <summary>
/// What one scheduler round will do, decided by <see cref="StepScheduler.Plan"/> before any forward runs: the work
/// each model's forward computes (chunk and cost per work), the work that ends without a forward, and the request to
/// preempt. <see cref="StepScheduler.Execute"/> runs the forwards; <see cref="StepScheduler.Complete"/> applies the rest.
/// </summary>
internal sealed class RoundPlan
{
    /// <summary>One forward per model that has work this round, in planning order.</summary>
    public List<ModelForward> Forwards { get; } = [];
    /// <summary>Work that ends this round, with its result or error (cancelled, refused by its budget, computed, failed).</summary>
    public List<(StepScheduler.WorkItem Item, WorkResult? Result, Exception? Error)> Finished { get; } = [];
    /// <summary>The request whose sequences in <see cref="PreemptPool"/> lose their blocks, to be recomputed later.</summary>
    public ScheduledRequest? Preempt { get; set; }
    public BlockPool? PreemptPool { get; set; }
    /// <summary>Work that waits for KV blocks (or, for a preempted request, for others to get theirs).</summary>
    public int Deferred { get; set; }
    /// <summary>Work queued when the round was planned.</summary>
    public int Queued { get; set; }
    /// <summary>Nothing was queued: no round.</summary>
    public bool IsEmpty => Queued == 0;

    public void Finish(StepScheduler.WorkItem item, WorkResult? result, Exception? error) => Finished.Add((item, result, error));
}

/// <summary>One model's batched forward in a round: the batch, the work in it (row order) and the FLOPs predicted.</summary>
internal sealed class ModelForward(ScheduledModel model, SequenceBatch batch)
{
    public ScheduledModel Model { get; } = model;
    public SequenceBatch Batch { get; } = batch;
    public List<(StepScheduler.WorkItem Item, ChunkWork Chunk, FlopCounts Cost)> Items { get; } = [];
    public FlopCounts Predicted { get; private set; } = FlopCounts.Zero;
    public Memory<float> Outputs { get; set; }
    public Exception? Error { get; set; }

    public void Add(StepScheduler.WorkItem item, ChunkWork chunk, FlopCounts cost)
    {
        Items.Add((item, chunk, cost));
        Predicted += cost;
    }
}

/// <summary>Runs a model's batched forward for the scheduler; the default runs the transformer, tests substitute a fake.</summary>
internal interface IForwardExecutor
{
    /// <summary>Computes <paramref name="batch"/> on <paramref name="model"/>, writing the output rows; returns the FLOPs performed.</summary>
    FlopCounts Forward(ScheduledModel model, SequenceBatch batch, Span<float> outputs);
}

/// <summary>The transformer's forward, its FLOPs read from the backend's ledger.</summary>
internal sealed class TransformerExecutor : IForwardExecutor
{
    public static readonly TransformerExecutor Instance = new();

    public FlopCounts Forward(ScheduledModel model, SequenceBatch batch, Span<float> outputs)
    {
        var ledger = model.Transformer.Backend.Flops;
        var before = ledger.Snapshot();
        model.Transformer.Forward(batch.Layout, batch.Tokens, model.Pool.Storage, batch.OutputRows, outputs);
        return FlopCounts.From(ledger.Since(before));
    }
}
