using Ponder.Backends;

namespace Ponder.Cache;

/// <summary>
/// Turns sequences with pending tokens into one batched forward: the <see cref="BatchLayout"/>, the tokens of
/// every row, and the output rows (the last row of each sequence whose pending tokens all fit); after the forward,
/// <see cref="MarkComputed"/> advances each sequence. Cache bookkeeping only, no model math:
/// <code>
///   s0: computed 128, pending 1  ─┐      rows  [ s0: 128 | s1: 40 41 42 | s2: 7 ]      outputs: rows 0, 3, 4
///   s1: computed 40,  pending 3  ─┼─►    Layout.Add(128, 1, s0.BlockTable), Add(40, 3, ...), Add(7, 1, ...)
///   s2: computed 7,   pending 1  ─┘      forward(Layout, Tokens, pool.Storage, OutputRows, logits); MarkComputed()
/// </code>
/// Between <see cref="Add"/> and <see cref="MarkComputed"/> the batched sequences must not change. Reused across
/// steps (<see cref="Clear"/>), so a warm batch allocates nothing.
/// </summary>
public sealed class SequenceBatch
{
    readonly List<Sequence> _sequences = [];
    readonly List<int> _chunk = [];
    readonly List<int> _outputIndex = [];
    int[] _tokens = new int[64];
    readonly List<int> _outputRows = [];

    /// <summary>A batch for sequences of pools with <paramref name="blockSize"/> tokens per block.</summary>
    public SequenceBatch(int blockSize) => Layout = new BatchLayout(blockSize);

    /// <summary>The batch's layout for <c>Transformer.Forward</c>.</summary>
    public BatchLayout Layout { get; }
    /// <summary>Sequences in the batch.</summary>
    public int Count => _sequences.Count;
    /// <summary>One token id per batch row.</summary>
    public ReadOnlySpan<int> Tokens => _tokens.AsSpan(0, Layout.TokenCount);
    /// <summary>Batch rows whose outputs (logits, scores) are wanted: the last row of each sequence that finishes its pending tokens.</summary>
    public ReadOnlySpan<int> OutputRows => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_outputRows);
    /// <summary>The i-th sequence added.</summary>
    public Sequence this[int i] => _sequences[i];

    /// <summary>Index into <see cref="OutputRows"/> of sequence <paramref name="i"/>'s output, or -1 if its chunk does not reach its last token.</summary>
    public int OutputIndex(int i) => _outputIndex[i];

    /// <summary>Empties the batch.</summary>
    public void Clear()
    {
        _sequences.Clear(); _chunk.Clear(); _outputIndex.Clear(); _outputRows.Clear();
        Layout.Clear();
    }

    /// <summary>
    /// Adds up to <paramref name="maxTokens"/> of <paramref name="sequence"/>'s pending tokens (a prefill chunk or a
    /// decode token), first copying any shared block they will be written to. Returns the sequence's index in the batch.
    /// On <see cref="KvCacheFullException"/> (no room for those copies) the batch and pool are unchanged.
    /// </summary>
    public int Add(Sequence sequence, int maxTokens = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTokens, 1);
        ObjectDisposedException.ThrowIf(sequence.IsDisposed, sequence);
        if (sequence.Pool.BlockSize != Layout.BlockSize)
            throw new ArgumentException($"the sequence's pool has blocks of {sequence.Pool.BlockSize} tokens, the batch {Layout.BlockSize}", nameof(sequence));
        if (sequence.PendingLength == 0)
            throw new ArgumentException($"the sequence has no pending tokens ({sequence.Length} computed)", nameof(sequence));
        foreach (var s in _sequences)
            if (ReferenceEquals(s, sequence)) throw new ArgumentException("the sequence is already in this batch", nameof(sequence));

        int context = sequence.ComputedLength, n = Math.Min(sequence.PendingLength, maxTokens);
        sequence.PrepareWrite(n);
        int row0 = Layout.TokenCount;
        int index = Layout.Add(context, n, sequence.BlockTable);
        if (_tokens.Length < row0 + n) Array.Resize(ref _tokens, Math.Max(row0 + n, _tokens.Length * 2));
        sequence.TokenSpan.Slice(context, n).CopyTo(_tokens.AsSpan(row0));
        _sequences.Add(sequence);
        _chunk.Add(n);
        if (context + n == sequence.Length)
        {
            _outputIndex.Add(_outputRows.Count);
            _outputRows.Add(row0 + n - 1);
        }
        else _outputIndex.Add(-1);
        return index;
    }

    /// <summary>
    /// After the forward: marks each sequence's chunk computed (publishing newly full blocks to its prefix index);
    /// a sequence disposed since it was added is skipped (its blocks are gone).
    /// </summary>
    public void MarkComputed()
    {
        var context = Layout.ContextLength;
        for (int i = 0; i < _sequences.Count; i++)
            if (!_sequences[i].IsDisposed) _sequences[i].MarkComputed(context[i] + _chunk[i]);
    }
}
