using System.Globalization;
using System.Text.Json;
using Ponder.Backends;
using Ponder.Scheduling;
using Ponder.Search;

namespace Ponder.Hosting;

/// <summary>
/// Test-time compute options of one request: a <see cref="StrategySpec"/> (null = plain generation) and the request's
/// caps. Read from <c>ChatOptions.AdditionalProperties</c> or the server's <c>ponder</c> object with the keys
/// <c>strategy</c> (none | best_of_n | majority | beam | lookahead | dvts, read by <see cref="StrategySpec.ParseName"/>),
/// <c>n</c>, <c>beam_width</c>, <c>lookahead</c>, <c>budget_flops</c>, <c>budget_generations</c>, <c>max_step_tokens</c>,
/// <c>max_rounds</c> and <c>prm</c> (the name of a PRM the host registered with the engine).
/// </summary>
public sealed record TestTimeComputeOptions
{
    /// <summary>The strategy at its size (null = one sampled completion). Its budget is in generations: N samples or
    /// beams, N x (k+1) for lookahead.</summary>
    public StrategySpec? Strategy { get; init; }
    /// <summary>Cap on exact FLOPs over all models (null = none).</summary>
    public long? BudgetFlops { get; init; }
    /// <summary>Cap on generations, the paper's unit (null = none).</summary>
    public double? BudgetGenerations { get; init; }
    /// <summary>Longest step of a search, in tokens.</summary>
    public int MaxStepTokens { get; init; } = 64;
    /// <summary>Most step rounds of a search.</summary>
    public int MaxRounds { get; init; } = 40;
    /// <summary>The name of a PRM registered with the engine; null = the engine's default PRM, if any. Never a path: requests cannot make the engine read files.</summary>
    public string? PrmName { get; init; }

    /// <summary>The keys <see cref="FromProperties"/> reads.</summary>
    public static IReadOnlyList<string> Keys { get; } = ["strategy", "n", "beam_width", "lookahead", "budget_flops", "budget_generations", "max_step_tokens", "max_rounds", "prm"];

    /// <summary>The request's budget (null when it has no cap).</summary>
    public Budget? CreateBudget() =>
        BudgetFlops is null && BudgetGenerations is null ? null : new Budget(new BudgetLimits(Flops: BudgetFlops, Generations: BudgetGenerations));

    /// <summary>
    /// Reads the options from a property bag (values may be strings, numbers or <see cref="JsonElement"/>s). A bad value
    /// throws <see cref="ArgumentException"/> whose <c>ParamName</c> is <paramref name="prefix"/> + the key. Keys that
    /// are not in <see cref="Keys"/> are ignored. Null or no
    /// "strategy" with no budget: null (plain generation). "n" is the samples or beams (lookahead: beams, each costing
    /// k+1 generations).
    /// </summary>
    public static TestTimeComputeOptions? FromProperties(IEnumerable<KeyValuePair<string, object?>>? properties, string prefix = "")
    {
        if (properties is null) return null;
        var options = new TestTimeComputeOptions();
        bool any = false;
        (StrategyKind Kind, AnswerSelection Selection)? family = null;
        int n = 4, width = 0, k = 1;
        foreach (var (key, raw) in properties)
        {
            object? value = raw is JsonElement { ValueKind: JsonValueKind.Null } ? null : raw;
            if (value is null) continue;
            string param = prefix + key;
            switch (key)
            {
                case "strategy":
                {
                    string name = Text(value, param);
                    family = name.Trim() is "" || name.Trim().Equals("none", StringComparison.OrdinalIgnoreCase) ? null : StrategySpec.ParseName(name, param);
                    if (family?.Kind == StrategyKind.Revisions)
                        throw new ArgumentException($"{param} 'revisions' needs a revision model, which a request cannot name; use none, best_of_n, majority, beam, lookahead or dvts", param);
                    any = true;
                    break;
                }
                case "n": n = (int)Integer(value, param, 1, 4096); break;
                case "beam_width": width = (int)Integer(value, param, 0, 4096); break;
                case "lookahead": k = (int)Integer(value, param, 0, 64); break;
                case "max_step_tokens": options = options with { MaxStepTokens = (int)Integer(value, param, 1, 1 << 20) }; break;
                case "max_rounds": options = options with { MaxRounds = (int)Integer(value, param, 1, 10_000) }; break;
                case "budget_flops": options = options with { BudgetFlops = Integer(value, param, 1, long.MaxValue) }; any = true; break;
                case "budget_generations":
                {
                    double g = Number(value, param);
                    if (!(g > 0)) throw new ArgumentException($"{param} must be > 0, got {g.ToString(CultureInfo.InvariantCulture)}", param);
                    options = options with { BudgetGenerations = g };
                    any = true;
                    break;
                }
                case "prm": options = options with { PrmName = Text(value, param) }; break;
            }
        }
        if (width > n)
            throw new ArgumentException($"{prefix}beam_width {width} exceeds {prefix}n {n}", prefix + "beam_width");
        if (family is var (kind, selection))
            options = options with
            {
                Strategy = kind == StrategyKind.Lookahead
                    ? new StrategySpec(kind, n * (k + 1), width, k, Selection: selection)
                    : new StrategySpec(kind, n, kind == StrategyKind.BestOfN ? 0 : width, Selection: selection),
            };
        return any || options.PrmName is not null ? options : null;
    }

    static string Text(object value, string param) => value switch
    {
        string s => s,
        JsonElement { ValueKind: JsonValueKind.String } e => e.GetString()!,
        _ => throw new ArgumentException($"{param} must be a string", param),
    };

    static double Number(object value, string param) => value switch
    {
        int i => i,
        long l => l,
        double d => d,
        float f => f,
        decimal m => (double)m,
        string s when double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => d,
        JsonElement { ValueKind: JsonValueKind.Number } e => e.GetDouble(),
        _ => throw new ArgumentException($"{param} must be a number", param),
    };

    static long Integer(object value, string param, long min, long max)
    {
        double d = Number(value, param);
        if (d != Math.Floor(d) || d < min || d > max)
            throw new ArgumentException($"{param} must be an integer in [{min}, {max}], got {d.ToString(CultureInfo.InvariantCulture)}", param);
        return value is long l ? l : value is JsonElement e && e.TryGetInt64(out long x) ? x : (long)d;
    }
}

/// <summary>What a completion cost and how it ended.</summary>
/// <param name="InputTokens">Prompt tokens.</param>
/// <param name="OutputTokens">Tokens sampled for the answer (plain generation) or over all branches (search).</param>
/// <param name="FinishReason">"stop" (EOS, a stop string, or a finished search) or "length" (max tokens, or the budget ran out).</param>
/// <param name="Strategy">The strategy's wire name and parameters, e.g. "beam(N=4,M=2)", or "none".</param>
/// <param name="Answer">The selected final answer of a search (null for plain generation).</param>
/// <param name="BudgetExhausted">Whether the budget refused work.</param>
/// <param name="Flops">The scheduler's report: exact FLOPs per model and category, tokens computed and reused, wall time.</param>
public sealed record CompletionReport(int InputTokens, int OutputTokens, string FinishReason, string Strategy, string? Answer, bool BudgetExhausted, RequestReport Flops)
{
    /// <summary>Generations charged (the paper's unit).</summary>
    public double Generations => Flops.Generations;

    /// <summary>The report as plain values (what the server writes as "ponder"): flops by category and model, generations, budget state.</summary>
    public Dictionary<string, object?> ToProperties()
    {
        var flops = new Dictionary<string, object?> { ["total"] = Flops.Flops.Total };
        foreach (var c in Enum.GetValues<FlopCategory>()) flops[CategoryName(c)] = Flops.Flops[c];
        return new Dictionary<string, object?>
        {
            ["strategy"] = Strategy,
            ["flops"] = flops,
            ["flops_by_model"] = Flops.Models.ToDictionary(m => m.Model, m => (object?)m.Flops.Total),
            ["saved_flops"] = Flops.Models.Sum(m => m.SavedFlops.Total),
            ["generations"] = Flops.Generations,
            ["tokens_computed"] = Flops.TokensComputed,
            ["tokens_reused"] = Flops.TokensReused,
            ["budget_exhausted"] = BudgetExhausted,
            ["budget_exhausted_reason"] = Flops.BudgetExhaustedReason,
            ["answer"] = Answer,
        };
    }

    /// <summary>A FLOP category's wire name: projection, attention, lm_head, prm_head, elementwise.</summary>
    public static string CategoryName(FlopCategory c) => c switch
    {
        FlopCategory.Projection => "projection",
        FlopCategory.Attention => "attention",
        FlopCategory.LmHead => "lm_head",
        FlopCategory.PrmHead => "prm_head",
        _ => "elementwise",
    };
}

/// <summary>One piece of a streamed completion: text, and on the last piece the report.</summary>
public sealed record CompletionChunk(string Text, CompletionReport? Report = null);
