namespace Ponder.Search;

/// <summary>
/// Best-of-N: N independent full samples (forks of one prompt), scored by the verifier, selected by the selector
/// (best-of-N weighted by default). Costs N generations.
/// </summary>
public sealed class BestOfN : ISearchStrategy
{
    readonly SearchOptions options;

    /// <summary>Creates best-of-N with <paramref name="n"/> samples.</summary>
    public BestOfN(int n, SearchOptions? options = null)
    {
        SearchBranches.Require(n >= 1, nameof(n), $"best-of-N needs n >= 1, got {n}");
        N = n;
        this.options = options ?? new SearchOptions();
        this.options.Validate();
    }

    /// <summary>Number of samples.</summary>
    public int N { get; }

    /// <inheritdoc/>
    public string Name => $"best-of-n(N={N})";

    /// <inheritdoc/>
    public async ValueTask<SearchResult> RunAsync(ISearchEngine engine, string question, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(question);
        var samples = SearchBranches.ForkFromPrompt(engine, options.Prompt(question), N);
        try
        {
            var (rounds, exhausted) = await SearchBranches.ExtendToEndAsync(engine, samples, options, phase: 0, cancellationToken)
                .ConfigureAwait(false);
            // Scoring is skipped for majority (no verifier); otherwise the verifier scores the samples (the budget may
            // refuse some, which leaves their scores missing and is fine).
            if (options.Selector.Method != AnswerSelection.Majority)
                exhausted |= await SearchBranches.ScoreAsync(engine, samples, exhausted, cancellationToken).ConfigureAwait(false);
            var candidates = samples.Select((b, i) => options.Selector.Candidate(b, i, rounds)).ToList();
            return SearchBranches.Result(Name, options.Selector, candidates, engine, rounds, exhausted);
        }
        finally
        {
            SearchBranches.DisposeAll(samples);
        }
    }
}
