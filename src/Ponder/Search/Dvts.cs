namespace Ponder.Search;

/// <summary>
/// Diverse verifier tree search (from the open replication search-and-learn): N/M independent subtrees; each round
/// every subtree's current node gets M children (itself + M−1 forks), all children of all subtrees are extended one
/// step together and scored, and each subtree greedily keeps its best child (the others are disposed). A subtree
/// ends when its kept child is finished. The N/M final solutions go through the selector (best-of-N weighted).
/// Costs about N generations (M children per subtree per step).
/// </summary>
public sealed class Dvts : ISearchStrategy
{
    readonly SearchOptions options;

    /// <summary>Creates DVTS with budget N and per-step width M (0 = sqrt(N)); N/M subtrees (at least 1).</summary>
    public Dvts(int n, int width = 0, SearchOptions? options = null)
    {
        SearchBranches.Require(n >= 1, nameof(n), $"DVTS needs n >= 1, got {n}");
        SearchBranches.Require(width >= 0 && width <= n, nameof(width), $"DVTS width (M) must be in [0, N={n}] (0 = sqrt(N)), got {width}");
        N = n;
        Width = width == 0 ? BeamSearch.SqrtWidth(n) : width;
        Subtrees = Math.Max(1, n / Width);
        this.options = options ?? new SearchOptions();
        this.options.Validate();
    }

    /// <summary>N.</summary>
    public int N { get; }

    /// <summary>M (resolved).</summary>
    public int Width { get; }

    /// <summary>Number of independent subtrees, N/M.</summary>
    public int Subtrees { get; }

    /// <inheritdoc/>
    public string Name => $"dvts(N={N},M={Width})";

    /// <inheritdoc/>
    public async ValueTask<SearchResult> RunAsync(ISearchEngine engine, string question, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(question);
        var selector = options.Selector;
        var nodes = SearchBranches.ForkFromPrompt(engine, options.Prompt(question), Subtrees);
        var subtreeOf = Enumerable.Range(0, Subtrees).ToList();
        var done = new List<SearchCandidate>();
        var children = new List<Branch>();
        int round = 0;
        bool exhausted = false;
        try
        {
            while (nodes.Count > 0)
            {
                round++;
                children.Clear();
                foreach (var node in nodes) SearchBranches.AddChildren(node, Width, children);
                nodes.Clear(); // owned by children now
                exhausted = (await engine.ExtendAsync(children, options.Sampling(SearchSeeds.Derive(options.Seed, 0, round)), cancellationToken)
                    .ConfigureAwait(false)).BudgetExhausted;
                if (!exhausted) exhausted = (await engine.ScoreAsync(children, cancellationToken).ConfigureAwait(false)).BudgetExhausted;

                var nextSubtree = new List<int>();
                for (int s = 0; s < subtreeOf.Count; s++)
                {
                    var group = children.GetRange(s * Width, Width);
                    int best = SearchBranches.RankDescending(group.Select(c => selector.Score(c.StepScores)).ToArray())[0];
                    for (int c = 0; c < group.Count; c++) if (c != best) group[c].Dispose();
                    if (group[best].Finished)
                    {
                        done.Add(selector.Candidate(group[best], subtreeOf[s], round));
                        group[best].Dispose();
                    }
                    else
                    {
                        nodes.Add(group[best]);
                        nextSubtree.Add(subtreeOf[s]);
                    }
                }
                children.Clear();
                subtreeOf = nextSubtree;
                if (exhausted || round >= options.MaxRounds) break;
            }
            var candidates = done.Concat(nodes.Select((b, i) => selector.Candidate(b, subtreeOf[i], round))).ToList();
            return SearchBranches.Result(Name, selector, candidates, engine, round, exhausted);
        }
        finally
        {
            // A fork failing mid-round leaves a node in both lists: dispose each branch once.
            SearchBranches.DisposeAll(children.Concat(nodes).Distinct(ReferenceEqualityComparer.Instance).Cast<Branch>());
        }
    }
}
