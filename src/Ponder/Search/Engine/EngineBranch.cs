using Ponder.Cache;

namespace Ponder.Search.Engine;

/// <summary>
/// A <see cref="ScheduledSearchEngine"/> branch: the policy sequence (null until its first step forks the prompt
/// root), the next-token logits (shared with forks until one of them computes a token), and the PRM mirror.
/// <code>
///   generated tokens:  [ step 0 tokens | step 1 tokens | ... ]     StepEnds[i] = tokens after step i
///   policy sequence:   prompt + generated, all computed (a finished branch may lack its last token)
///   PRM mirror:        prompt + generated up to the last scored step (none with a shared value head: its
///                      step scores come from the policy's own forwards, SharedValues[i] at StepEnds[i] - 1)
/// </code>
/// </summary>
sealed class EngineBranch : Branch
{
    readonly List<string> _steps;
    readonly List<double> _scores;
    readonly List<double> _sharedValues;
    string _text;
    float[]? _logits;
    bool _logitsShared;

    public EngineBranch(ScheduledSearchEngine engine, ScheduledSearchEngine.PromptRoot root)
    {
        Engine = engine; Root = root; _steps = []; _scores = []; _sharedValues = []; _text = ""; Generated = []; StepEnds = [];
        root.Hold();
    }

    EngineBranch(EngineBranch parent)
    {
        Engine = parent.Engine; Root = parent.Root;
        Root.Hold();
        _steps = [.. parent._steps]; _scores = [.. parent._scores]; _sharedValues = [.. parent._sharedValues]; _text = parent._text;
        Generated = [.. parent.Generated]; StepEnds = [.. parent.StepEnds];
        IsFinished = parent.IsFinished;
        _logits = parent._logits;
        _logitsShared = parent._logitsShared = _logits is not null;
    }

    public ScheduledSearchEngine Engine { get; }
    public ScheduledSearchEngine.PromptRoot Root { get; }
    public Sequence? Policy { get; set; }
    public Sequence? Prm { get; set; }
    public List<int> Generated { get; }
    public List<int> StepEnds { get; }
    public bool IsFinished { get; private set; }
    public bool IsDisposed { get; private set; }
    public float[]? Logits => _logits;
    /// <summary>With a shared value head: each committed step's score, read from the forward of its last token.</summary>
    public IReadOnlyList<double> SharedValues => _sharedValues;

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

    public void CommitStep(List<int> tokens, string text, string step, bool finished, double? sharedValue)
    {
        if (sharedValue is double v) _sharedValues.Add(v);
        Generated.AddRange(tokens);
        StepEnds.Add(Generated.Count);
        _text += text;
        _steps.Add(step);
        IsFinished = finished;
    }

    public void AddScore(double score) => _scores.Add(score);

    public void FinishAtContextLimit() => IsFinished = true;

    public override Branch Fork()
    {
        var request = Engine.RequestInternal;
        lock (Engine.SyncRoot)
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            var fork = new EngineBranch(this) { Policy = Policy?.Fork(), Prm = Prm?.Fork() };
            if (fork.Policy is { ComputedLength: > 0 } p) request.RecordReuse(Engine.Policy.Name, p.ComputedLength, Engine.Policy.Counter.Prefill(p.ComputedLength));
            if (fork.Prm is { ComputedLength: > 0 } m && Engine.Prm is { } prm) request.RecordReuse(prm.Name, m.ComputedLength, prm.Counter.Prefill(m.ComputedLength));
            request.Own(fork);
            return fork;
        }
    }

    public override void Dispose()
    {
        lock (Engine.SyncRoot)
        {
            if (IsDisposed) return;
            IsDisposed = true;
            Policy?.Dispose();
            Prm?.Dispose();
            Root.Release();
        }
        Engine.RequestInternal.Disown(this);
    }
}
