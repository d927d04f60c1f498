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
/// A strategy with its hyper-parameters at a budget in generations (the paper's unit), as a sweep row or a
/// compute-optimal table entry names it. The budget fixes the strategy's size: best-of-N and DVTS use N = budget,
/// beam search N = budget, lookahead N = budget/(k+1) beams, revisions P chains of budget/P attempts.
/// </summary>
/// <param name="Kind">Strategy family.</param>
/// <param name="Budget">Generations.</param>
/// <param name="Width">Beam / DVTS width M; 0 = sqrt(N).</param>
/// <param name="LookaheadSteps">Lookahead k (lookahead only).</param>
/// <param name="Parallel">Revision chains P (revisions only); budget/(P·B) is the sequential length.</param>
/// <param name="AttemptBeams">Revisions only: B, beams of the PRM beam search that writes each attempt (1 = a single sample).</param>
public sealed record StrategySpec(StrategyKind Kind, int Budget, int Width = 0, int LookaheadSteps = 0, int Parallel = 1, int AttemptBeams = 1)
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

    /// <summary>Parses a sweep row's (name, params, budget); the inverse of <see cref="Name"/> and <see cref="Params"/>.</summary>
    public static StrategySpec Parse(string name, string parameters, int budget)
    {
        ArgumentNullException.ThrowIfNull(name);
        parameters ??= "";
        var kind = name.Trim().ToLowerInvariant() switch
        {
            "best-of-n" => StrategyKind.BestOfN,
            "beam" => StrategyKind.BeamSearch,
            "lookahead" => StrategyKind.Lookahead,
            "dvts" => StrategyKind.Dvts,
            "revisions" => StrategyKind.Revisions,
            _ => throw new ArgumentException($"strategy name '{name}' is not one of best-of-n, beam, lookahead, dvts, revisions", nameof(name)),
        };
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
        return new StrategySpec(kind, budget, width, k, p, beams);
    }

    static int ParseInt(string name, string[] kv) =>
        int.TryParse(kv[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= 0
            ? v
            : throw new ArgumentException($"strategy '{name}' parameter {kv[0]}='{kv[1]}' is not a non-negative integer");
}
