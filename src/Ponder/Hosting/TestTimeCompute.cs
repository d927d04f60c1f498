using System.Globalization;
using System.Text.Json;
using Ponder.Backends;
using Ponder.Scheduling;

namespace Ponder.Hosting;

/// <summary>How a request spends test-time compute.</summary>
public enum TestTimeStrategy
{
    /// <summary>One sampled completion (plain generation).</summary>
    None,
    /// <summary>N samples; the PRM-weighted answer wins (majority vote when there is no PRM).</summary>
    BestOfN,
    /// <summary>N samples; the most frequent answer wins (no PRM needed).</summary>
    Majority,
    /// <summary>PRM beam search: N beams, width M (needs a PRM).</summary>
    Beam,
    /// <summary>Beam search with k-step lookahead rollouts (needs a PRM).</summary>
    Lookahead,
    /// <summary>Diverse verifier tree search: N/M independent subtrees (needs a PRM).</summary>
    Dvts,
}

/// <summary>
/// Test-time compute options of one request. Read from <c>ChatOptions.AdditionalProperties</c> or the server's
/// <c>ponder</c> object with the keys <c>strategy</c> (none | best_of_n | majority | beam | lookahead | dvts),
/// <c>n</c>, <c>beam_width</c>, <c>lookahead</c>, <c>budget_flops</c>, <c>budget_generations</c>, <c>max_step_tokens</c>,
/// <c>max_rounds</c> and <c>prm</c> (the name of a PRM the host registered with the engine).
/// </summary>
public sealed record TestTimeComputeOptions
{
    /// <summary>The strategy.</summary>
    public TestTimeStrategy Strategy { get; init; }
    /// <summary>Samples (best-of-N, majority) or beams (beam, lookahead, DVTS).</summary>
    public int N { get; init; } = 4;
    /// <summary>Beam / DVTS width M; 0 = sqrt(N).</summary>
    public int BeamWidth { get; init; }
    /// <summary>Lookahead rollout steps k.</summary>
    public int LookaheadSteps { get; init; } = 1;
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

    /// <summary>The strategy's wire name (best_of_n, beam, ...).</summary>
    public string StrategyName => Strategy switch
    {
        TestTimeStrategy.None => "none",
        TestTimeStrategy.BestOfN => "best_of_n",
        TestTimeStrategy.Majority => "majority",
        TestTimeStrategy.Beam => "beam",
        TestTimeStrategy.Lookahead => "lookahead",
        _ => "dvts",
    };

    /// <summary>The request's budget (null when it has no cap).</summary>
    public Budget? CreateBudget() =>
        BudgetFlops is null && BudgetGenerations is null ? null : new Budget(new BudgetLimits(Flops: BudgetFlops, Generations: BudgetGenerations));

    /// <summary>
    /// Reads the options from a property bag (values may be strings, numbers or <see cref="JsonElement"/>s). Unknown keys
    /// are ignored; a bad value throws <see cref="ArgumentException"/> whose <c>ParamName</c> is <paramref name="prefix"/>
    /// + the key. Null or no "strategy" with no budget: null (plain generation).
    /// </summary>
    public static TestTimeComputeOptions? FromProperties(IEnumerable<KeyValuePair<string, object?>>? properties, string prefix = "")
    {
        if (properties is null) return null;
        var options = new TestTimeComputeOptions();
        bool any = false;
        foreach (var (key, raw) in properties)
        {
            object? value = raw is JsonElement { ValueKind: JsonValueKind.Null } ? null : raw;
            if (value is null) continue;
            string param = prefix + key;
            switch (key)
            {
                case "strategy": options = options with { Strategy = ParseStrategy(Text(value, param), param) }; any = true; break;
                case "n": options = options with { N = (int)Integer(value, param, 1, 4096) }; break;
                case "beam_width": options = options with { BeamWidth = (int)Integer(value, param, 0, 4096) }; break;
                case "lookahead": options = options with { LookaheadSteps = (int)Integer(value, param, 0, 64) }; break;
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
        if (options.BeamWidth > options.N)
            throw new ArgumentException($"{prefix}beam_width {options.BeamWidth} exceeds {prefix}n {options.N}", prefix + "beam_width");
        return any || options.PrmName is not null ? options : null;
    }

    /// <summary>Parses a strategy's wire name (case-insensitive; '-' and '_' alike).</summary>
    public static TestTimeStrategy ParseStrategy(string name, string param = "strategy") =>
        name.Trim().ToLowerInvariant().Replace('-', '_') switch
        {
            "none" or "" => TestTimeStrategy.None,
            "best_of_n" or "bon" => TestTimeStrategy.BestOfN,
            "majority" => TestTimeStrategy.Majority,
            "beam" or "beam_search" => TestTimeStrategy.Beam,
            "lookahead" => TestTimeStrategy.Lookahead,
            "dvts" => TestTimeStrategy.Dvts,
            _ => throw new ArgumentException($"{param} '{name}' is not one of none, best_of_n, majority, beam, lookahead, dvts", param),
        };

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
