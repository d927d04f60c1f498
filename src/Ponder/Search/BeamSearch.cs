namespace Ponder.Search;

/// <summary>
/// PRM beam search with optional lookahead (Snell et al. 2024, section 5).
/// <code>
///  round 1:  prompt ──fork×N──► N beams ──extend 1 step──► score ──► keep top N/M
///  round r:  each survivor ──(itself + M−1 forks)──► N beams ──extend──► score ──► finished beams leave
///            ... until every slot is finished or 40 rounds; finished candidates → best-of-N weighted
/// </code>
/// With lookahead k &gt; 0, a beam's rank is the verifier's score at the end of a greedy (temperature 0) rollout of up
/// to k more steps; rollouts are forks, scored once at their end and then disposed. k = 0 is plain beam search.
/// Beams are only ever forked: no prefix is rebuilt. Finished beams free a slot for good, so at most N candidates
/// (N generations) are produced; with F finished, the top ceil((N−F)/M) beams are kept and expanded M times each in
/// rank order until N−F beams exist.
/// </summary>
public sealed class BeamSearch : ISearchStrategy
{
    readonly SearchOptions options;

    /// <summary>Creates a beam search.</summary>
    /// <param name="beams">N: beams per round (the generation budget is N x (k+1)).</param>
    /// <param name="width">M: children per survivor; 0 = round(sqrt(N)).</param>
    /// <param name="lookahead">k: greedy rollout steps used to score a beam; 0 = plain beam search.</param>
    /// <param name="options">Shared options.</param>
    public BeamSearch(int beams, int width = 0, int lookahead = 0, SearchOptions? options = null)
    {
        SearchBranches.Require(beams >= 1, nameof(beams), $"beam search needs beams (N) >= 1, got {beams}");
        SearchBranches.Require(width >= 0, nameof(width), $"beam width (M) must be >= 0 (0 = sqrt(N)), got {width}");
        SearchBranches.Require(width <= beams, nameof(width), $"beam width (M) {width} exceeds the number of beams (N) {beams}");
        SearchBranches.Require(lookahead >= 0, nameof(lookahead), $"lookahead (k) must be >= 0, got {lookahead}");
        Beams = beams;
        Width = width == 0 ? SqrtWidth(beams) : width;
        LookaheadSteps = lookahead;
        this.options = options ?? new SearchOptions();
        this.options.Validate();
    }

    /// <summary>N.</summary>
    public int Beams { get; }

    /// <summary>M (resolved).</summary>
    public int Width { get; }

    /// <summary>k.</summary>
    public int LookaheadSteps { get; }

    /// <inheritdoc/>
    public string Name => LookaheadSteps == 0 ? $"beam(N={Beams},M={Width})" : $"lookahead(N={Beams},M={Width},k={LookaheadSteps})";

    /// <summary>The paper's M = sqrt(N), rounded to the nearest integer, at least 1.</summary>
    public static int SqrtWidth(int beams) => Math.Max(1, (int)Math.Round(Math.Sqrt(beams)));

    /// <inheritdoc/>
    public async ValueTask<SearchResult> RunAsync(ISearchEngine engine, string question, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(question);
        var (trees, rounds, exhausted) = await RunTreesAsync(engine, [(options.Prompt(question), null)], 0, cancellationToken).ConfigureAwait(false);
        return SearchBranches.Result(Name, options.Selector, trees[0], engine, rounds, exhausted);
    }

    /// <summary>
    /// Runs one beam search per root (policy prompt, verifier prompt or null = the same), all advanced together: every
    /// round extends and scores the beams of every unfinished tree in one call, so their forwards batch. Returns each
    /// tree's candidates (finished ones, then those the round limit or the budget cut off), the rounds run and whether
    /// the budget ran out. <paramref name="phase"/> separates the random streams of successive calls (revision steps).
    /// </summary>
    internal async ValueTask<(List<SearchCandidate>[] Candidates, int Rounds, bool Exhausted)> RunTreesAsync(ISearchEngine engine,
        IReadOnlyList<(string Prompt, string? VerifierPrompt)> roots, int phase, CancellationToken cancellationToken)
    {
        var selector = options.Selector;
        var trees = roots.Select(r => new Tree(SearchBranches.ForkFromPrompt(engine, r.Prompt, r.VerifierPrompt, Beams))).ToArray();
        int round = 0;
        bool exhausted = false;
        try
        {
            while (true)
            {
                round++;
                var live = trees.Where(t => !t.Done).ToList();
                var beams = live.SelectMany(t => t.Beams).ToList();
                var extended = await engine.ExtendAsync(beams, options.Sampling(SearchSeeds.Derive(options.Seed, 3 * phase, round)), cancellationToken)
                    .ConfigureAwait(false);
                exhausted = extended.BudgetExhausted;
                if (!exhausted) exhausted = (await engine.ScoreAsync(beams, cancellationToken).ConfigureAwait(false)).BudgetExhausted;
                var rank = beams.Select(b => selector.Score(b.StepScores)).ToArray();
                if (!exhausted && LookaheadSteps > 0)
                    exhausted = await RankByLookaheadAsync(engine, beams, rank, round + 1_000 * phase, cancellationToken).ConfigureAwait(false);

                int at = 0;
                foreach (var tree in live)
                {
                    // Finished beams leave the search as candidates; their slots are not refilled.
                    var active = new List<Branch>();
                    var activeLineage = new List<int>();
                    var activeRank = new List<double>();
                    for (int i = 0; i < tree.Beams.Count; i++, at++)
                    {
                        if (tree.Beams[i].Finished)
                        {
                            tree.Finished.Add(selector.Candidate(tree.Beams[i], tree.Lineage[i], round));
                            tree.Beams[i].Dispose();
                        }
                        else
                        {
                            active.Add(tree.Beams[i]);
                            activeLineage.Add(tree.Lineage[i]);
                            activeRank.Add(rank[at]);
                        }
                    }
                    if (exhausted)
                    {
                        // Best first: the beams finished below on what is left of the budget go in this order.
                        var best = SearchBranches.RankDescending(activeRank);
                        (active, activeLineage) = ([.. best.Select(k => active[k])], [.. best.Select(k => activeLineage[k])]);
                    }
                    (tree.Beams, tree.Lineage) = (active, activeLineage);
                    int slots = Beams - tree.Finished.Count;
                    if (exhausted || tree.Beams.Count == 0 || slots <= 0 || round >= options.MaxRounds) tree.Done = true;
                    else (tree.Beams, tree.Lineage) = Expand(tree.Beams, tree.Lineage, activeRank, slots);
                }
                if (trees.All(t => t.Done)) break;
            }
            if (exhausted)
            {
                // The budget cannot pay for another full round: finish the best beams one by one on what is left,
                // rather than end with every beam cut short and no answer.
                var rest = trees.SelectMany(t => t.Beams).ToList();
                await SearchBranches.ExtendToEndAsync(engine, rest, options, phase: 3 * phase + 2, cancellationToken).ConfigureAwait(false);
                await SearchBranches.ScoreAsync(engine, rest, afterRefusal: true, cancellationToken).ConfigureAwait(false);
            }
            var candidates = trees.Select(t => t.Finished.Concat(t.Beams.Select((b, i) => selector.Candidate(b, t.Lineage[i], round))).ToList()).ToArray();
            return (candidates, round, exhausted);
        }
        finally
        {
            foreach (var t in trees) SearchBranches.DisposeAll(t.Beams);
        }
    }

    /// <summary>One root's beams, the first-round beam each descends from, and its finished candidates.</summary>
    sealed class Tree(List<Branch> beams)
    {
        public List<Branch> Beams = beams;
        public List<int> Lineage = [.. Enumerable.Range(0, beams.Count)];
        public readonly List<SearchCandidate> Finished = [];
        public bool Done;
    }

    /// <summary>Keeps the top ceil(slots/M) beams, disposes the rest, and forks each survivor up to M times.</summary>
    (List<Branch>, List<int>) Expand(List<Branch> beams, List<int> lineage, IReadOnlyList<double> rank, int slots)
    {
        var order = SearchBranches.RankDescending(rank);
        int keep = Math.Min(beams.Count, (slots + Width - 1) / Width);
        var children = new List<Branch>(slots);
        var childLineage = new List<int>(slots);
        for (int r = 0; r < order.Length; r++)
        {
            var beam = beams[order[r]];
            if (r >= keep)
            {
                beam.Dispose();
                continue;
            }
            int count = Math.Min(Width, slots - children.Count);
            int before = children.Count;
            SearchBranches.AddChildren(beam, count, children); // count >= 1: keep = ceil(slots/M)
            for (int c = before; c < children.Count; c++) childLineage.Add(lineage[order[r]]);
        }
        return (children, childLineage);
    }

    /// <summary>
    /// Replaces each unfinished beam's rank with its greedy rollout's score (k steps, temperature 0, scored at the end).
    /// Returns true when the budget ran out (ranks of beams whose rollout was not scored keep their own score).
    /// </summary>
    async ValueTask<bool> RankByLookaheadAsync(ISearchEngine engine, List<Branch> beams, double[] rank, int round, CancellationToken cancellationToken)
    {
        var owners = new List<int>();
        var rollouts = new List<Branch>();
        try
        {
            for (int i = 0; i < beams.Count; i++)
            {
                if (beams[i].Finished) continue;
                owners.Add(i);
                rollouts.Add(beams[i].Fork());
            }
            for (int step = 1; step <= LookaheadSteps; step++)
            {
                var active = SearchBranches.Unfinished(rollouts);
                if (active.Count == 0) break;
                var outcome = await engine.ExtendAsync(active, options.Greedy(SearchSeeds.Derive(options.Seed, 1, round * 1_000 + step)), cancellationToken)
                    .ConfigureAwait(false);
                if (outcome.BudgetExhausted) return true;
            }
            if ((await engine.ScoreAsync(rollouts, cancellationToken).ConfigureAwait(false)).BudgetExhausted) return true;
            for (int j = 0; j < rollouts.Count; j++) rank[owners[j]] = options.Selector.Score(rollouts[j].StepScores);
            return false;
        }
        finally
        {
            SearchBranches.DisposeAll(rollouts);
        }
    }
}

/// <summary>
/// Lookahead search: beam search whose beams are ranked by the verifier's score at the end of a k-step greedy rollout.
/// Costs N x (k+1) generations. A named front for <see cref="BeamSearch"/> with lookahead k.
/// </summary>
public sealed class Lookahead : ISearchStrategy
{
    readonly BeamSearch search;

    /// <summary>Creates a lookahead search (N beams, width M (0 = sqrt N), k rollout steps, k &gt;= 0).</summary>
    public Lookahead(int beams, int width, int lookahead, SearchOptions? options = null) =>
        search = new BeamSearch(beams, width, lookahead, options);

    /// <summary>The underlying beam search.</summary>
    public BeamSearch Search => search;

    /// <inheritdoc/>
    public string Name => search.Name;

    /// <inheritdoc/>
    public ValueTask<SearchResult> RunAsync(ISearchEngine engine, string question, CancellationToken cancellationToken = default) =>
        search.RunAsync(engine, question, cancellationToken);
}
