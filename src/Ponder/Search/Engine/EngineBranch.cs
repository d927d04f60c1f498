using Ponder.Cache;

namespace Ponder.Search.Engine;

/// <summary>
/// A <see cref="ScheduledSearchEngine"/> branch: the policy sequence (null until its first step forks the prompt
/// root), the next-token logits (shared with forks until one of them computes a token), and what the verifier keeps
/// for it (<see cref="VerifierState"/>: a PRM's mirror sequence, or the scores a shared value row read).
/// <code>
///   generated tokens:  [ step 0 tokens | step 1 tokens | ... ]     StepEnds[i] = tokens after step i
///   policy sequence:   prompt + generated, all computed (a finished branch may lack its last token)
/// </code>
/// </summary>
sealed class EngineBranch : Branch
{
    readonly List<string> _steps;
    readonly List<double> _scores;
    string _text;
    float[]? _logits;
    bool _logitsShared;

    public EngineBranch(ScheduledSearchEngine engine, ScheduledSearchEngine.PromptRoot root)
    {
        Engine = engine; Root = root; _steps = []; _scores = []; _text = ""; Generated = []; StepEnds = [];
        root.Hold();
    }

    EngineBranch(EngineBranch parent)
    {
        Engine = parent.Engine; Root = parent.Root;
        Root.Hold();
        _steps = [.. parent._steps]; _scores = [.. parent._scores]; _text = parent._text;
        Generated = [.. parent.Generated]; StepEnds = [.. parent.StepEnds];
        IsFinished = parent.IsFinished;
        _logits = parent._logits;
        _logitsShared = parent._logitsShared = _logits is not null;
    }

    public ScheduledSearchEngine Engine { get; }
    public ScheduledSearchEngine.PromptRoot Root { get; }
    public Sequence? Policy { get; set; }
    /// <summary>The verifier's per-branch state (see <see cref="StepScorer"/>).</summary>
    public object? VerifierState { get; set; }
    public List<int> Generated { get; }
    public List<int> StepEnds { get; }
    public bool IsFinished { get; private set; }
    public bool IsDisposed { get; private set; }
    public float[]? Logits => _logits;

    public override string Text => _text;
    public override IReadOnlyList<string> Steps => _steps;
    public override IReadOnlyList<double> StepScores => _scores;
    public override bool Finished => IsFinished;

    /// <summary>Takes logits another holder also reads (a prompt root's, or a parent's).</summary>
    public void ShareLogits(float[] logits) { _logits = logits; _logitsShared = true; }

    /// <summary>A logits buffer only this branch holds, for the next forward to write.</summary>
    public Memory<float> ExclusiveLogits()
    {
        if (_logitsShared || _logits is null) { _logits = new float[Engine.Policy.Config.HeadRows]; _logitsShared = false; }
        return _logits;
    }

    public void CommitStep(List<int> tokens, string text, string step, bool finished)
    {
        Generated.AddRange(tokens);
        StepEnds.Add(Generated.Count);
        _text += text;
        _steps.Add(step);
        IsFinished = finished;
    }

    public void AddScore(double score) => _scores.Add(score);

    public void FinishAtContextLimit() => IsFinished = true;

    public override Branch Fork() => Engine.Fork(this);

    /// <summary>A copy of this branch's state for <see cref="ScheduledSearchEngine.Fork"/> (sequences are the engine's to fork).</summary>
    public EngineBranch Copy()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        return new EngineBranch(this);
    }

    public override void Dispose() => Engine.Release(this);

    /// <summary>Marks the branch disposed; false when it already was.</summary>
    public bool MarkDisposed()
    {
        if (IsDisposed) return false;
        IsDisposed = true;
        return true;
    }
}
