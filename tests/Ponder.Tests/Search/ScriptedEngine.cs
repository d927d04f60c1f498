using Ponder.Search;

namespace Ponder.Tests.Search;

/// <summary>What the scripted policy sees when asked for a branch's next step.</summary>
/// <param name="Prompt">The branch's prompt.</param>
/// <param name="Steps">Its steps so far.</param>
/// <param name="Sampling">The call's sampling settings.</param>
/// <param name="Index">The branch's position in the ExtendAsync call (how a real engine separates streams).</param>
public sealed record StepRequest(string Prompt, IReadOnlyList<string> Steps, StepSampling Sampling, int Index);

/// <summary>
/// A deterministic ISearchEngine for strategy tests: a scripted policy (next step from prompt, steps, sampling and
/// position in the call), a scripted PRM (score of a step prefix), simple known costs (an extended step costs
/// <see cref="StepFlops"/>, a scored step <see cref="ScoreFlops"/>; a generation is <see cref="StepsPerGeneration"/>
/// extended steps) and a FLOP cap it enforces by refusing work, as the real engine does. It logs every call and counts
/// live branches, so tests can prove that every dropped branch was disposed.
/// </summary>
public sealed class ScriptedEngine(Func<StepRequest, string> policy, Func<string, IReadOnlyList<string>, double> prm) : ISearchEngine
{
    public long StepFlops { get; init; } = 10;
    public long ScoreFlops { get; init; } = 1;
    public int StepsPerGeneration { get; init; } = 2;
    public long? FlopsCap { get; init; }
    /// <summary>The scripted policy's context, in characters (the default prompt-token count is characters).</summary>
    public int Context { get; init; } = int.MaxValue;

    public int ContextTokens => Context;

    long flops;
    long stepsExtended;
    long stepsScored;
    int nextId;

    public int Created { get; private set; }
    public int Forks { get; private set; }
    public int Live { get; private set; }
    public List<string> StartedPrompts { get; } = [];
    /// <summary>Each ExtendAsync call: the branches it extended (their texts before the step) and its sampling.</summary>
    public List<(List<string> Texts, StepSampling Sampling)> Extends { get; } = [];
    /// <summary>Each ScoreAsync call: the texts of the branches passed.</summary>
    public List<List<string>> Scores { get; } = [];

    public BudgetReport Budget => new(flops, FlopsCap, (double)stepsExtended / StepsPerGeneration, null, stepsExtended, 0);

    public Branch Start(string prompt)
    {
        StartedPrompts.Add(prompt);
        return new ToyBranch(this, prompt, [], [], false);
    }

    public ValueTask<StepOutcome> ExtendAsync(IReadOnlyList<Branch> branches, StepSampling sampling, CancellationToken cancellationToken = default)
    {
        var log = new List<string>();
        int done = 0, skipped = 0;
        for (int i = 0; i < branches.Count; i++)
        {
            var b = Own(branches[i]);
            if (b.Finished) continue;
            if (FlopsCap is long cap && flops + StepFlops > cap) { skipped++; continue; }
            log.Add(b.Text);
            var step = policy(new StepRequest(b.Prompt, b.StepList, sampling, i));
            b.StepList.Add(step);
            b.IsFinished = step.StartsWith("A:", StringComparison.Ordinal);
            flops += StepFlops;
            stepsExtended++;
            done++;
        }
        Extends.Add((log, sampling));
        return ValueTask.FromResult(new StepOutcome(done, skipped, skipped > 0));
    }

    public ValueTask<StepOutcome> ScoreAsync(IReadOnlyList<Branch> branches, CancellationToken cancellationToken = default)
    {
        Scores.Add(branches.Select(b => b.Text).ToList());
        int done = 0, skipped = 0;
        foreach (var branch in branches)
        {
            var b = Own(branch);
            long cost = (b.StepList.Count - b.ScoreList.Count) * ScoreFlops;
            if (cost == 0) continue;
            if (FlopsCap is long cap && flops + cost > cap) { skipped++; continue; }
            for (int s = b.ScoreList.Count; s < b.StepList.Count; s++) b.ScoreList.Add(prm(b.Prompt, b.StepList.Take(s + 1).ToList()));
            flops += cost;
            stepsScored += cost / ScoreFlops;
            done++;
        }
        return ValueTask.FromResult(new StepOutcome(done, skipped, skipped > 0));
    }

    ToyBranch Own(Branch branch)
    {
        var b = branch as ToyBranch ?? throw new InvalidOperationException("not a scripted branch");
        if (b.Disposed) throw new InvalidOperationException($"branch {b.Id} used after Dispose");
        return b;
    }

    sealed class ToyBranch : Branch
    {
        readonly ScriptedEngine engine;

        public ToyBranch(ScriptedEngine engine, string prompt, List<string> steps, List<double> scores, bool finished)
        {
            this.engine = engine;
            Prompt = prompt;
            StepList = steps;
            ScoreList = scores;
            IsFinished = finished;
            Id = engine.nextId++;
            engine.Created++;
            engine.Live++;
        }

        public int Id { get; }
        public string Prompt { get; }
        public List<string> StepList { get; }
        public List<double> ScoreList { get; }
        public bool IsFinished { get; set; }
        public bool Disposed { get; private set; }

        public override string Text => string.Concat(StepList.Select(s => s + "\n"));
        public override IReadOnlyList<string> Steps => StepList;
        public override IReadOnlyList<double> StepScores => ScoreList;
        public override bool Finished => IsFinished;

        public override Branch Fork()
        {
            if (Disposed) throw new InvalidOperationException($"branch {Id} forked after Dispose");
            engine.Forks++;
            return new ToyBranch(engine, Prompt, [.. StepList], [.. ScoreList], IsFinished);
        }

        public override void Dispose()
        {
            if (Disposed) throw new InvalidOperationException($"branch {Id} disposed twice");
            Disposed = true;
            engine.Live--;
        }
    }
}
