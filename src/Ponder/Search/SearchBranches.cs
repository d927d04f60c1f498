namespace Ponder.Search;

/// <summary>Branch bookkeeping shared by the strategies: forking from one prompt, extending to the end, disposal.</summary>
internal static class SearchBranches
{
    /// <summary>
    /// <paramref name="count"/> empty branches sharing one prompt: the prompt is started once and forked, so its KV
    /// blocks are computed once and shared.
    /// </summary>
    public static List<Branch> ForkFromPrompt(ISearchEngine engine, string prompt, int count) => ForkFromPrompt(engine, prompt, null, count);

    /// <summary>The same, with the verifier reading <paramref name="verifierPrompt"/> (null = the prompt) before the steps.</summary>
    public static List<Branch> ForkFromPrompt(ISearchEngine engine, string prompt, string? verifierPrompt, int count)
    {
        var branches = new List<Branch>(count);
        using var root = engine.Start(prompt, verifierPrompt);
        try
        {
            for (int i = 0; i < count; i++) branches.Add(root.Fork());
        }
        catch
        {
            DisposeAll(branches);
            throw;
        }
        return branches;
    }

    /// <summary>
    /// Extends the unfinished branches step by step until all finish, the options' MaxRounds rounds ran, or the
    /// budget is exhausted. Returns (rounds run, budget exhausted).
    /// </summary>
    public static async ValueTask<(int Rounds, bool Exhausted)> ExtendToEndAsync(ISearchEngine engine, IReadOnlyList<Branch> branches,
        SearchOptions options, int phase, CancellationToken cancellationToken)
    {
        int rounds = 0;
        while (rounds < options.MaxRounds)
        {
            var active = Unfinished(branches);
            if (active.Count == 0) break;
            rounds++;
            var outcome = await engine.ExtendAsync(active, options.Sampling(SearchSeeds.Derive(options.Seed, phase, rounds)), cancellationToken)
                .ConfigureAwait(false);
            if (outcome.BudgetExhausted) return (rounds, true);
        }
        return (rounds, false);
    }

    public static List<Branch> Unfinished(IReadOnlyList<Branch> branches)
    {
        var active = new List<Branch>(branches.Count);
        foreach (var b in branches) if (!b.Finished) active.Add(b);
        return active;
    }

    /// <summary>Forks <paramref name="branch"/> so it has <paramref name="count"/> children, the branch itself being the first.</summary>
    public static void AddChildren(Branch branch, int count, List<Branch> children)
    {
        children.Add(branch);
        for (int i = 1; i < count; i++) children.Add(branch.Fork());
    }

    /// <summary>Indices of <paramref name="scores"/> from best to worst; equal scores keep index order (deterministic).</summary>
    public static int[] RankDescending(IReadOnlyList<double> scores)
    {
        var order = Enumerable.Range(0, scores.Count).ToArray();
        // LINQ's OrderBy is stable, which is the tie rule.
        return order.OrderByDescending(i => scores[i]).ToArray();
    }

    public static void DisposeAll(IEnumerable<Branch> branches)
    {
        foreach (var b in branches) b.Dispose();
    }

    public static SearchResult Result(string strategy, AnswerSelector selector, IReadOnlyList<SearchCandidate> candidates,
        ISearchEngine engine, int rounds, bool exhausted) =>
        new(strategy, selector.Select(candidates), candidates, engine.Budget, rounds, exhausted);

    public static void Require(bool condition, string argument, string message)
    {
        if (!condition) throw new ArgumentException(message, argument);
    }
}
