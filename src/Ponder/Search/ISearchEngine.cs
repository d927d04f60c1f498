namespace Ponder.Search;

/// <summary>
/// What a search strategy needs from the engine, and nothing more: start a branch from a prompt, extend branches by
/// one step (sampled until the step delimiter), score their steps with the verifier, fork them. Strategies
/// (best-of-N, beam search, lookahead, DVTS, revisions) are written against this; the engine implementation runs the
/// work of all branches (and of all concurrent searches) as batched forwards through the scheduler, charges exact
/// FLOPs to the search's budget, and shares KV blocks between forks. Tests use scripted implementations.
/// </summary>
public interface ISearchEngine
{
    /// <summary>A new branch holding the prompt (no steps yet).</summary>
    Branch Start(string prompt);

    /// <summary>
    /// A new branch whose policy reads <paramref name="prompt"/> but whose verifier scores its steps after
    /// <paramref name="verifierPrompt"/> instead (null = the same prompt): a revision's steps are scored as an answer
    /// to the question alone, not after the previous attempts the reviser saw. Engines without a separate verifier
    /// context (scripted ones) start from the prompt.
    /// </summary>
    Branch Start(string prompt, string? verifierPrompt) => Start(prompt);

    /// <summary>
    /// Samples one more step for every branch in <paramref name="branches"/> that is not finished: tokens until the
    /// step delimiter (included), end of sequence, or <see cref="StepSampling.MaxStepTokens"/>. Runs them together.
    /// When the budget cannot pay for all of it, the branches it could not extend are left exactly as they were and
    /// the result says so; the strategy then finishes with what it has.
    /// </summary>
    ValueTask<StepOutcome> ExtendAsync(IReadOnlyList<Branch> branches, StepSampling sampling, CancellationToken cancellationToken = default);

    /// <summary>
    /// Scores every branch's steps that have no score yet with the verifier (PRM), appending to <see cref="Branch.StepScores"/>.
    /// The verifier's cache mirrors the branch, so only new steps' tokens are computed.
    /// </summary>
    ValueTask<StepOutcome> ScoreAsync(IReadOnlyList<Branch> branches, CancellationToken cancellationToken = default);

    /// <summary>Spent and remaining budget of the search this engine serves.</summary>
    BudgetReport Budget { get; }

    /// <summary>
    /// Tokens <paramref name="prompt"/> occupies in the policy's context (special tokens included). Strategies that
    /// build long prompts (revisions) use it with <see cref="ContextTokens"/> to keep them inside the context.
    /// The default (engines without a tokenizer, e.g. scripted ones) counts characters.
    /// </summary>
    int PromptTokens(string prompt) => prompt.Length;

    /// <summary>The policy's context length in tokens (prompt + generated); unbounded by default.</summary>
    int ContextTokens => int.MaxValue;
}

/// <summary>How steps are sampled. Temperature 0 is greedy (lookahead rollouts).</summary>
public sealed record StepSampling(float Temperature = 1f, ulong Seed = 0, int MaxStepTokens = 64, float TopP = 1f);

/// <summary>Whether a batched step (or scoring) ran in full, or stopped because the budget could not pay.</summary>
public readonly record struct StepOutcome(int Completed, int Skipped, bool BudgetExhausted);

/// <summary>A search's spending so far: exact FLOPs, generations (the paper's unit) and tokens, with the caps.</summary>
public sealed record BudgetReport(long FlopsSpent, long? FlopsCap, double GenerationsSpent, double? GenerationsCap, long TokensComputed, long TokensReused);

/// <summary>
/// A partial solution: a node of the search tree. Steps are the text between delimiters (the paper: lines).
/// Forks share the engine's KV blocks; disposing releases them.
/// </summary>
public abstract class Branch : IDisposable
{
    /// <summary>Generated text after the prompt (all steps so far, delimiters included).</summary>
    public abstract string Text { get; }
    /// <summary>The steps so far, each with its delimiter stripped.</summary>
    public abstract IReadOnlyList<string> Steps { get; }
    /// <summary>Verifier score in [0, 1] of each step prefix that has been scored (index i = after step i).</summary>
    public abstract IReadOnlyList<double> StepScores { get; }
    /// <summary>True once the branch ended (end-of-sequence, or the task's final-answer step).</summary>
    public abstract bool Finished { get; }
    /// <summary>A new branch sharing this one's tokens and KV blocks (no copy).</summary>
    public abstract Branch Fork();
    /// <summary>Releases the branch's KV blocks (blocks still shared with other branches stay).</summary>
    public abstract void Dispose();
}
