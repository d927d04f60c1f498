namespace Ponder.Search;

/// <summary>
/// One candidate solution a search produced: a snapshot of a branch (the branch itself is disposed by the strategy).
/// </summary>
/// <param name="Text">Generated text after the prompt.</param>
/// <param name="Steps">Its steps, delimiters stripped.</param>
/// <param name="StepScores">Verifier score of each scored step prefix.</param>
/// <param name="Score">The aggregated answer score (<see cref="StepAggregation"/>).</param>
/// <param name="Answer">The extracted final answer, or null when none could be extracted.</param>
/// <param name="Finished">True when the branch ended (not cut by the round limit or the budget).</param>
/// <param name="Chain">Index of the subtree, beam lineage or revision chain it came from (0 for best-of-N's i-th sample: i).</param>
/// <param name="Round">Round (or revision step, 0-based) in which it was completed or left.</param>
public sealed record SearchCandidate(
    string Text,
    IReadOnlyList<string> Steps,
    IReadOnlyList<double> StepScores,
    double Score,
    string? Answer,
    bool Finished,
    int Chain,
    int Round);

/// <summary>What a search returns.</summary>
/// <param name="Strategy">The strategy and its parameters, e.g. "beam(N=16,M=4)".</param>
/// <param name="Answer">The selected final answer, or null when no candidate had one.</param>
/// <param name="Candidates">Every candidate considered for selection, with texts, answers and scores.</param>
/// <param name="Budget">The engine's budget report at the end.</param>
/// <param name="Rounds">Step rounds run (for revisions: sequential attempts run).</param>
/// <param name="BudgetExhausted">True when the engine refused work and the search finished with what it had.</param>
public sealed record SearchResult(
    string Strategy,
    string? Answer,
    IReadOnlyList<SearchCandidate> Candidates,
    BudgetReport Budget,
    int Rounds,
    bool BudgetExhausted);
