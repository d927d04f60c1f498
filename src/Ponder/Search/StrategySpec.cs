using System.Globalization;

namespace Ponder.Search;

/// <summary>The paper's strategy families.</summary>
public enum StrategyKind
{
    /// <summary><see cref="Search.BestOfN"/>.</summary>
    BestOfN,
    /// <summary><see cref="Search.BeamSearch"/> without lookahead.</summary>
    BeamSearch,
    /// <summary><see cref="Search.Lookahead"/>.</summary>
    Lookahead,
    /// <summary><see cref="Search.Dvts"/>.</summary>
    Dvts,
    /// <summary><see cref="Search.Revisions"/>.</summary>
    Revisions,
}

/// <summary>
/// A strategy with its hyper-parameters at a budget in generations (the paper's unit): the one descriptor a sweep row,
/// a compute-optimal table entry, a study config's strategy entry and a host request's test-time compute all use.
/// The budget fixes the strategy's size: best-of-N and DVTS use N = budget, beam search N = budget, lookahead
/// N = budget/(k+1) beams, revisions P chains of budget/P attempts. A budget of 0 is a template (a study config's
/// entry): the budget is set per run with <c>spec with { Budget = b }</c>.
/// </summary>
/// <param name="Kind">Strategy family.</param>
/// <param name="Budget">Generations.</param>
/// <param name="Width">Beam / DVTS width M; 0 = sqrt(N).</param>
/// <param name="LookaheadSteps">Lookahead k (lookahead only).</param>
/// <param name="Parallel">Revision chains P (revisions only); budget/(P·B) is the sequential length.</param>
/// <param name="AttemptBeams">Revisions only: B, beams of the PRM beam search that writes each attempt (1 = a single sample).</param>
/// <param name="Selection">How the final answer is chosen (weighted needs a verifier; majority does not).</param>
public sealed record StrategySpec(StrategyKind Kind, int Budget, int Width = 0, int LookaheadSteps = 0, int Parallel = 1, int AttemptBeams = 1,
    AnswerSelection Selection = AnswerSelection.Weighted)
{
    /// <summary>Short family name used in sweep files: best-of-n, beam, lookahead, dvts, revisions.</summary>
    public string Name => Kind switch
    {
        StrategyKind.BestOfN => "best-of-n",
        StrategyKind.BeamSearch => "beam",
        StrategyKind.Lookahead => "lookahead",
        StrategyKind.Dvts => "dvts",
        StrategyKind.Revisions => "revisions",
        _ => throw new ArgumentException($"unknown strategy kind {Kind}"),
    };

    /// <summary>The hyper-parameters without the budget, e.g. "M=sqrt", "M=4;k=1", "P=4": what compute-optimal picks among.</summary>
    public string Params => Kind switch
    {
        StrategyKind.BestOfN => "",
        StrategyKind.BeamSearch or StrategyKind.Dvts => $"M={WidthText}",
        StrategyKind.Lookahead => $"M={WidthText};k={LookaheadSteps}",
        StrategyKind.Revisions => AttemptBeams > 1 ? $"P={Parallel};B={AttemptBeams}" : $"P={Parallel}",
        _ => throw new ArgumentException($"unknown strategy kind {Kind}"),
    };

    /// <summary>
    /// The record's strategy name: the family for weighted selection, else "family-selection" (e.g. "best-of-n-majority"),
    /// so sweep rows keep both apart; <see cref="Parse"/> reads it back.
    /// </summary>
    public string RecordName => Selection == AnswerSelection.Weighted ? Name : $"{Name}-{SelectionName(Selection)}";

    /// <summary>True when the family or the selection reads verifier scores (everything but best-of-N by majority).</summary>
    public bool NeedsVerifier => Selection != AnswerSelection.Majority || Kind != StrategyKind.BestOfN;

    /// <summary>Branches alive at once at the budget: N samples or beams (lookahead: budget/(k+1)), P x B revision chains.</summary>
    public int Branches => Kind switch
    {
        StrategyKind.Lookahead => Budget / (LookaheadSteps + 1),
        StrategyKind.Revisions => Parallel * AttemptBeams,
        _ => Budget,
    };

    string WidthText => Width == 0 ? "sqrt" : Width.ToString(CultureInfo.InvariantCulture);

    /// <summary>"name(params)" without the budget, e.g. "beam(M=4)": one configuration across budgets.</summary>
    public string Configuration => Params.Length == 0 ? Name : $"{Name}({Params})";

    /// <inheritdoc/>
    public override string ToString() => $"{Configuration}@{Budget}";

    /// <summary>Builds the strategy. Throws <see cref="ArgumentException"/> when the budget cannot pay for it.</summary>
    public ISearchStrategy Create(SearchOptions? options = null)
    {
        if (Budget < 1) throw new ArgumentException($"strategy {Configuration}: budget must be >= 1 generation, got {Budget}");
        switch (Kind)
        {
            case StrategyKind.BestOfN: return new BestOfN(Budget, options);
            case StrategyKind.BeamSearch: return new BeamSearch(Budget, Math.Min(Width, Budget), 0, options);
            case StrategyKind.Lookahead:
            {
                int beams = Budget / (LookaheadSteps + 1);
                if (beams < 1)
                    throw new ArgumentException($"strategy {Configuration}: budget {Budget} buys no beam (lookahead costs k+1 = {LookaheadSteps + 1} per beam)");
                return new Lookahead(beams, Math.Min(Width, beams), LookaheadSteps, options);
            }
            case StrategyKind.Dvts: return new Dvts(Budget, Math.Min(Width, Budget), options);
            case StrategyKind.Revisions:
                if (Parallel < 1 || AttemptBeams < 1 || Budget % (Parallel * AttemptBeams) != 0)
                    throw new ArgumentException(AttemptBeams == 1
                        ? $"strategy {Configuration}: budget {Budget} is not a multiple of P = {Parallel} chains"
                        : $"strategy {Configuration}: budget {Budget} is not a multiple of P x B = {Parallel} x {AttemptBeams} (chains x beams per attempt)");
                return new Revisions(Parallel, Budget / (Parallel * AttemptBeams), options, AttemptBeams);
            default:
                throw new ArgumentException($"unknown strategy kind {Kind}");
        }
    }

    /// <summary>
    /// Parses a sweep row's (name, params, budget); the inverse of <see cref="RecordName"/> and <see cref="Params"/>.
    /// The name is read by <see cref="ParseName"/> (so "best-of-n-majority" and "best_of_n" both parse).
    /// </summary>
    public static StrategySpec Parse(string name, string parameters, int budget)
    {
        var (kind, selection) = ParseName(name, nameof(name));
        parameters ??= "";
        int width = 0, k = 0, p = 1, beams = 1;
        foreach (var part in parameters.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var kv = part.Split('=', 2, StringSplitOptions.TrimEntries);
            if (kv.Length != 2) throw new ArgumentException($"strategy '{name}' parameter '{part}' is not key=value", nameof(parameters));
            switch (kv[0])
            {
                case "M": width = kv[1] == "sqrt" ? 0 : ParseInt(name, kv); break;
                case "k": k = ParseInt(name, kv); break;
                case "P": p = ParseInt(name, kv); break;
                case "B": beams = ParseInt(name, kv); break;
                default: throw new ArgumentException($"strategy '{name}' has unknown parameter '{kv[0]}' (expected M, k, P or B)", nameof(parameters));
            }
        }
        return new StrategySpec(kind, budget, width, k, p, beams, selection);
    }

    /// <summary>The names <see cref="ParseName"/> accepts, for error messages.</summary>
    public const string KnownNames = "best-of-n, majority, beam, lookahead, dvts, revisions (a family may end in -weighted, -majority or -naive)";

    /// <summary>
    /// Parses a strategy name, case-insensitive with '-' and '_' alike: a family (best-of-n or bon, beam or beam-search,
    /// lookahead, dvts, revisions), "majority" (best-of-N by majority vote), or a family followed by "-weighted",
    /// "-majority" or "-naive" (<see cref="RecordName"/>). A bad name throws <see cref="ArgumentException"/> naming
    /// <paramref name="param"/>.
    /// </summary>
    public static (StrategyKind Kind, AnswerSelection Selection) ParseName(string name, string param = "strategy")
    {
        ArgumentNullException.ThrowIfNull(name, param);
        string n = name.Trim().ToLowerInvariant().Replace('_', '-');
        if (n == "majority") return (StrategyKind.BestOfN, AnswerSelection.Majority);
        var selection = AnswerSelection.Weighted;
        foreach (var s in (ReadOnlySpan<AnswerSelection>)[AnswerSelection.Weighted, AnswerSelection.Majority, AnswerSelection.Naive])
            if (n.EndsWith("-" + SelectionName(s), StringComparison.Ordinal))
            {
                selection = s;
                n = n[..^(SelectionName(s).Length + 1)];
                break;
            }
        StrategyKind? kind = n switch
        {
            "best-of-n" or "bon" => StrategyKind.BestOfN,
            "beam" or "beam-search" => StrategyKind.BeamSearch,
            "lookahead" => StrategyKind.Lookahead,
            "dvts" => StrategyKind.Dvts,
            "revisions" => StrategyKind.Revisions,
            _ => null,
        };
        return kind is { } k ? (k, selection) : throw new ArgumentException($"{param} '{name}' is not one of {KnownNames}", param);
    }

    /// <summary>Parses an answer selection's name: weighted, majority or naive (case-insensitive).</summary>
    public static AnswerSelection ParseSelection(string name, string param = "selection") =>
        name.Trim().ToLowerInvariant() switch
        {
            "weighted" => AnswerSelection.Weighted,
            "majority" => AnswerSelection.Majority,
            "naive" => AnswerSelection.Naive,
            _ => throw new ArgumentException($"{param} '{name}' is not weighted, majority or naive", param),
        };

    /// <summary>An answer selection's name: weighted, majority, naive.</summary>
    public static string SelectionName(AnswerSelection selection) => selection switch
    {
        AnswerSelection.Majority => "majority",
        AnswerSelection.Naive => "naive",
        _ => "weighted",
    };

    static int ParseInt(string name, string[] kv) =>
        int.TryParse(kv[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= 0
            ? v
            : throw new ArgumentException($"strategy '{name}' parameter {kv[0]}='{kv[1]}' is not a non-negative integer");
}
