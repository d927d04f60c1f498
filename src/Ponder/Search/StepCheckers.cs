namespace Ponder.Search;

/// <summary>
/// A verifier that reads the text of a step prefix instead of running a model: a task's own checker (which knows the
/// truth of every step) and degraded copies of it. Used as a control: with an exact verifier a search's failures are
/// the search's or the policy's, never the verifier's. Runs no forward, so it costs no FLOPs; reports label its FLOP
/// column as such and never add an oracle's cost to a learned PRM's.
/// </summary>
public interface IStepChecker
{
    /// <summary>Names the checker in reports and cache keys, e.g. "exact" or "noisy(auc=0.8)".</summary>
    string Name { get; }

    /// <summary>
    /// The score in [0, 1] of the prefix <paramref name="steps"/> (delimiters stripped) written after
    /// <paramref name="prompt"/> (the verifier prompt: the question as the policy saw it, or the question alone for a
    /// revision). Must be a pure function of its arguments, so a prefix scores the same in every branch that holds it.
    /// </summary>
    double Score(string prompt, IReadOnlyList<string> steps);
}

/// <summary>
/// An exact checker degraded to a chosen ranking quality: the score of a prefix is Φ(d·e + z), where e is the exact
/// checker's 0/1 verdict, z a standard normal drawn from a hash of (seed, prompt, steps) and d = √2·Φ⁻¹(auc). A correct
/// and an incorrect prefix then compare correctly with probability P(d + z₁ &gt; z₂) = Φ(d/√2) = <see cref="TargetAuc"/>,
/// so the mean AUC within a question is that target (measured AUCs differ where the exact verdict of a final step
/// differs from the answer's grade, e.g. a right answer reached through a wrong step). auc = 0.5 is a random verifier
/// (scores ignore the truth); auc = 1 is the exact checker itself.
/// </summary>
public sealed class NoisyStepChecker : IStepChecker
{
    readonly IStepChecker _exact;
    readonly double _separation;
    readonly ulong _seed;

    /// <summary>Degrades <paramref name="exact"/> (whose scores must be 0 or 1) to within-question AUC <paramref name="targetAuc"/> in [0.5, 1].</summary>
    public NoisyStepChecker(IStepChecker exact, double targetAuc, ulong seed = 0x5EED)
    {
        ArgumentNullException.ThrowIfNull(exact);
        if (!(targetAuc >= 0.5 && targetAuc <= 1)) throw new ArgumentOutOfRangeException(nameof(targetAuc), $"target AUC {targetAuc} is outside [0.5, 1]");
        _exact = exact;
        TargetAuc = targetAuc;
        _seed = seed;
        _separation = targetAuc >= 1 ? double.PositiveInfinity : Math.Sqrt(2) * Normal.InverseCdf(targetAuc);
    }

    /// <summary>The within-question AUC this checker is built to have.</summary>
    public double TargetAuc { get; }

    /// <inheritdoc/>
    public string Name => TargetAuc >= 1 ? _exact.Name : TargetAuc == 0.5 ? "random" : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"noisy(auc={TargetAuc:0.###})");

    /// <inheritdoc/>
    public double Score(string prompt, IReadOnlyList<string> steps)
    {
        double exact = _exact.Score(prompt, steps);
        if (exact is not (0 or 1)) throw new InvalidOperationException($"checker '{_exact.Name}' scored {exact}; a noisy checker degrades 0/1 verdicts");
        if (double.IsPositiveInfinity(_separation)) return exact;
        return Normal.Cdf(_separation * exact + GaussianOf(prompt, steps));
    }

    /// <summary>A standard normal that depends only on the seed and the text (FNV-1a, then SplitMix64 and Box-Muller).</summary>
    double GaussianOf(string prompt, IReadOnlyList<string> steps)
    {
        ulong h = 14695981039346656037UL ^ _seed;
        void Add(string s) { foreach (char c in s) h = (h ^ c) * 1099511628211UL; h = (h ^ 0xFFFF) * 1099511628211UL; }
        Add(prompt);
        foreach (var s in steps) Add(s);
        double u1 = (SplitMix(ref h) >> 11) * (1.0 / (1UL << 53)), u2 = (SplitMix(ref h) >> 11) * (1.0 / (1UL << 53));
        return Math.Sqrt(-2 * Math.Log(1 - u1)) * Math.Cos(2 * Math.PI * u2);
    }

    static ulong SplitMix(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

/// <summary>The standard normal distribution's CDF and its inverse (double precision to ~1e-7, enough for scores and targets).</summary>
internal static class Normal
{
    /// <summary>Φ(x), from erfc by the Numerical Recipes Chebyshev fit (relative error below 1.2e-7).</summary>
    public static double Cdf(double x) => 0.5 * Erfc(-x / Math.Sqrt(2));

    /// <summary>Φ⁻¹(p) for p in (0, 1), by bisection on <see cref="Cdf"/> (called once per checker, not per score).</summary>
    public static double InverseCdf(double p)
    {
        if (!(p > 0 && p < 1)) throw new ArgumentOutOfRangeException(nameof(p), $"{p} is outside (0, 1)");
        double lo = -40, hi = 40;
        for (int i = 0; i < 200 && hi - lo > 1e-12; i++)
        {
            double mid = 0.5 * (lo + hi);
            if (Cdf(mid) < p) lo = mid; else hi = mid;
        }
        return 0.5 * (lo + hi);
    }

    static double Erfc(double x)
    {
        double z = Math.Abs(x), t = 1 / (1 + 0.5 * z);
        double r = t * Math.Exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
                   t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
        return x >= 0 ? r : 2 - r;
    }
}

/// <summary>
/// An <see cref="ISearchEngine"/> whose steps are scored by an <see cref="IStepChecker"/> instead of a model: sampling,
/// budgets and KV sharing are the inner engine's (built without a verifier), scores are the checker's. Works over any
/// engine, scripted ones included, so a strategy runs unchanged against an exact or noisy control verifier.
/// </summary>
public sealed class CheckerSearchEngine : ISearchEngine
{
    readonly ISearchEngine _inner;

    /// <summary>Scores <paramref name="inner"/>'s branches with <paramref name="checker"/>.</summary>
    public CheckerSearchEngine(ISearchEngine inner, IStepChecker checker)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(checker);
        _inner = inner;
        Checker = checker;
    }

    /// <summary>The checker that scores steps.</summary>
    public IStepChecker Checker { get; }

    /// <inheritdoc/>
    public Branch Start(string prompt) => Start(prompt, null);

    /// <inheritdoc/>
    public Branch Start(string prompt, string? verifierPrompt) => new CheckedBranch(this, _inner.Start(prompt), verifierPrompt ?? prompt, []);

    /// <inheritdoc/>
    public ValueTask<StepOutcome> ExtendAsync(IReadOnlyList<Branch> branches, StepSampling sampling, CancellationToken cancellationToken = default) =>
        _inner.ExtendAsync(Unwrap(branches), sampling, cancellationToken);

    /// <inheritdoc/>
    public ValueTask<StepOutcome> ScoreAsync(IReadOnlyList<Branch> branches, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        int scored = 0;
        foreach (var b in Checked(branches))
        {
            if (b.Scores.Count == b.Steps.Count) continue;
            var steps = b.Steps;
            while (b.Scores.Count < steps.Count) b.Scores.Add(Checker.Score(b.VerifierPrompt, [.. steps.Take(b.Scores.Count + 1)]));
            scored++;
        }
        return ValueTask.FromResult(new StepOutcome(scored, 0, false));
    }

    /// <inheritdoc/>
    public BudgetReport Budget => _inner.Budget;

    /// <inheritdoc/>
    public int PromptTokens(string prompt) => _inner.PromptTokens(prompt);

    /// <inheritdoc/>
    public int ContextTokens => _inner.ContextTokens;

    List<Branch> Unwrap(IReadOnlyList<Branch> branches) => [.. Checked(branches).Select(b => b.Inner)];

    List<CheckedBranch> Checked(IReadOnlyList<Branch> branches)
    {
        ArgumentNullException.ThrowIfNull(branches);
        var list = new List<CheckedBranch>(branches.Count);
        for (int i = 0; i < branches.Count; i++)
        {
            if (branches[i] is not CheckedBranch b || b.Engine != this) throw new ArgumentException($"branch {i} does not belong to this search engine", nameof(branches));
            list.Add(b);
        }
        return list;
    }

    sealed class CheckedBranch(CheckerSearchEngine engine, Branch inner, string verifierPrompt, List<double> scores) : Branch
    {
        public CheckerSearchEngine Engine { get; } = engine;
        public Branch Inner { get; } = inner;
        public string VerifierPrompt { get; } = verifierPrompt;
        public List<double> Scores { get; } = scores;
        public override string Text => Inner.Text;
        public override IReadOnlyList<string> Steps => Inner.Steps;
        public override IReadOnlyList<double> StepScores => Scores;
        public override bool Finished => Inner.Finished;
        public override Branch Fork() => new CheckedBranch(Engine, Inner.Fork(), VerifierPrompt, [.. Scores]);
        public override void Dispose() => Inner.Dispose();
    }
}
