namespace Ponder.Server;

/// <summary>
/// What one request may ask of the server, and how many may run at once. Every limit is checked before the work it
/// guards (the body before it is parsed, the prompt's characters before it is tokenized, a search's size before any
/// forward); a request over a limit is a 400 (413 for the body) naming the field, an overloaded server a 503 with
/// <c>Retry-After</c>. The defaults suit a CPU server shared by a few clients; <c>ponder serve</c> has a flag for each.
/// </summary>
public sealed record ServerLimits
{
    /// <summary>Largest request body in bytes (<c>--max-body-bytes</c>); larger is 413.</summary>
    public long MaxBodyBytes { get; init; } = 1 << 20;
    /// <summary>Most characters of a prompt, or of all chat messages' contents together (<c>--max-prompt-chars</c>), checked before tokenization.</summary>
    public int MaxPromptChars { get; init; } = 100_000;
    /// <summary>Largest <c>ponder.n</c> (samples or beams; <c>--max-n</c>).</summary>
    public int MaxN { get; init; } = 64;
    /// <summary>Largest <c>ponder.beam_width</c> (<c>--max-beam-width</c>).</summary>
    public int MaxBeamWidth { get; init; } = 16;
    /// <summary>Largest <c>ponder.budget_generations</c> (<c>--max-budget-generations</c>).</summary>
    public double MaxBudgetGenerations { get; init; } = 64;
    /// <summary>Largest <c>ponder.budget_flops</c> (<c>--max-budget-flops</c>); null = no cap.</summary>
    public long? MaxBudgetFlops { get; init; }
    /// <summary>
    /// The share of the policy's KV cache one request may hold at worst (<c>--max-request-kv-share</c>): its prompt
    /// plus every branch grown to its longest (max_tokens, or max_step_tokens x max_rounds, within the context). A
    /// request that could hold more is refused before it starts, so it cannot take the whole cache. Null = no check.
    /// </summary>
    public double? MaxRequestKvShare { get; init; } = 0.5;
    /// <summary>Requests generating at once (<c>--max-concurrent</c>); more wait up to <see cref="QueueTimeout"/>, then get 503.</summary>
    public int MaxConcurrentRequests { get; init; } = 16;
    /// <summary>How long a request over <see cref="MaxConcurrentRequests"/> waits for a slot (<c>--queue-timeout</c>; zero = refuse at once).</summary>
    public TimeSpan QueueTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Longest a request may run (<c>--request-timeout</c>); then its work is cancelled and it gets 504 (or an SSE error event).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromMinutes(5);
    /// <summary>What <c>Retry-After</c> says on a 503, in seconds.</summary>
    public int RetryAfterSeconds { get; init; } = 1;

    /// <summary>Throws <see cref="ArgumentException"/> naming a limit that makes no sense.</summary>
    public ServerLimits Validate()
    {
        if (MaxBodyBytes < 1) throw new ArgumentException($"max body bytes must be >= 1, got {MaxBodyBytes}", nameof(MaxBodyBytes));
        if (MaxPromptChars < 1) throw new ArgumentException($"max prompt chars must be >= 1, got {MaxPromptChars}", nameof(MaxPromptChars));
        if (MaxN < 1) throw new ArgumentException($"max n must be >= 1, got {MaxN}", nameof(MaxN));
        if (MaxBeamWidth < 1) throw new ArgumentException($"max beam width must be >= 1, got {MaxBeamWidth}", nameof(MaxBeamWidth));
        if (!(MaxBudgetGenerations > 0)) throw new ArgumentException($"max budget generations must be > 0, got {MaxBudgetGenerations}", nameof(MaxBudgetGenerations));
        if (MaxBudgetFlops is < 1) throw new ArgumentException($"max budget flops must be >= 1, got {MaxBudgetFlops}", nameof(MaxBudgetFlops));
        if (MaxRequestKvShare is { } s && !(s > 0 && s <= 1)) throw new ArgumentException($"max request KV share must be in (0, 1], got {s}", nameof(MaxRequestKvShare));
        if (MaxConcurrentRequests < 1) throw new ArgumentException($"max concurrent requests must be >= 1, got {MaxConcurrentRequests}", nameof(MaxConcurrentRequests));
        if (QueueTimeout < TimeSpan.Zero) throw new ArgumentException("the queue timeout must not be negative", nameof(QueueTimeout));
        if (RequestTimeout <= TimeSpan.Zero) throw new ArgumentException("the request timeout must be positive", nameof(RequestTimeout));
        if (RetryAfterSeconds < 0) throw new ArgumentException("Retry-After must not be negative", nameof(RetryAfterSeconds));
        return this;
    }
}
