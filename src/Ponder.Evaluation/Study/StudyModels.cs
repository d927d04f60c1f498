using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Tasks;
using Ponder.Models;
using Ponder.Scheduling;
using Ponder.Search;
using Ponder.Search.Engine;
using Ponder.Tokenization;

namespace Ponder.Evaluation.Study;

/// <summary>A model of a study with the identity its cached samples are keyed by.</summary>
/// <param name="Model">The loaded model.</param>
/// <param name="Fingerprint">Name and content hash, e.g. "policy-small@3fa2c81b09d1": cached samples of other weights never match.</param>
/// <param name="PretrainTokens">D_pretrain when known (model card or config), for the FLOPs-matched comparison.</param>
public sealed record StudyModel(PonderModel Model, string Fingerprint, long? PretrainTokens);

/// <summary>
/// The models of a study, loaded once: the policy, an optional PRM (value head or token-logit: <see cref="StepVerifier.ForPrm"/>) and an optional larger policy, all on one
/// backend. Every search runs on the policy's scheduler (so concurrent searches batch their forwards together); the PRM
/// joins it as a second scheduled model named "prm", with its own pool and prefix index.
/// </summary>
public sealed class StudyModels : IDisposable
{
    readonly IBackend? _ownedBackend;
    readonly StepVerifier? _prmVerifier;

    /// <summary>
    /// Wraps loaded models (not owned by the caller any more: <see cref="Dispose"/> disposes them). With
    /// <paramref name="sharedPrm"/>, the verifier is the policy's own value row (<see cref="SharedValueHeadVerifier"/>):
    /// <paramref name="prm"/> must be null, and <see cref="Prm"/> is the policy (its fingerprint keys the cached scores).
    /// </summary>
    /// <remarks>
    /// With <paramref name="checker"/> (a control verifier that reads step text: exact or degraded), steps are scored
    /// by it and no PRM model is loaded; its scores cost no FLOPs.
    /// </remarks>
    public StudyModels(StudyModel policy, StudyModel? prm = null, StudyModel? large = null, IBackend? ownedBackend = null, StudyModel? reviser = null,
        bool sharedPrm = false, IStepChecker? checker = null)
    {
        if (checker is not null && (prm is not null || sharedPrm))
            throw new ArgumentException($"checker '{checker.Name}' is the verifier: pass no PRM model", nameof(checker));
        Checker = checker;
        if (sharedPrm)
        {
            ArgumentNullException.ThrowIfNull(policy);
            if (prm is not null) throw new ArgumentException("a shared value head is the verifier: pass no separate PRM", nameof(prm));
            if (!policy.Model.Config.SharedValueHead)
                throw new ArgumentException($"policy {policy.Model.Location} has no shared value head (config.json \"ponder_value_head\": 1); \"prm\": \"shared\" needs one", nameof(policy));
            if (reviser is not null)
                throw new ArgumentException("the shared value head scores the policy's own tokens; revisions sample from the revision model and need a separate PRM", nameof(reviser));
        }
        ArgumentNullException.ThrowIfNull(policy);
        if (policy.Model.Tokenizer is null) throw new ArgumentException($"policy {policy.Model.Location} has no tokenizer", nameof(policy));
        if (policy.Model.Config.Head != HeadKind.LanguageModel) throw new ArgumentException($"policy {policy.Model.Location} has a value head; it cannot sample", nameof(policy));
        if (reviser is not null && (reviser.Model.Config.Head != HeadKind.LanguageModel || reviser.Model.Config.Vocab != policy.Model.Config.Vocab))
            throw new ArgumentException($"reviser {reviser.Model.Location} must be a language model over the policy's vocabulary ({policy.Model.Config.Vocab} ids)", nameof(reviser));
        Policy = policy; Prm = sharedPrm ? policy : prm; Large = large; Reviser = reviser; _ownedBackend = ownedBackend;
        SharedPrm = sharedPrm;
        // The PRM and the reviser run on the policy's scheduler, so a search's forwards of all models share its rounds.
        // The PRM's format (value head, or token-logit from its prm.json) is checked before it moves.
        _prmVerifier = prm is null ? null : StepVerifier.ForPrm(prm.Model, policy.Model.Scheduler);
        reviser?.Model.RunOn(policy.Model.Scheduler, "reviser");
        PrmScheduled = prm?.Model.Scheduled;
        ReviserScheduled = reviser?.Model.Scheduled;
    }

    /// <summary>The policy.</summary>
    public StudyModel Policy { get; }
    /// <summary>A control verifier reading step text (exact, noisy, random), or null.</summary>
    public IStepChecker? Checker { get; }
    /// <summary>Whether steps can be scored (a PRM, a shared value head or a checker).</summary>
    public bool HasVerifier => Prm is not null || Checker is not null;
    /// <summary>The verifier's identity in cache keys and reports: the PRM's fingerprint, the checker's name, or "none".</summary>
    public string VerifierFingerprint => Checker?.Name ?? Prm?.Fingerprint ?? "none";
    /// <summary>The PRM (the policy itself with a shared value head), or null.</summary>
    public StudyModel? Prm { get; }
    /// <summary>Whether the verifier is the policy's shared value head: its scores come with the policy's tokens, no PRM FLOPs.</summary>
    public bool SharedPrm { get; }
    /// <summary>The larger policy, or null.</summary>
    public StudyModel? Large { get; }
    /// <summary>The revision model, or null.</summary>
    public StudyModel? Reviser { get; }
    /// <summary>The revision model as the policy's scheduler runs it (revision searches sample from it).</summary>
    public ScheduledModel? ReviserScheduled { get; }
    /// <summary>The separate PRM as the policy's scheduler runs it (null with a shared value head: the policy is the verifier).</summary>
    public ScheduledModel? PrmScheduled { get; }
    /// <summary>The policy's tokenizer (the PRM must share it).</summary>
    public ITokenizer Tokenizer => Policy.Model.Tokenizer!;
    /// <summary>The scheduler every search runs on.</summary>
    public StepScheduler Scheduler => Policy.Model.Scheduler;

    /// <summary>
    /// A search engine for one run on the policy (or, with <paramref name="revise"/>, the revision model) and the PRM
    /// when present, with a generation budget (null = unlimited). <paramref name="verify"/> false leaves the verifier
    /// out (majority voting): a shared value head would otherwise cost a finishing step's last token.
    /// </summary>
    public ScheduledSearchEngine Engine(double? generations, string name, CancellationToken cancellationToken = default, bool revise = false, bool verify = true) =>
        new(Scheduler, revise ? ReviserScheduled ?? throw new InvalidOperationException("no revision model loaded (study field 'reviser')") : Policy.Model.Scheduled,
            Tokenizer, verify ? Verifier(revise) : null,
            new Budget(new BudgetLimits(Generations: generations)), new SearchEngineOptions { Name = name }, cancellationToken);

    /// <summary>
    /// What a strategy searches with: <paramref name="engine"/> itself, or, with a <see cref="Checker"/> and
    /// <paramref name="verify"/>, the engine with its steps scored by the checker.
    /// </summary>
    public ISearchEngine Search(ScheduledSearchEngine engine, bool verify = true) =>
        Checker is not null && verify ? new CheckerSearchEngine(engine, Checker) : engine;

    StepVerifier? Verifier(bool revise) =>
        SharedPrm ? (revise ? throw new InvalidOperationException("the shared value head cannot score the revision model's tokens") : new SharedValueHeadVerifier(Policy.Model.Scheduled))
        : _prmVerifier;

    /// <summary>
    /// Drops every prefix-cache block no sequence holds, in every model's pool: the next phase starts cold, so its
    /// records' FLOPs do not depend on what ran before in this process (an oracle phase drawn now or read from its
    /// cache, another sweep), and match a fresh silo's. Call between phases, with no search running.
    /// </summary>
    public void ColdCache()
    {
        foreach (var model in new[] { Policy, Prm, Large, Reviser }.OfType<StudyModel>().Select(m => m.Model).Distinct())
            model.ClearPrefixCache();
    }

    /// <summary>
    /// Loads the config's models on one CPU backend. A PRM or larger policy whose path does not exist is left out and
    /// reported through <paramref name="notice"/>.
    /// </summary>
    public static async Task<StudyModels> LoadAsync(StudyConfig config, string baseDirectory, Action<string>? notice = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(config);
        var backend = new CpuBackend(config.Threads);
        var options = new ModelOptions { Backend = backend, KvCacheTokens = config.KvCacheTokens };
        var loaded = new List<PonderModel>();
        try
        {
            async Task<StudyModel?> Load(string? path, string role, long? pretrainTokens, bool required)
            {
                if (path is null) return null;
                string full = Path.GetFullPath(path, baseDirectory);
                if (!File.Exists(full) && !Directory.Exists(full))
                {
                    if (required) throw new FileNotFoundException($"study {role} '{full}' does not exist", full);
                    notice?.Invoke($"{role} '{path}' not found: skipped");
                    return null;
                }
                var model = await PonderModel.LoadAsync(full, options, null, cancellationToken).ConfigureAwait(false);
                loaded.Add(model);
                return new StudyModel(model, WeightsFingerprint.Of(full), pretrainTokens ?? PretrainTokensFromCard(full));
            }
            var policy = (await Load(config.Policy, "policy", config.PolicyPretrainTokens, required: true).ConfigureAwait(false))!;
            bool shared = config.UsesSharedPrm;
            var checker = ArithmeticStepChecker.Parse(config.Prm);
            var prm = shared || checker is not null ? null : await Load(config.Prm, "PRM", null, required: false).ConfigureAwait(false);
            var large = await Load(config.LargePolicy, "larger policy", config.LargePretrainTokens, required: false).ConfigureAwait(false);
            bool revisions = config.Strategies.Any(s => s.Name == "revisions");
            if (revisions && shared) notice?.Invoke("\"prm\": \"shared\": revisions sample from the revision model, which the policy's value head cannot score: skipped");
            var reviser = revisions && !shared
                ? await Load(config.Reviser, "revision model", null, required: false).ConfigureAwait(false) : null;
            return new StudyModels(policy, prm, large, backend, reviser, shared, checker);
        }
        catch
        {
            foreach (var m in loaded) m.Dispose();
            backend.Dispose();
            throw;
        }
    }

    /// <summary>D_pretrain from a model card line such as "tokens seen D_pretrain = 4,096,000 positions"; null when absent.</summary>
    public static long? PretrainTokensFromCard(string modelPath)
    {
        string card = Path.Combine(Directory.Exists(modelPath) ? modelPath : Path.GetDirectoryName(modelPath) ?? ".", "README.md");
        if (!File.Exists(card)) return null;
        var m = Regex.Match(File.ReadAllText(card), @"D_pretrain\s*=\s*([\d,]+)");
        return m.Success && long.TryParse(m.Groups[1].Value.Replace(",", ""), out long tokens) ? tokens : null;
    }

    /// <summary>Disposes the models and the backend they share.</summary>
    public void Dispose()
    {
        Policy.Model.Dispose();
        if (!SharedPrm) Prm?.Model.Dispose();
        Large?.Model.Dispose();
        Reviser?.Model.Dispose();
        _ownedBackend?.Dispose();
    }
}
