namespace Ponder.Sampling;

/// <summary>
/// How the next token is chosen. Processors apply in Hugging Face's order: repetition penalty, temperature, top-k,
/// top-p, min-p. <see cref="Temperature"/> = 0 is greedy (argmax after the repetition penalty).
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>Divides the logits before sampling: below 1 sharpens, above 1 flattens; 0 = greedy (argmax). Default 1.</summary>
    public float Temperature { get; init; } = 1f;
    /// <summary>Keep only the k most likely tokens (0 = off).</summary>
    public int TopK { get; init; }
    /// <summary>Keep the smallest set of tokens whose probability reaches p (1 = off).</summary>
    public float TopP { get; init; } = 1f;
    /// <summary>Drop tokens whose probability is below minP times the most likely token's (0 = off).</summary>
    public float MinP { get; init; }
    /// <summary>CTRL-style penalty on tokens already in the context: positive logits divided by it, negative multiplied (1 = off).</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    /// <summary>Seed of this sequence's random stream: the same seed gives the same tokens whatever else is in the batch.</summary>
    public ulong Seed { get; init; } = 0x5EED;
    /// <summary>Most tokens to generate after the prompt (default 256); the model's context may end generation sooner.</summary>
    public int MaxNewTokens { get; init; } = 256;
    /// <summary>Generation stops when the text contains any of these; the stop string itself is not returned.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>Stop at the model's end-of-sequence tokens (default true).</summary>
    public bool StopAtEos { get; init; } = true;

    /// <summary>Greedy decoding: temperature 0, everything else default.</summary>
    public static SamplingOptions Greedy { get; } = new() { Temperature = 0 };

    /// <summary>Throws <see cref="ArgumentException"/> naming the option that is out of range.</summary>
    public SamplingOptions Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature)) throw new ArgumentException($"temperature {Temperature} must be >= 0 and finite", nameof(Temperature));
        if (TopK < 0) throw new ArgumentException($"top-k {TopK} must be >= 0", nameof(TopK));
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"top-p {TopP} must be in (0, 1]", nameof(TopP));
        if (!(MinP >= 0 && MinP <= 1)) throw new ArgumentException($"min-p {MinP} must be in [0, 1]", nameof(MinP));
        if (!(RepetitionPenalty > 0) || float.IsInfinity(RepetitionPenalty)) throw new ArgumentException($"repetition penalty {RepetitionPenalty} must be > 0", nameof(RepetitionPenalty));
        if (MaxNewTokens < 0) throw new ArgumentException($"max new tokens {MaxNewTokens} must be >= 0", nameof(MaxNewTokens));
        if (StopStrings.Any(string.IsNullOrEmpty)) throw new ArgumentException("stop strings must not be empty", nameof(StopStrings));
        return this;
    }
}
