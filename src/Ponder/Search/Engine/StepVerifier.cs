using Ponder.Cache;
using Ponder.Models;
using Ponder.Scheduling;

namespace Ponder.Search.Engine;

/// <summary>
/// A process reward model as the search engine uses it: how it turns its head's output at a step's last token into a
/// score in [0, 1], and (internally) how it reads a search's steps. The engine knows verifiers only through this:
/// <code>
///   ValueHeadVerifier         a separate PRM: every branch is mirrored into the PRM's own pool (same tokens, after
///                             the verifier prompt), only new steps' tokens are computed, each step's score is the
///                             PRM's head at its last token
///   SharedValueHeadVerifier   a value row on the policy: a step's score is read from the policy's own forward of the
///                             step's last token (which computes the next token's logits anyway): no second model
///   TokenLogitVerifier        a separate language-model PRM (Math-Shepherd, RLHFlow): mirrored like a value head, with
///                             step tag tokens appended after each step; the score is the softmax probability of the
///                             "good" candidate token among {good, bad} at the tag's last token
///   ProcessRewardVerifier     a separate PRM with a two-layer classification head (Qwen2.5-Math-PRM): mirrored with a
///                             separator after each step; the score is the probability of label 1 at the separator
/// </code>
/// <see cref="ForPrm"/> picks the verifier for a loaded PRM from its config.json and <c>prm.json</c> (<see cref="PrmFormat"/>).
/// </summary>
public abstract class StepVerifier
{
    private protected StepVerifier(ScheduledModel model) => Model = model ?? throw new ArgumentNullException(nameof(model));

    /// <summary>The model whose head scores steps (the PRM; the policy itself for a shared value row).</summary>
    public ScheduledModel Model { get; }

    /// <summary>The score of a step prefix from the head's output row (HeadRows values) at the step's last token.</summary>
    public abstract double Score(ReadOnlySpan<float> headOutput);

    /// <summary>How this verifier reads the steps of <paramref name="engine"/>'s search (its per-search state).</summary>
    internal abstract StepScorer Open(ScheduledSearchEngine engine);

    /// <summary>Tokens a mirrored verifier appends after each step (a step tag or separator) before reading the head; empty for none.</summary>
    internal virtual int[] StepSuffix => [];

    /// <summary>
    /// The verifier for a loaded separate PRM: as its <c>prm.json</c> says (<see cref="PrmFormat"/>), or, without one,
    /// a value head from config.json. Throws <see cref="InvalidDataException"/> naming the file and field of a bad
    /// prm.json, <see cref="ArgumentException"/> for a model that does not fit the format. With
    /// <paramref name="runOn"/> (a policy's scheduler), the PRM moves onto it (as "prm") once its format is checked.
    /// </summary>
    public static StepVerifier ForPrm(PonderModel prm, StepScheduler? runOn = null) => PrmFormat.CreateVerifier(prm, runOn);

    private protected static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    /// <summary>Softmax over two labels, taken for label 1: exp(o1) / (exp(o0) + exp(o1)) = sigmoid(o1 − o0).</summary>
    private protected static double SecondLabel(ReadOnlySpan<float> output) => Sigmoid((double)output[1] - output[0]);
}

/// <summary>
/// One search's side of a verifier: the engine calls it as branches are started, extended, forked, scored and released.
/// Calls that change state come with the engine's lock held, except <see cref="ScoreAsync"/>.
/// </summary>
internal abstract class StepScorer
{
    /// <summary>Whether the policy must compute a finishing step's last token, so that <see cref="OnStep"/> can read its output.</summary>
    public virtual bool ReadsFinalTokenOutput => false;

    /// <summary>Refuses a branch whose verifier would read its steps after a different prompt than the policy's, where it cannot.</summary>
    public virtual void CheckVerifierPrompt(bool separate) { }

    /// <summary>The most tokens <paramref name="branch"/>'s next step may have for the verifier to read it (its own context).</summary>
    public virtual int StepTokenLimit(EngineBranch branch) => int.MaxValue;

    /// <summary>A step was committed; <paramref name="policyOutput"/> is the policy head's output at its last token (empty when not computed).</summary>
    public virtual void OnStep(EngineBranch branch, ReadOnlySpan<float> policyOutput) { }

    /// <summary><paramref name="child"/> was forked from <paramref name="parent"/> (share what can be shared).</summary>
    public virtual void OnFork(EngineBranch parent, EngineBranch child) { }

    /// <summary><paramref name="branch"/> was disposed: release what it holds.</summary>
    public virtual void OnRelease(EngineBranch branch) { }

    /// <summary>The last branch of <paramref name="root"/> was disposed: release what the prompt holds.</summary>
    public virtual void OnRelease(ScheduledSearchEngine.PromptRoot root) { }

    /// <summary>Scores <paramref name="branch"/>'s unscored steps (appending to its scores); false when the budget refused.</summary>
    public abstract Task<bool> ScoreAsync(EngineBranch branch);
}

/// <summary>
/// A value-head PRM (<see cref="HeadKind.Value"/>) run as a separate model: one label scores sigmoid(output); two
/// labels score the softmax probability of label 1 ("correct").
/// </summary>
public sealed class ValueHeadVerifier : StepVerifier
{
    /// <summary>Wraps <paramref name="model"/>, which must have a value head with one or two labels.</summary>
    public ValueHeadVerifier(ScheduledModel model) : base(model)
    {
        if (model.Config.Head != HeadKind.Value)
            throw new ArgumentException($"model '{model.Name}' has a {model.Config.Head} head; a value-head verifier needs a value head (score.weight)", nameof(model));
        if (model.Config.NumLabels is not (1 or 2))
            throw new ArgumentException($"model '{model.Name}' has {model.Config.NumLabels} labels; a value-head verifier reads 1 (sigmoid) or 2 (softmax)", nameof(model));
    }

    /// <inheritdoc/>
    public override double Score(ReadOnlySpan<float> headOutput) => headOutput.Length switch
    {
        1 => Sigmoid(headOutput[0]),
        2 => SecondLabel(headOutput),
        _ => throw new ArgumentException($"a value head output of {headOutput.Length} values; expected 1 or 2", nameof(headOutput)),
    };

    internal override StepScorer Open(ScheduledSearchEngine engine) => new MirrorScorer(engine, this);
}

/// <summary>
/// A token-logit PRM (Math-Shepherd, RLHFlow): a language model run as a separate, mirrored verifier. After each step
/// the mirror appends the step tag tokens; the score is softmax over the {good, bad} candidate tokens' logits at the
/// tag's last token, taken for good: exp(l_good) / (exp(l_good) + exp(l_bad)) = sigmoid(l_good - l_bad).
/// </summary>
public sealed class TokenLogitVerifier : StepVerifier
{
    readonly int[] _stepTag;

    /// <summary>Wraps <paramref name="model"/> (a language-model head) with its step tag and candidate token ids.</summary>
    public TokenLogitVerifier(ScheduledModel model, IReadOnlyList<int> stepTag, int goodToken, int badToken) : base(model)
    {
        ArgumentNullException.ThrowIfNull(stepTag);
        if (model.Config.Head != HeadKind.LanguageModel)
            throw new ArgumentException($"model '{model.Name}' has a {model.Config.Head} head; a token-logit verifier reads a language-model head's logits", nameof(model));
        if (stepTag.Count == 0) throw new ArgumentException("the step tag has no tokens: the score would be read at the step's own last token", nameof(stepTag));
        int vocab = model.Config.Vocab;
        foreach (int id in stepTag)
            if ((uint)id >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(stepTag), $"step tag token {id} is outside model '{model.Name}''s vocabulary (0..{vocab - 1})");
        if ((uint)goodToken >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(goodToken), $"good token {goodToken} is outside model '{model.Name}''s vocabulary (0..{vocab - 1})");
        if ((uint)badToken >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(badToken), $"bad token {badToken} is outside model '{model.Name}''s vocabulary (0..{vocab - 1})");
        if (goodToken == badToken) throw new ArgumentException($"the good and bad candidate tokens are both {goodToken}", nameof(badToken));
        _stepTag = [.. stepTag];
        GoodToken = goodToken;
        BadToken = badToken;
    }

    /// <summary>The tokens appended after each step.</summary>
    public IReadOnlyList<int> StepTag => _stepTag;
    /// <summary>The candidate token whose probability is the score.</summary>
    public int GoodToken { get; }
    /// <summary>The other candidate token.</summary>
    public int BadToken { get; }

    internal override int[] StepSuffix => _stepTag;

    /// <inheritdoc/>
    public override double Score(ReadOnlySpan<float> headOutput)
    {
        if (headOutput.Length != Model.Config.HeadRows)
            throw new ArgumentException($"a head output of {headOutput.Length} values; model '{Model.Name}' writes {Model.Config.HeadRows}", nameof(headOutput));
        return Sigmoid((double)headOutput[GoodToken] - headOutput[BadToken]); // softmax over two candidates = sigmoid of the difference
    }

    internal override StepScorer Open(ScheduledSearchEngine engine) => new MirrorScorer(engine, this);
}

/// <summary>
/// A process reward model with a two-layer classification head (<see cref="HeadKind.ProcessReward"/>:
/// <c>Qwen2ForProcessRewardModel</c>, Qwen2.5-Math-PRM) run as a separate, mirrored verifier. After each step the mirror
/// appends the separator (<see cref="DefaultSeparator"/> for Qwen2.5-Math-PRM, whose model card joins the steps with it
/// and ends the response with it); the step's score is the softmax probability of label 1 ("right") at the separator's
/// last token, as the model card's reward computation reads it at every separator.
/// </summary>
public sealed class ProcessRewardVerifier : StepVerifier
{
    /// <summary>The separator text Qwen2.5-Math-PRM puts after every step (one added token of its tokenizer).</summary>
    public const string DefaultSeparator = "<extra_0>";

    readonly int[] _separator;

    /// <summary>Wraps <paramref name="model"/> (a process reward head with 2 labels) with its separator token ids.</summary>
    public ProcessRewardVerifier(ScheduledModel model, IReadOnlyList<int> separator) : base(model)
    {
        ArgumentNullException.ThrowIfNull(separator);
        if (model.Config.Head != HeadKind.ProcessReward)
            throw new ArgumentException($"model '{model.Name}' has a {model.Config.Head} head; a process-reward verifier needs score.0 / ReLU / score.2 (Qwen2ForProcessRewardModel)", nameof(model));
        if (model.Config.NumLabels != 2)
            throw new ArgumentException($"model '{model.Name}' has {model.Config.NumLabels} labels; a process-reward verifier reads 2", nameof(model));
        if (separator.Count == 0) throw new ArgumentException("the separator has no tokens: the score would be read at the step's own last token", nameof(separator));
        int vocab = model.Config.Vocab;
        foreach (int id in separator)
            if ((uint)id >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(separator), $"separator token {id} is outside model '{model.Name}''s vocabulary (0..{vocab - 1})");
        _separator = [.. separator];
    }

    /// <summary>The tokens appended after each step; the score is read at the last.</summary>
    public IReadOnlyList<int> Separator => _separator;

    internal override int[] StepSuffix => _separator;

    /// <inheritdoc/>
    public override double Score(ReadOnlySpan<float> headOutput)
    {
        if (headOutput.Length != 2)
            throw new ArgumentException($"a head output of {headOutput.Length} values; model '{Model.Name}' writes 2 labels", nameof(headOutput));
        return SecondLabel(headOutput);
    }

    internal override StepScorer Open(ScheduledSearchEngine engine) => new MirrorScorer(engine, this);
}

/// <summary>
/// The shared-backbone PRM: a value row on the policy's own final hidden state (<see cref="ModelConfig.SharedValueHead"/>),
/// read from the same forward that computes the next token's logits. The engine feeds every step's last token anyway
/// (for the next step's logits), so a step's score costs no second model, no second KV cache and no extra forward:
/// only the head's 2·dModel FLOPs per output row, counted with the LM head. Score = sigmoid(output[vocab]).
/// </summary>
public sealed class SharedValueHeadVerifier : StepVerifier
{
    /// <summary>Wraps <paramref name="policy"/>, which must be a language model with a shared value row.</summary>
    public SharedValueHeadVerifier(ScheduledModel policy) : base(policy)
    {
        if (policy.Config.Head != HeadKind.LanguageModel || !policy.Config.SharedValueHead)
            throw new ArgumentException($"model '{policy.Name}' has no shared value head (config.json \"ponder_value_head\": 1 with value_head.weight)", nameof(policy));
    }

    /// <inheritdoc/>
    public override double Score(ReadOnlySpan<float> headOutput)
    {
        if (headOutput.Length != Model.Config.HeadRows)
            throw new ArgumentException($"a head output of {headOutput.Length} values; the policy writes {Model.Config.HeadRows} (vocab {Model.Config.Vocab} + the value row)", nameof(headOutput));
        return Sigmoid(headOutput[Model.Config.Vocab]);
    }

    internal override StepScorer Open(ScheduledSearchEngine engine)
    {
        if (engine.Policy != Model)
            throw new ArgumentException($"a shared value head scores the policy's own tokens; its model '{Model.Name}' is not the policy '{engine.Policy.Name}'", "verifier");
        return new PolicyRowScorer(this);
    }

    /// <summary>Keeps each step's score as the policy computes it; scoring commits the kept scores (computes nothing).</summary>
    sealed class PolicyRowScorer(SharedValueHeadVerifier verifier) : StepScorer
    {
        public override bool ReadsFinalTokenOutput => true;

        public override void CheckVerifierPrompt(bool separate)
        {
            if (separate) throw new ArgumentException("a shared value head scores steps in the policy's own context; it cannot read them after a different verifier prompt", "verifierPrompt");
        }

        public override void OnStep(EngineBranch branch, ReadOnlySpan<float> policyOutput) => Values(branch).Add(verifier.Score(policyOutput));

        public override void OnFork(EngineBranch parent, EngineBranch child) => child.VerifierState = new List<double>(Values(parent));

        public override Task<bool> ScoreAsync(EngineBranch branch)
        {
            var values = Values(branch);
            while (branch.StepScores.Count < branch.Steps.Count) branch.AddScore(values[branch.StepScores.Count]);
            return Task.FromResult(true);
        }

        static List<double> Values(EngineBranch branch) => (List<double>)(branch.VerifierState ??= new List<double>());
    }
}

/// <summary>
/// A separate PRM's reading of a search: per prompt root, the verifier prompt's sequence in the PRM's pool (prefilled
/// once, when a branch is first scored); per branch, a fork of it that grows by each scored step's tokens, each
/// followed by the verifier's step suffix (<see cref="StepVerifier.StepSuffix"/>: a tag or separator, or nothing):
/// <code>
///   mirror = verifier prompt + step 0 + suffix + step 1 + suffix + ...   score k = head at the end of step k + suffix
/// </code>
/// </summary>
sealed class MirrorScorer(ScheduledSearchEngine engine, StepVerifier verifier) : StepScorer
{
    readonly ScheduledModel _prm = verifier.Model;
    readonly int[] _suffix = verifier.StepSuffix;

    /// <summary>The verifier prompt's sequence of a prompt root, and its prefill (shared by the root's branches).</summary>
    sealed class RootMirror
    {
        public Sequence? Sequence;
        public Task<WorkResult>? Ready;
        public int Uses;
    }

    public override int StepTokenLimit(EngineBranch branch) =>
        // The mirror (verifier prompt + steps) has its own context, which can be the shorter one (a reviser reading
        // earlier attempts, a PRM of 256 positions): every step must fit it.
        // Every step, this one included, adds the suffix too.
        _prm.Config.MaxPositions - branch.Root.VerifierTokens.Length - branch.Generated.Count - _suffix.Length * (branch.Steps.Count + 1);

    public override void OnFork(EngineBranch parent, EngineBranch child)
    {
        if (parent.VerifierState is not Sequence mirror) return;
        var fork = engine.Scheduler.Fork(engine.Request, mirror);
        child.VerifierState = fork;
        if (fork.ComputedLength > 0) engine.Request.RecordReuse(_prm.Name, fork.ComputedLength, _prm.Counter.Prefill(fork.ComputedLength));
    }

    public override void OnRelease(EngineBranch branch)
    {
        if (branch.VerifierState is Sequence mirror) engine.Scheduler.Release(mirror);
    }

    public override void OnRelease(ScheduledSearchEngine.PromptRoot root)
    {
        if (root.VerifierState is RootMirror { Sequence: { } s }) engine.Scheduler.Release(s);
    }

    public override async Task<bool> ScoreAsync(EngineBranch b)
    {
        if (b.VerifierState is null)
        {
            Task<WorkResult> ready;
            lock (engine.Gate)
            {
                var root = (RootMirror)(b.Root.VerifierState ??= new RootMirror());
                if (root.Sequence is null)
                {
                    root.Sequence = engine.Scheduler.CreateSequence(engine.Request, _prm, b.Root.VerifierTokens);
                    if (root.Sequence.ComputedLength > 0) engine.Request.RecordReuse(_prm.Name, root.Sequence.ComputedLength, _prm.Counter.Prefill(root.Sequence.ComputedLength));
                }
                root.Ready ??= engine.Scheduler.SubmitAsync(engine.Request, _prm, root.Sequence, [], Memory<float>.Empty);
                ready = root.Ready;
            }
            var result = await ready.ConfigureAwait(false);
            lock (engine.Gate)
            {
                var root = (RootMirror)b.Root.VerifierState!;
                if (!result.Completed)
                {
                    if (root.Ready == ready) root.Ready = null; // retry with a later budget
                    return false;
                }
                if (b.VerifierState is null)
                {
                    var mirror = engine.Scheduler.Fork(engine.Request, root.Sequence!);
                    b.VerifierState = mirror;
                    if (root.Uses++ > 0) engine.Request.RecordReuse(_prm.Name, mirror.ComputedLength, _prm.Counter.Prefill(mirror.ComputedLength));
                }
            }
        }
        var sequence = (Sequence)b.VerifierState;
        var output = new float[_prm.Config.HeadRows];
        int prompt = b.Root.VerifierTokens.Length;
        while (b.StepScores.Count < b.Steps.Count)
        {
            int k = b.StepScores.Count;
            int start = k == 0 ? 0 : b.StepEnds[k - 1], end = b.StepEnds[k];
            // The mirror holds the prompt and steps 0..k-1 with their suffixes, and may hold a prefix of step k's
            // tokens already (appended by a submission the budget refused): append only the rest.
            int have = sequence.Length - prompt - start - k * _suffix.Length;
            var append = new int[end - start + _suffix.Length - have];
            int fromStep = Math.Max(0, end - start - have);
            if (fromStep > 0) b.Generated.CopyTo(start + have, append, 0, fromStep);
            _suffix.AsSpan(_suffix.Length - (append.Length - fromStep)).CopyTo(append.AsSpan(fromStep));
            var result = await engine.Scheduler.SubmitAsync(engine.Request, _prm, sequence, append, output).ConfigureAwait(false);
            if (!result.Completed) return false;
            b.AddScore(verifier.Score(output));
        }
        return true;
    }
}
