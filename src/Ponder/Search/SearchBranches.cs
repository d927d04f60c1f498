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
    /// Extends the unfinished branches step by step until each finishes or has the options' MaxRounds steps, or the
    /// budget can pay for no further step. When it pays for some branches' steps but not all, the refused ones wait
    /// and those furthest along go first (ties: list order), so a budget below the full cost ends with fewer finished
    /// branches rather than all of them cut short. Returns (extension calls made, budget refused any step).
    /// </summary>
    public static async ValueTask<(int Rounds, bool Exhausted)> ExtendToEndAsync(ISearchEngine engine, IReadOnlyList<Branch> branches,
        SearchOptions options, int phase, CancellationToken cancellationToken)
    {
        int rounds = 0;
        bool exhausted = false;
        while (true)
        {
            // Stable: with nothing refused, every active branch has the same number of steps and keeps its list order.
            var active = branches.Where(b => !b.Finished && b.Steps.Count < options.MaxRounds).OrderByDescending(b => b.Steps.Count).ToList();
            if (active.Count == 0) break;
            rounds++;
            var outcome = await engine.ExtendAsync(active, options.Sampling(SearchSeeds.Derive(options.Seed, phase, rounds)), cancellationToken)
                .ConfigureAwait(false);
            exhausted |= outcome.BudgetExhausted;
            if (outcome.BudgetExhausted && outcome.Completed == 0) break;
        }
        return (rounds, exhausted);
    }

    /// <summary>
    /// Scores the branches' steps. After the budget refused steps, only finished branches are scored (an unfinished
    /// one has no answer to weigh), so what is left of the budget goes where it counts. Returns whether scoring was refused.
    /// </summary>
    public static async ValueTask<bool> ScoreAsync(ISearchEngine engine, IReadOnlyList<Branch> branches, bool afterRefusal, CancellationToken cancellationToken)
    {
        var scored = afterRefusal ? branches.Where(b => b.Finished).ToList() : branches;
        if (scored.Count == 0) return false;
        return (await engine.ScoreAsync(scored, cancellationToken).ConfigureAwait(false)).BudgetExhausted;
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
