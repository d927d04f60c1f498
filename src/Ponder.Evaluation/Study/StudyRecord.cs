using Ponder.Tasks;

namespace Ponder.Evaluation.Study;

/// <summary>A question of a study.</summary>
/// <param name="Id">Stable id: dataset file name and 0-based line, e.g. "test-0042" (ordinal order = file order).</param>
/// <param name="Question">The question text.</param>
/// <param name="Reference">The reference answer (normalized integer).</param>
public sealed record StudyQuestion(string Id, string Question, string Reference)
{
    /// <summary>Exact integer match of an extracted answer (the arithmetic task's grading).</summary>
    public bool IsCorrect(string? answer) => answer is not null && AnswerExtractors.ParseInteger(answer) == Reference;
}

/// <summary>Progress of a study phase.</summary>
/// <param name="Phase">The phase ("oracle samples", "sweep", ...).</param>
/// <param name="Done">Units done (the sweep: jobs, cached ones included).</param>
/// <param name="Total">Units in all.</param>
/// <param name="Detail">More to show beside the bar (a cluster sweep: jobs in flight and per-silo throughput), or null.</param>
public readonly record struct StudyProgress(string Phase, int Done, int Total, string? Detail = null);

/// <summary>One run of the sweep with its exact costs, read from the search's scheduler request report.</summary>
/// <param name="Strategy">Record name (<see cref="Ponder.Search.StrategySpec.RecordName"/>).</param>
/// <param name="Params">Hyper-parameters.</param>
/// <param name="Budget">Budget in generations.</param>
/// <param name="QuestionId">Question id.</param>
/// <param name="Seed">Seed.</param>
/// <param name="Correct">Graded.</param>
/// <param name="Answer">Selected answer.</param>
/// <param name="Flops">Exact FLOPs (request report: policy + PRM).</param>
/// <param name="PolicyFlops">Policy share (the revision model's, for revisions).</param>
/// <param name="PrmFlops">PRM share.</param>
/// <param name="Generations">Generations spent.</param>
/// <param name="TokensComputed">Tokens run through a model.</param>
/// <param name="TokensReused">Tokens served by the KV/prefix cache.</param>
/// <param name="BudgetExhausted">The engine refused work (the search finished with what it had).</param>
/// <param name="RoundAccuracy">Revisions only: per sequential step, the fraction of chains whose attempt there is correct.</param>
public sealed record StudyRecord(string Strategy, string Params, int Budget, string QuestionId, ulong Seed, bool Correct, string? Answer,
    long Flops, long PolicyFlops, long PrmFlops, double Generations, long TokensComputed, long TokensReused, bool BudgetExhausted,
    IReadOnlyList<double>? RoundAccuracy = null)
{
    /// <summary>"strategy(params)".</summary>
    public string Configuration => Params.Length == 0 ? Strategy : $"{Strategy}({Params})";

    /// <summary>The plain sweep row (what the fit, curves and CSV read).</summary>
    public SweepRecord ToSweepRecord() => new(Strategy, Params, Budget, QuestionId, Seed, Correct, Answer, Flops, Generations);
}
