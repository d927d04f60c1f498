using Ponder.Evaluation.Study;
using Ponder.Search;

namespace Ponder.Training.Tests.Evaluation;

/// <summary>The study's job loop on engines from a factory (no model): exact costs from the engine, grading, order and progress.</summary>
public sealed class StudyJobLoopTests
{
    /// <summary>A one-step engine: every sample answers the question's length offset by its position; 1 step = 1 generation = 7 FLOPs.</summary>
    sealed class OneStepEngine(string question) : ISearchEngine, IDisposable
    {
        public int Steps;
        public bool Disposed;
        public BudgetReport Budget => new(7L * Steps, null, Steps, null, Steps, 0);
        public Branch Start(string prompt) => new B();
        public ValueTask<StepOutcome> ExtendAsync(IReadOnlyList<Branch> branches, StepSampling sampling, CancellationToken cancellationToken = default)
        {
            for (int i = 0; i < branches.Count; i++)
            {
                var b = (B)branches[i];
                b.StepList.Add($"A: {(question.Length + (i % 3 == 2 ? 1 : 0))}");
                Steps++;
            }
            return ValueTask.FromResult(new StepOutcome(branches.Count, 0, false));
        }
        public ValueTask<StepOutcome> ScoreAsync(IReadOnlyList<Branch> branches, CancellationToken cancellationToken = default)
        {
            foreach (B b in branches) while (b.ScoreList.Count < b.StepList.Count) b.ScoreList.Add(0.5);
            return ValueTask.FromResult(new StepOutcome(branches.Count, 0, false));
        }
        public void Dispose() => Disposed = true;

        sealed class B : Branch
        {
            public List<string> StepList = [];
            public List<double> ScoreList = [];
            public override string Text => string.Concat(StepList.Select(s => s + "\n"));
            public override IReadOnlyList<string> Steps => StepList;
            public override IReadOnlyList<double> StepScores => ScoreList;
            public override bool Finished => StepList.Count > 0;
            public override Branch Fork() => new B { StepList = [.. StepList], ScoreList = [.. ScoreList] };
            public override void Dispose() { }
        }
    }

    [Fact]
    public async Task Runs_the_grid_in_order_with_exact_costs_grades_and_progress()
    {
        var engines = new List<OneStepEngine>();
        var loop = StudyJobLoop.OnEngines(job => { var e = new OneStepEngine(job.Question.Question); lock (engines) engines.Add(e); return e; });
        StudyQuestion[] questions = [new("a", "1+2", "3"), new("b", "10+20", "4")];
        var jobs = new[] { new StrategySpec(StrategyKind.BestOfN, 4), new StrategySpec(StrategyKind.BeamSearch, 4, 2) }
            .SelectMany(s => StudyJobs.Grid(s, questions, [0, 1])).ToList();
        Assert.Equal(8, jobs.Count);
        var batches = StudyJobs.Batches(jobs, Enumerable.Range(0, jobs.Count));
        Assert.Equal([[0, 1, 4, 5], [2, 3, 6, 7]], batches.Select(b => b.Jobs.ToArray()));
        var seen = new List<StudyProgress>();
        var progress = new SyncProgress(seen.Add);
        var records = await loop.RunAsync(jobs, concurrency: 3, progress);

        Assert.Equal(jobs.Select(j => (j.Spec.Name, j.Question.Id, j.Seed)), records.Select(r => (r.Strategy, r.QuestionId, r.Seed)));
        // Best-of-4: answers len, len, len+1, len -> weighted picks len: "3" for "1+2" (correct), "5" for "10+20" (wrong).
        Assert.Equal([true, true, false, false], records.Where(r => r.Strategy == "best-of-n").Select(r => r.Correct));
        Assert.All(records, r => Assert.Equal((28L, 4.0), (r.Flops, r.Generations)));
        Assert.Equal(8, seen.Count);
        Assert.Equal(Enumerable.Range(1, 8), seen.Select(p => p.Done).Order());
        Assert.All(engines, e => Assert.True(e.Disposed));
    }

    sealed class SyncProgress(Action<StudyProgress> report) : IProgress<StudyProgress>
    {
        public void Report(StudyProgress value) { lock (this) report(value); }
    }
}
