using System.Text.Json;

namespace Ponder.Search;

/// <summary>
/// Compute-optimal test-time scaling: per difficulty bin and budget, run the strategy a fitted table chose
/// (the evaluation harness fits it with 2-fold cross-validation within each bin). The question's bin comes from a
/// difficulty estimator (predicted difficulty: mean verifier score of a few samples; its cost is the caller's to report).
/// </summary>
public sealed class ComputeOptimal : ISearchStrategy
{
    readonly ComputeOptimalTable table;
    readonly Func<string, int> binOf;
    readonly SearchOptions? options;

    /// <summary>Creates the strategy for a budget in generations.</summary>
    /// <param name="table">The fitted table.</param>
    /// <param name="binOf">Difficulty bin (1 = easiest) of a question.</param>
    /// <param name="budget">Generations.</param>
    /// <param name="options">Options passed to the chosen strategy.</param>
    public ComputeOptimal(ComputeOptimalTable table, Func<string, int> binOf, int budget, SearchOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(binOf);
        SearchBranches.Require(budget >= 1, nameof(budget), $"compute-optimal needs a budget >= 1 generation, got {budget}");
        this.table = table;
        this.binOf = binOf;
        this.options = options;
        Budget = budget;
    }

    /// <summary>Generations.</summary>
    public int Budget { get; }

    /// <inheritdoc/>
    public string Name => $"compute-optimal(B={Budget})";

    /// <summary>The strategy chosen for a question (its bin looked up in the table).</summary>
    public StrategySpec Choose(string question) => table.Lookup(binOf(question), Budget);

    /// <inheritdoc/>
    public async ValueTask<SearchResult> RunAsync(ISearchEngine engine, string question, CancellationToken cancellationToken = default)
    {
        var spec = Choose(question);
        var result = await spec.Create(options).RunAsync(engine, question, cancellationToken).ConfigureAwait(false);
        return result with { Strategy = $"compute-optimal:{result.Strategy}" };
    }
}

/// <summary>One choice of a compute-optimal table.</summary>
/// <param name="Bin">Difficulty bin, 1 = easiest.</param>
/// <param name="Budget">Generations.</param>
/// <param name="Strategy">Chosen strategy family.</param>
/// <param name="Params">Its hyper-parameters (<see cref="StrategySpec.Params"/>).</param>
/// <param name="Accuracy">Accuracy that justified the choice (on the questions it was selected on).</param>
public sealed record ComputeOptimalEntry(int Bin, int Budget, string Strategy, string Params, double Accuracy)
{
    /// <summary>The entry as a runnable spec at its budget.</summary>
    public StrategySpec Spec => StrategySpec.Parse(Strategy, Params, Budget);
}

/// <summary>Strategy per (difficulty bin, budget); saved as JSON next to the sweep results.</summary>
public sealed class ComputeOptimalTable
{
    /// <summary>Creates a table; (bin, budget) pairs must be unique.</summary>
    public ComputeOptimalTable(IEnumerable<ComputeOptimalEntry> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        Entries = entries.OrderBy(e => e.Bin).ThenBy(e => e.Budget).ToList();
        for (int i = 1; i < Entries.Count; i++)
            if (Entries[i].Bin == Entries[i - 1].Bin && Entries[i].Budget == Entries[i - 1].Budget)
                throw new ArgumentException($"compute-optimal table has two entries for bin {Entries[i].Bin} budget {Entries[i].Budget}", nameof(entries));
        foreach (var e in Entries) _ = e.Spec; // fail early on a malformed strategy
    }

    /// <summary>Entries sorted by bin then budget.</summary>
    public IReadOnlyList<ComputeOptimalEntry> Entries { get; }

    /// <summary>
    /// The strategy for <paramref name="bin"/> at the largest fitted budget not above <paramref name="budget"/>, run at
    /// <paramref name="budget"/> (a fitted 16 is used for 20). Throws when the bin has no budget that small.
    /// </summary>
    public StrategySpec Lookup(int bin, int budget)
    {
        ComputeOptimalEntry? best = null;
        foreach (var e in Entries)
            if (e.Bin == bin && e.Budget <= budget) best = e;
        if (best is null)
            throw new ArgumentException($"compute-optimal table has no entry for bin {bin} at budget <= {budget} " +
                $"(bins: {string.Join(",", Entries.Select(e => e.Bin).Distinct())})", nameof(bin));
        return StrategySpec.Parse(best.Strategy, best.Params, budget);
    }

    /// <summary>Writes the table as JSON.</summary>
    public void Save(string path) => File.WriteAllText(path, JsonSerializer.Serialize(Entries, JsonOptions));

    /// <summary>Reads a table written by <see cref="Save"/>.</summary>
    public static ComputeOptimalTable Load(string path)
    {
        try
        {
            var entries = JsonSerializer.Deserialize<List<ComputeOptimalEntry>>(File.ReadAllText(path), JsonOptions)
                ?? throw new InvalidDataException($"{path}: compute-optimal table is null");
            return new ComputeOptimalTable(entries);
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            throw new InvalidDataException($"{path}: not a compute-optimal table: {e.Message}", e);
        }
    }

    static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };
}
