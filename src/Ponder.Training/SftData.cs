using Ponder.Tasks;
using Ponder.Tokenization;

namespace Ponder.Training;

/// <summary>
/// One supervised example: [BOS] prompt completion [EOS]; only tokens after the prompt are trained on. A value-head
/// example carries <paramref name="Labels"/> instead: Labels[j] is the soft target of the score read at input token j
/// (NaN where no score is trained), and PromptLength is ignored.
/// </summary>
public sealed record SftExample(int[] Tokens, int PromptLength, float[]? Labels = null)
{
    /// <summary>Builds <c>[BOS] prompt completion [EOS]</c> from text.</summary>
    public static SftExample FromText(string prompt, string completion)
    {
        int[] p = ByteTokenizer.Ponder.Encode(prompt), c = ByteTokenizer.Ponder.Encode(completion);
        var tokens = new int[p.Length + c.Length + 2];
        tokens[0] = ByteTokenizer.PonderBos;
        p.CopyTo(tokens, 1);
        c.CopyTo(tokens, 1 + p.Length);
        tokens[^1] = ByteTokenizer.PonderEos;
        return new SftExample(tokens, 1 + p.Length);
    }
}

/// <summary>
/// Packs examples into (batch, seqLen) rows: examples follow each other in a row (each attends only to itself,
/// with positions from 0) until the next does not fit; the rest of the row is padding. The order is a fresh
/// permutation per epoch, a pure function of the seed, so a run resumed at a cursor sees the same batches.
/// </summary>
public sealed class SftData
{
    readonly IReadOnlyList<SftExample> examples;
    readonly ulong seed;
    readonly bool valued;
    int[]? permutation;
    long permutationEpoch = -1;

    /// <summary>Examples that fit in <paramref name="seqLen"/> + 1 tokens; longer ones are dropped (counted in <see cref="Dropped"/>).</summary>
    public SftData(IEnumerable<SftExample> examples, int seqLen, ulong seed)
    {
        var all = examples.ToList();
        valued = all.Count > 0 && all[0].Labels is not null;
        if (all.Any(e => (e.Labels is not null) != valued))
            throw new ArgumentException("examples must all carry value labels or none", nameof(examples));
        if (all.Any(e => e.Labels is not null && e.Labels.Length != e.Tokens.Length))
            throw new ArgumentException("an example's labels must have one entry per token", nameof(examples));
        this.examples = all.Where(e => e.Tokens.Length - 1 <= seqLen).ToList();
        Dropped = all.Count - this.examples.Count;
        if (this.examples.Count == 0) throw new ArgumentException($"no example fits in {seqLen} positions", nameof(examples));
        SeqLen = seqLen;
        this.seed = seed;
    }

    /// <summary>Examples kept.</summary>
    public int Count => examples.Count;
    /// <summary>Examples longer than the context, dropped.</summary>
    public int Dropped { get; }
    /// <summary>Positions per row.</summary>
    public int SeqLen { get; }
    /// <summary>Tokens of one epoch (as positions fed to the model).</summary>
    public long TokensPerEpoch => examples.Sum(e => (long)e.Tokens.Length - 1);

    SftExample At(long cursor)
    {
        long epoch = cursor / examples.Count;
        if (epoch != permutationEpoch)
        {
            var rng = DeterministicRandom.ForStream(seed, 1_000_000UL + (ulong)epoch);
            permutation = Enumerable.Range(0, examples.Count).ToArray();
            for (int i = permutation.Length - 1; i > 0; i--) { int j = rng.Next(0, i + 1); (permutation[i], permutation[j]) = (permutation[j], permutation[i]); }
            permutationEpoch = epoch;
        }
        return examples[permutation![(int)(cursor % examples.Count)]];
    }

    /// <summary>The batch starting at example <paramref name="cursor"/> (counted over epochs); returns the cursor after it.</summary>
    public (TrainingBatch Batch, long NextCursor) Next(long cursor, int batch)
    {
        int T = SeqLen, n = batch * T;
        var b = new TrainingBatch(batch, T, new int[n], new int[n], new float[n], new int[n], new int[n], valued ? new float[n] : null);
        for (int row = 0; row < batch; row++)
        {
            int pos = 0;
            while (true)
            {
                var ex = At(cursor);
                int len = ex.Tokens.Length - 1;
                if (pos + len > T) break;
                int o = row * T + pos;
                for (int j = 0; j < len; j++)
                {
                    b.Tokens[o + j] = ex.Tokens[j];
                    b.Targets[o + j] = ex.Tokens[j + 1];
                    if (ex.Labels is { } labels)
                    {
                        bool scored = !float.IsNaN(labels[j]);
                        b.Mask[o + j] = scored ? 1f : 0f;
                        b.Labels![o + j] = scored ? labels[j] : 0f;
                    }
                    else b.Mask[o + j] = j + 1 >= ex.PromptLength ? 1f : 0f;
                    b.Positions[o + j] = j;
                    b.SegmentStart[o + j] = pos;
                }
                pos += len;
                cursor++;
            }
            for (int t = pos; t < T; t++)
            {
                int o = row * T + t;
                b.Tokens[o] = ByteTokenizer.PonderPad; b.Targets[o] = ByteTokenizer.PonderPad; b.Mask[o] = 0; b.Positions[o] = 0; b.SegmentStart[o] = t;
            }
        }
        return (b, cursor);
    }
}
