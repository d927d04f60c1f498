namespace Ponder.Search;

/// <summary>A test-time compute strategy: spends an engine's budget on one question and selects an answer.</summary>
public interface ISearchStrategy
{
    /// <summary>The strategy and its parameters, e.g. "beam(N=16,M=4)".</summary>
    string Name { get; }

    /// <summary>
    /// Runs the search for <paramref name="question"/> (formatted into a prompt by <see cref="SearchOptions.Prompt"/>).
    /// Finishes gracefully when the engine reports the budget exhausted, returning the best answer so far.
    /// Every branch it creates is disposed before it returns (or throws).
    /// </summary>
    ValueTask<SearchResult> RunAsync(ISearchEngine engine, string question, CancellationToken cancellationToken = default);
}

/// <summary>Options shared by all strategies (null members mean defaults).</summary>
public sealed record SearchOptions
{
    /// <summary>Selects the final answer; also carries the answer extractor and step aggregation.</summary>
    public AnswerSelector Selector { get; init; } = new();

    /// <summary>Turns a question into the policy's prompt. Default: the arithmetic-chain format "Q: {question}\n".</summary>
    public Func<string, string> Prompt { get; init; } = DefaultPrompt;

    /// <summary>Sampling temperature of proposal steps (lookahead rollouts always use 0).</summary>
    public float Temperature { get; init; } = 1f;

    /// <summary>Nucleus sampling mass of proposal steps.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Base seed; each round derives its own (see <see cref="SearchSeeds"/>).</summary>
    public ulong Seed { get; init; }

    /// <summary>Longest step in tokens.</summary>
    public int MaxStepTokens { get; init; } = 64;

    /// <summary>Most step rounds per solution (the paper: 40).</summary>
    public int MaxRounds { get; init; } = 40;

    /// <summary>The arithmetic-chain prompt: "Q: {question}\n".</summary>
    public static string DefaultPrompt(string question) => $"Q: {question}\n";

    internal StepSampling Sampling(ulong seed) => new(Temperature, seed, MaxStepTokens, TopP);

    internal StepSampling Greedy(ulong seed) => new(0f, seed, MaxStepTokens, 1f);

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(Selector, nameof(Selector));
        ArgumentNullException.ThrowIfNull(Prompt, nameof(Prompt));
        if (MaxRounds < 1) throw new ArgumentException($"SearchOptions.MaxRounds must be >= 1, got {MaxRounds}", nameof(MaxRounds));
        if (MaxStepTokens < 1) throw new ArgumentException($"SearchOptions.MaxStepTokens must be >= 1, got {MaxStepTokens}", nameof(MaxStepTokens));
        if (!(Temperature >= 0)) throw new ArgumentException($"SearchOptions.Temperature must be >= 0, got {Temperature}", nameof(Temperature));
    }
}

/// <summary>
/// Per-round seeds. One <see cref="ISearchEngine.ExtendAsync"/> call gets one seed; the engine gives each branch of the
/// call its own random stream (so the M forks of one beam sample different steps), and every call gets a fresh seed
/// so a branch never repeats a stream.
/// </summary>
public static class SearchSeeds
{
    /// <summary>A well-mixed seed for (base seed, phase, round) (SplitMix64 finalizer).</summary>
    public static ulong Derive(ulong seed, int phase, int round)
    {
        ulong z = seed + 0x9E3779B97F4A7C15UL * (ulong)(1 + phase * 65_537L + round);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
