namespace Ponder.Training;

/// <summary>A training progress report: where the run is, its latest loss, throughput and expected time left.</summary>
public sealed record TrainingProgress(string Phase, long Step, long TotalSteps, double Loss, double TokensPerSecond, TimeSpan Elapsed, TimeSpan Eta);
