namespace Ponder.Backends;

/// <summary>
/// Where each token of a batched forward sits: which sequence it belongs to, its position, the cache slot its K/V
/// go to, and each sequence's block table. One forward mixes prefill chunks and decode tokens of many sequences:
/// <code>
///   rows:      [ s0: p0 .. p0+n0-1 | s1: p1 .. p1+n1-1 | ... ]   (n = Σ nᵢ rows of every activation tensor)
///   sequence s attends to keys 0 .. pos of its own blocks only: BlockIds[BlockTableStart[s] .. BlockTableStart[s+1]]
/// </code>
/// Reused across forwards (<see cref="Clear"/>), so building a batch allocates nothing once warm.
/// </summary>
public sealed class BatchLayout
{
    int[] _queryStart = new int[8], _queryCount = new int[8], _contextLength = new int[8], _blockTableStart = new int[9];
    int[] _blockIds = new int[64], _positions = new int[64], _slots = new int[64], _sequenceOf = new int[64];

    /// <summary>An empty layout for a pool of <paramref name="blockSize"/>-token blocks.</summary>
    public BatchLayout(int blockSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        BlockSize = blockSize;
    }

    /// <summary>Tokens per KV block of the pool the batch runs on.</summary>
    public int BlockSize { get; }
    /// <summary>Sequences in the batch.</summary>
    public int SequenceCount { get; private set; }
    /// <summary>Rows (new tokens) in the batch.</summary>
    public int TokenCount { get; private set; }
    /// <summary>Exact causal key count Σ (n·p + n(n+1)/2) over sequences: what attention costs per head and dim.</summary>
    public long CausalKeys { get; private set; }
    /// <summary>Longest context (keys) any token of the batch attends to.</summary>
    public int MaxContext { get; private set; }
    /// <summary>Changes whenever the layout changes, so device backends can cache their uploaded copy.</summary>
    public long Version { get; private set; }

    /// <summary>First row of each sequence's chunk.</summary>
    public ReadOnlySpan<int> QueryStart => _queryStart.AsSpan(0, SequenceCount);
    /// <summary>Rows (new tokens) of each sequence's chunk (n).</summary>
    public ReadOnlySpan<int> QueryCount => _queryCount.AsSpan(0, SequenceCount);
    /// <summary>Tokens already cached for each sequence before this batch's chunk (p).</summary>
    public ReadOnlySpan<int> ContextLength => _contextLength.AsSpan(0, SequenceCount);
    /// <summary>Where each sequence's block table starts in <see cref="BlockIds"/> (SequenceCount + 1 entries; the last is the end).</summary>
    public ReadOnlySpan<int> BlockTableStart => _blockTableStart.AsSpan(0, SequenceCount + 1);
    /// <summary>Every sequence's block table, back to back.</summary>
    public ReadOnlySpan<int> BlockIds => _blockIds.AsSpan(0, _blockTableStart[SequenceCount]);
    /// <summary>Position of every row (p + i).</summary>
    public ReadOnlySpan<int> Positions => _positions.AsSpan(0, TokenCount);
    /// <summary>Cache slot of every row: blockId * BlockSize + position % BlockSize.</summary>
    public ReadOnlySpan<int> Slots => _slots.AsSpan(0, TokenCount);
    /// <summary>Sequence index of every row.</summary>
    public ReadOnlySpan<int> SequenceOf => _sequenceOf.AsSpan(0, TokenCount);

    /// <summary>The block table of sequence <paramref name="s"/>.</summary>
    public ReadOnlySpan<int> BlockTable(int s) => _blockIds.AsSpan(_blockTableStart[s], _blockTableStart[s + 1] - _blockTableStart[s]);

    /// <summary>Empties the layout for the next forward (keeps its arrays).</summary>
    public void Clear()
    {
        SequenceCount = 0; TokenCount = 0; CausalKeys = 0; MaxContext = 0; _blockTableStart[0] = 0; Version++;
    }

    /// <summary>
    /// Adds a sequence with <paramref name="contextLength"/> cached tokens and <paramref name="newTokens"/> new ones,
    /// whose blocks are <paramref name="blockTable"/> (it must cover contextLength + newTokens tokens).
    /// Returns the sequence's index in the batch.
    /// </summary>
    public int Add(int contextLength, int newTokens, ReadOnlySpan<int> blockTable)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(contextLength);
        ArgumentOutOfRangeException.ThrowIfLessThan(newTokens, 1);
        long total = (long)contextLength + newTokens;
        if (total > (long)blockTable.Length * BlockSize)
            throw new ArgumentException($"block table of {blockTable.Length} blocks x {BlockSize} cannot hold {total} tokens", nameof(blockTable));
        int s = SequenceCount;
        Grow(ref _queryStart, s + 1); Grow(ref _queryCount, s + 1); Grow(ref _contextLength, s + 1); Grow(ref _blockTableStart, s + 2);
        int tableStart = _blockTableStart[s];
        Grow(ref _blockIds, tableStart + blockTable.Length);
        blockTable.CopyTo(_blockIds.AsSpan(tableStart));
        _blockTableStart[s + 1] = tableStart + blockTable.Length;

        int row0 = TokenCount;
        Grow(ref _positions, row0 + newTokens); Grow(ref _slots, row0 + newTokens); Grow(ref _sequenceOf, row0 + newTokens);
        for (int i = 0; i < newTokens; i++)
        {
            int pos = contextLength + i;
            _positions[row0 + i] = pos;
            _slots[row0 + i] = blockTable[pos / BlockSize] * BlockSize + pos % BlockSize;
            _sequenceOf[row0 + i] = s;
        }
        _queryStart[s] = row0; _queryCount[s] = newTokens; _contextLength[s] = contextLength;
        TokenCount += newTokens; SequenceCount++;
        CausalKeys += (long)newTokens * contextLength + (long)newTokens * (newTokens + 1) / 2;
        MaxContext = Math.Max(MaxContext, (int)total);
        Version++;
        return s;
    }

    static void Grow(ref int[] array, int needed)
    {
        if (needed > array.Length) Array.Resize(ref array, Math.Max(needed, array.Length * 2));
    }
}
