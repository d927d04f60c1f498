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

    readonly BeamSearch? attemptSearch;

    /// <summary>
    /// Creates a revision search with <paramref name="parallel"/> chains of <paramref name="sequential"/> attempts.
    /// With <paramref name="attemptBeams"/> B &gt; 1 (beyond the paper, which it lists as future work), each attempt is
    /// itself a PRM beam search of B beams (width sqrt B) from the revision prompt, and the chain keeps its selected
    /// answer's best-scored candidate: P x L x B generations.
    /// </summary>
    public Revisions(int parallel, int sequential, SearchOptions? options = null, int attemptBeams = 1)
    {
        SearchBranches.Require(parallel >= 1, nameof(parallel), $"revisions need parallel chains (P) >= 1, got {parallel}");
        SearchBranches.Require(sequential >= 1, nameof(sequential), $"revisions need a sequential length >= 1, got {sequential}");
        SearchBranches.Require(attemptBeams >= 1, nameof(attemptBeams), $"revisions need beams per attempt (B) >= 1, got {attemptBeams}");
        Parallel = parallel;
        Sequential = sequential;
        AttemptBeams = attemptBeams;
        this.options = options ?? new SearchOptions();
        this.options.Validate();
        SearchBranches.Require(attemptBeams == 1 || this.options.Selector.Method != AnswerSelection.Majority, nameof(attemptBeams),
            "beam search inside revisions needs a verifier (weighted or naive selection), not majority");
        if (attemptBeams > 1) attemptSearch = new BeamSearch(attemptBeams, 0, 0, this.options);
    }

    /// <summary>B, beams of the PRM beam search that writes each attempt (1 = one sample per attempt, the paper's revisions).</summary>
    public int AttemptBeams { get; }

    /// <summary>P, the number of independent chains.</summary>
    public int Parallel { get; }

    /// <summary>L, attempts per chain.</summary>
    public int Sequential { get; }

    /// <inheritdoc/>
    public string Name => $"revisions(P={Parallel},L={Sequential}{(AttemptBeams > 1 ? $",B={AttemptBeams}" : "")},sel={options.Selector.Method.ToString().ToLowerInvariant()})";

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
                if (attemptSearch is not null)
                {
                    exhausted = await BeamAttemptsAsync(engine, questionPrompt, chains, t, cancellationToken).ConfigureAwait(false);
                    steps = t + 1;
                    continue;
                }
                foreach (var chain in chains)
                    attempts.Add(engine.Start(RevisionPrompt.Fit(questionPrompt, [.. chain.Where(c => c.Finished).Select(c => c.Text)],
                        engine.PromptTokens, engine.ContextTokens), verifierPrompt: questionPrompt));
                (_, exhausted) = await SearchBranches.ExtendToEndAsync(engine, attempts, options, phase: t, cancellationToken)
                    .ConfigureAwait(false);
                if (verify) exhausted |= await SearchBranches.ScoreAsync(engine, attempts, exhausted, cancellationToken).ConfigureAwait(false);
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

    /// <summary>
    /// One sequential step with a beam search per chain (all chains' trees advance together): each chain gains the
    /// best-scored candidate carrying its tree's selected answer (or its best candidate when none has an answer).
    /// Returns whether the budget ran out.
    /// </summary>
    async ValueTask<bool> BeamAttemptsAsync(ISearchEngine engine, string questionPrompt, List<SearchCandidate>[] chains, int t,
        CancellationToken cancellationToken)
    {
        var roots = chains.Select(chain => (RevisionPrompt.Fit(questionPrompt, [.. chain.Where(c => c.Finished).Select(c => c.Text)],
            engine.PromptTokens, engine.ContextTokens), (string?)questionPrompt)).ToList();
        var (trees, _, exhausted) = await attemptSearch!.RunTreesAsync(engine, roots, t + 1, cancellationToken).ConfigureAwait(false);
        for (int c = 0; c < chains.Length; c++)
        {
            var candidates = trees[c];
            if (candidates.Count == 0) continue;
            string? answer = options.Selector.Select(candidates);
            var pick = candidates.Where(x => answer is null || x.Answer == answer).MaxBy(x => x.Score)!;
            chains[c].Add(pick with { Chain = c, Round = t });
        }
        return exhausted;
    }
}
