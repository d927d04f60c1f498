namespace Ponder.Search;

/// <summary>
/// Sequential revisions (Snell et al. 2024, section 6): P parallel chains, each a sequence of L attempts; attempt t
/// of a chain is generated from <see cref="RevisionPrompt"/> with the chain's most recent (up to 4) finished attempts in
/// context, fewer when they would not leave <see cref="RevisionPrompt.AnswerRoom"/> tokens of the policy's context; the
/// verifier scores each attempt as an answer to the question alone (as it would score a best-of-N sample). All chains advance together (one batched attempt per chain per sequential step). Selection: with a
/// verifier (selector naive or weighted) every attempt is scored and the answer is chosen hierarchically (within each
/// chain, then across chain winners); with majority, flat over all attempts of all chains and nothing is scored.
/// Costs P x L generations.
/// </summary>
public sealed class Revisions : ISearchStrategy
{
    readonly SearchOptions options;

    /// <summary>Creates a revision search with <paramref name="parallel"/> chains of <paramref name="sequential"/> attempts.</summary>
    public Revisions(int parallel, int sequential, SearchOptions? options = null)
    {
        SearchBranches.Require(parallel >= 1, nameof(parallel), $"revisions need parallel chains (P) >= 1, got {parallel}");
        SearchBranches.Require(sequential >= 1, nameof(sequential), $"revisions need a sequential length >= 1, got {sequential}");
        Parallel = parallel;
        Sequential = sequential;
        this.options = options ?? new SearchOptions();
        this.options.Validate();
    }

    /// <summary>P, the number of independent chains.</summary>
    public int Parallel { get; }

    /// <summary>L, attempts per chain.</summary>
    public int Sequential { get; }

    /// <inheritdoc/>
    public string Name => $"revisions(P={Parallel},L={Sequential},sel={options.Selector.Method.ToString().ToLowerInvariant()})";

    /// <inheritdoc/>
    public async ValueTask<SearchResult> RunAsync(ISearchEngine engine, string question, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(question);
        var selector = options.Selector;
        bool verify = selector.Method != AnswerSelection.Majority;
        string questionPrompt = options.Prompt(question);
        var chains = Enumerable.Range(0, Parallel).Select(_ => new List<SearchCandidate>()).ToArray();
        var attempts = new List<Branch>(Parallel);
        int steps = 0;
        bool exhausted = false;
        try
        {
            for (int t = 0; t < Sequential && !exhausted; t++)
            {
                foreach (var chain in chains)
                    attempts.Add(engine.Start(RevisionPrompt.Fit(questionPrompt, [.. chain.Where(c => c.Finished).Select(c => c.Text)],
                        engine.PromptTokens, engine.ContextTokens), verifierPrompt: questionPrompt));
                (_, exhausted) = await SearchBranches.ExtendToEndAsync(engine, attempts, options, phase: t, cancellationToken)
                    .ConfigureAwait(false);
                if (!exhausted && verify)
                    exhausted = (await engine.ScoreAsync(attempts, cancellationToken).ConfigureAwait(false)).BudgetExhausted;
                for (int c = 0; c < Parallel; c++)
                {
                    // An attempt the budget cut off (unfinished) is kept as a candidate, but never enters later prompts.
                    chains[c].Add(selector.Candidate(attempts[c], c, t));
                    attempts[c].Dispose();
                }
                attempts.Clear();
                steps = t + 1;
            }
            var candidates = chains.SelectMany(c => c).ToList();
            var answer = selector.SelectHierarchical(chains);
            return new SearchResult(Name, answer, candidates, engine.Budget, steps, exhausted);
        }
        finally
        {
            SearchBranches.DisposeAll(attempts);
        }
    }
}
