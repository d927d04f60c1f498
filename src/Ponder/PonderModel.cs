using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Cache;
using Ponder.Models;
using Ponder.Sampling;
using Ponder.Scheduling;
using Ponder.Tokenization;

namespace Ponder;

/// <summary>How a model is loaded and where it runs.</summary>
public sealed record ModelOptions
{
    /// <summary>The backend to run on; null = a new <see cref="CpuBackend"/> owned by the model.</summary>
    public IBackend? Backend { get; init; }
    /// <summary>CPU threads when the model creates its own CPU backend (null = all cores).</summary>
    public int? Threads { get; init; }
    /// <summary>KV cache capacity in tokens (across all sequences).</summary>
    public int KvCacheTokens { get; init; } = 8192;
    /// <summary>Tokens per KV block.</summary>
    public int BlockSize { get; init; } = 16;
    /// <summary>Where loading and backend notices go (e.g. a CUDA request that fell back to the CPU); null: nowhere.</summary>
    public ILogger? Logger { get; init; }
}

/// <summary>One generated token and the text it completes (may be empty while a UTF-8 character is incomplete).</summary>
public readonly record struct GeneratedToken(int Id, string Text);

/// <summary>Result of <see cref="PonderModel.Perplexity"/>.</summary>
public sealed record PerplexityResult(int TokensScored, double MeanNll)
{
    /// <summary>exp(mean negative log-likelihood).</summary>
    public double Perplexity => Math.Exp(MeanNll);
}

/// <summary>
/// A loaded model: weights on a backend, its tokenizer, and a KV block pool. The entry point for a .NET host:
/// <code>
///   await using var model = await PonderModel.LoadAsync("weights/policy-small");
///   await foreach (var t in model.GenerateAsync("Q: 2+3*4\n", new SamplingOptions { Temperature = 0 }))
///       Console.Write(t.Text);
/// </code>
/// The model's <see cref="Scheduler"/> owns its KV pool and runs one forward at a time, batching many searches into
/// it. Disposing the model cancels the work in flight (its callers see <see cref="ObjectDisposedException"/> or
/// <see cref="OperationCanceledException"/>), waits for the round in progress, then frees the memory.
/// </summary>
public sealed partial class PonderModel : IDisposable, IAsyncDisposable
{
    readonly bool _ownsBackend;
    readonly ILogger _logger;
    int _disposed;

    PonderModel(Transformer transformer, ITokenizer? tokenizer, BlockPool pool, bool ownsBackend, ILogger logger, string location)
    {
        Transformer = transformer; Tokenizer = tokenizer; Pool = pool; _ownsBackend = ownsBackend; _logger = logger; Location = location;
        PrefixIndex = new PrefixIndex(pool, "policy");
        Scheduler = new StepScheduler();
        Scheduled = new ScheduledModel("policy", transformer, pool, PrefixIndex);
        pool.Owner = Scheduler;
    }

    /// <summary>Where the weights came from (a path, or a description of an in-memory source).</summary>
    public string Location { get; }
    /// <summary>The model's shape and architecture, as read from its config.</summary>
    public ModelConfig Config => Transformer.Config;
    internal Transformer Transformer { get; }
    /// <summary>The backend the forward runs on (CPU, or ILGPU/CUDA).</summary>
    public IBackend Backend => Transformer.Backend;
    /// <summary>The model's tokenizer; null for a model loaded without one (token ids only).</summary>
    public ITokenizer? Tokenizer { get; }
    internal BlockPool Pool { get; }
    /// <summary>The pool's prefix index: prompts that start like an earlier one reuse its computed blocks.</summary>
    internal PrefixIndex PrefixIndex { get; }

    /// <summary>Tokens the KV cache holds in all (its blocks times the block size).</summary>
    public long KvCacheCapacityTokens => Pool.CapacityTokens;

    /// <summary>A consistent snapshot of the KV cache (taken between the scheduler's rounds).</summary>
    public KvCacheStats CacheStats() => Scheduler.RunExclusive(Pool.Stats);

    /// <summary>
    /// Drops every prefix-cache block no sequence holds, so the next request starts cold (its FLOPs then do not depend
    /// on what ran before in this process). Sequences alive keep their blocks.
    /// </summary>
    public void ClearPrefixCache() => Scheduler.RunExclusive(() =>
    {
        foreach (var index in Pool.Indexes) index.Evict(Pool.BlockCount);
    });
    /// <summary>
    /// Runs this model's forwards in batches, charging each request's budget exactly (generation goes through it); the
    /// only owner of the model's KV pool. A PRM serving a policy runs on the policy's scheduler.
    /// </summary>
    public StepScheduler Scheduler { get; private set; }
    /// <summary>This model as the scheduler runs it (name "policy", or "prm" once it serves a policy).</summary>
    public ScheduledModel Scheduled { get; private set; }

    /// <summary>
    /// Moves this model onto <paramref name="scheduler"/> (a policy's, so a search's policy and PRM forwards share its
    /// rounds and one pool never has two schedulers) under <paramref name="name"/>. Refused while the model has live
    /// sequences, or when it already runs on another model's scheduler.
    /// </summary>
    public void RunOn(StepScheduler scheduler, string name)
    {
        ArgumentNullException.ThrowIfNull(scheduler);
        if (scheduler == Scheduler && Scheduled.Name == name) return;
        Scheduler.RunExclusive(() =>
        {
            if (Pool.Owner != Scheduler)
                throw new InvalidOperationException($"model '{Location}' already runs on another model's scheduler; load it again to serve a second policy");
            if (Pool.SequenceCount > 0)
                throw new InvalidOperationException($"model '{Location}' has {Pool.SequenceCount} live sequences; it can change schedulers only when idle");
            Pool.Owner = scheduler;
        });
        Scheduler = scheduler;
        Scheduled = new ScheduledModel(name, Transformer, Pool, PrefixIndex);
    }

    /// <summary>A scheduler request charging <paramref name="budget"/> (null = unlimited); pass it to generation to read its FLOP report afterwards.</summary>
    public ScheduledRequest CreateRequest(Budget? budget = null, string name = "generate", CancellationToken cancellationToken = default) =>
        Scheduler.CreateRequest(budget, name, cancellationToken);

    /// <summary>Loads weights from any tensor source (a file reader, or tensors in memory).</summary>
    public static PonderModel Load(ITensorSource source, ITokenizer? tokenizer, ModelOptions? options = null, IProgress<float>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new ModelOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.KvCacheTokens, 1, nameof(options.KvCacheTokens));
        var backend = options.Backend ?? new CpuBackend(options.Threads);
        bool owns = options.Backend is null;
        Transformer? transformer = null;
        try
        {
            transformer = new Transformer(backend, source, progress, cancellationToken);
            var pool = BlockPool.ForTokens(backend, transformer.Config.ToKvLayout(options.BlockSize), options.KvCacheTokens);
            var logger = options.Logger ?? NullLogger.Instance;
            logger.LogInformation("Loaded {Location}: {Params} parameters on {Backend}", source.Location, transformer.Config.TotalParameters, backend.Name);
            return new PonderModel(transformer, tokenizer, pool, owns, logger, source.Location);
        }
        catch
        {
            transformer?.Dispose();
            if (owns) backend.Dispose();
            throw;
        }
    }

    ITokenizer RequireTokenizer() => Tokenizer ?? throw new InvalidOperationException($"{Location} has no tokenizer: pass token ids instead of text");

    /// <summary>Encodes a prompt with the model's tokenizer (BOS added when the tokenizer asks for it).</summary>
    public int[] Encode(string text) => RequireTokenizer().Encode(text, addSpecialTokens: true);

    /// <summary>Streams the continuation of <paramref name="prompt"/>.</summary>
    public IAsyncEnumerable<GeneratedToken> GenerateAsync(string prompt, SamplingOptions? options = null, CancellationToken cancellationToken = default) =>
        GenerateAsync(Encode(prompt), options, null, cancellationToken);

    /// <summary>Streams the continuation of <paramref name="prompt"/>, charging <paramref name="request"/> (see <see cref="CreateRequest"/>).</summary>
    public IAsyncEnumerable<GeneratedToken> GenerateAsync(string prompt, SamplingOptions? options, ScheduledRequest? request, CancellationToken cancellationToken = default) =>
        GenerateAsync(Encode(prompt), options, request, cancellationToken);

    /// <summary>Streams the continuation of a prompt given as token ids.</summary>
    public IAsyncEnumerable<GeneratedToken> GenerateAsync(int[] prompt, SamplingOptions? options = null, CancellationToken cancellationToken = default) =>
        GenerateAsync(prompt, options, null, cancellationToken);

    /// <summary>
    /// Streams the continuation of a prompt given as token ids, through the <see cref="Scheduler"/> (a batch of one
    /// unless other requests run at the same time). Each forward is charged to <paramref name="request"/> (null: a
    /// request of its own with no budget); when its budget cannot pay for the next token, generation stops there and
    /// the request's report says why.
    /// </summary>
    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(int[] prompt, SamplingOptions? options, ScheduledRequest? request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        options ??= new SamplingOptions();
        var sampler = new Sampler(options);
        if (prompt.Length == 0) throw new ArgumentException("the prompt is empty (no tokens)", nameof(prompt));
        foreach (int t in prompt)
            if ((uint)t >= (uint)Config.Vocab) throw new ArgumentOutOfRangeException(nameof(prompt), $"prompt token {t} is outside the vocabulary (0..{Config.Vocab - 1})");
        if (Config.Head != HeadKind.LanguageModel) throw new InvalidOperationException($"{Location} has a value head; it scores, it does not generate");
        if (prompt.Length >= Config.MaxPositions) throw new ArgumentException($"the prompt has {prompt.Length} tokens; the model has {Config.MaxPositions} positions", nameof(prompt));

        var decoder = Tokenizer is null ? null : new StreamingDecoder(Tokenizer, skipSpecialTokens: true);
        var stops = new TextStopMatcher(options.StopStrings);
        var eos = options.StopAtEos ? (Tokenizer?.EosIds ?? Config.EosTokenIds) : [];
        var context = new List<int>(prompt);
        // HeadRows: a shared value row (index vocab) comes after the logits; the sampler reads only the vocabulary.
        var output = new float[Config.HeadRows];
        var req = request ?? Scheduler.CreateRequest(null, "generate", cancellationToken);
        // One sampled answer is one generation (the paper's unit).
        var generation = new Charge(FlopCounts.Zero, 0, 1);
        if (!req.Budget.TrySpend(generation))
        {
            req.BudgetExhaustedReason = req.Budget.Explain(generation);
            if (request is null) req.Dispose();
            yield break;
        }
        req.RecordGenerations(1);
        var sequence = Scheduler.CreateSequence(req, Scheduled, prompt);
        // The prompt tokens the prefix cache served (the sequence starts with them computed) were not computed again.
        if (sequence.ComputedLength > 0) req.RecordReuse(Scheduled.Name, sequence.ComputedLength, Scheduled.Counter.Prefill(sequence.ComputedLength));
        // The next token's work is submitted as soon as the token is sampled, on the scheduler's pump, before the token
        // is handed to the consumer on the thread pool: generation never waits for a thread-pool hop or a slow consumer
        // (per-token hops were the tail of a loaded server's latency), and the token stream is unchanged.
        Task<WorkResult>? pending = null;
        try
        {
            int length = prompt.Length;
            cancellationToken.ThrowIfCancellationRequested();
            pending = Scheduler.SubmitAsync(req, Scheduled, sequence, [], output);
            for (int step = 0; step < options.MaxNewTokens; step++)
            {
                var result = await pending.ConfigureAwait(false);
                pending = null;
                if (!result.Completed) break;
                int token = sampler.Sample(output.AsSpan(0, Config.Vocab), System.Runtime.InteropServices.CollectionsMarshal.AsSpan(context));
                context.Add(token);
                req.RecordSampled(1);
                if (eos.Contains(token)) yield break;
                string emit = decoder is null ? "" : stops.Push(decoder.Push(token));
                length++;
                bool more = !stops.Stopped && step + 1 < options.MaxNewTokens && length <= Config.MaxPositions;
                if (more && !cancellationToken.IsCancellationRequested) pending = Scheduler.SubmitAsync(req, Scheduled, sequence, [token], output);
                // Hand the token over on the thread pool, not on the scheduler's pump (a consumer that blocks would stall every round).
                await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
                if (emit.Length > 0 || decoder is null) yield return new GeneratedToken(token, emit);
                cancellationToken.ThrowIfCancellationRequested();
                if (pending is null) break;
            }
            string rest = decoder is null ? "" : stops.Push(decoder.Flush()) + stops.Flush();
            if (rest.Length > 0) yield return new GeneratedToken(-1, rest);
        }
        finally
        {
            // Work submitted for a token nobody will read: its outcome (a result, or the release below failing it) is dropped.
            pending?.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            Scheduler.Release(sequence);
            if (request is null) req.Dispose();
        }
    }

    /// <summary>
    /// Mean negative log-likelihood of <paramref name="tokens"/> under the model: the text is cut into windows of
    /// <paramref name="window"/> tokens (default: the model's context), each run from an empty cache, and every token
    /// after a window's first is scored given the tokens before it in that window.
    /// </summary>
    public PerplexityResult Perplexity(ReadOnlySpan<int> tokens, int? window = null, IProgress<float>? progress = null, CancellationToken cancellationToken = default)
    {
        int w = Math.Min(window ?? Config.MaxPositions, Math.Min(Config.MaxPositions, Pool.BlockCount * Pool.BlockSize));
        if (w < 2) throw new ArgumentException($"window {w} must be at least 2 tokens");
        if (tokens.Length < 2) throw new ArgumentException($"perplexity needs at least 2 tokens, got {tokens.Length}");
        int[] all = tokens.ToArray();
        return Scheduler.RunExclusive(() => PerplexityLocked(all, w, progress, cancellationToken));
    }

    PerplexityResult PerplexityLocked(ReadOnlySpan<int> tokens, int w, IProgress<float>? progress, CancellationToken cancellationToken)
    {
        // A window runs in pieces of at most `piece` tokens, each attending to the window's earlier pieces through the
        // cache, so logits never hold more than about 4M floats (16 MiB) whatever the window and vocabulary: a 152k
        // vocabulary over an 8k window would otherwise be 5 GB. The GEMM is batch-invariant, so pieces score the same.
        const long MaxLogitFloats = 1L << 22;
        int headRows = Config.HeadRows;
        int piece = (int)Math.Clamp(MaxLogitFloats / headRows, 1, w);
        var logits = new float[(long)piece * headRows];
        var rows = new int[piece];
        for (int i = 0; i < piece; i++) rows[i] = i;
        var batch = new BatchLayout(Pool.BlockSize);
        double nll = 0; int scored = 0;
        for (int start = 0; start < tokens.Length - 1; start += w)
        {
            var chunk = tokens.Slice(start, Math.Min(w, tokens.Length - start));
            if (chunk.Length < 2) break;
            using var sequence = new Sequence(Pool);
            // The window's last token is only a target: pieces cover the chunk.Length - 1 scored positions.
            for (int at = 0; at < chunk.Length - 1; at += piece)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int n = Math.Min(piece, chunk.Length - 1 - at);
                var input = chunk.Slice(at, n);
                sequence.Append(input);
                batch.Clear();
                batch.Add(at, n, sequence.BlockTable);
                Transformer.Forward(batch, input, Pool.Storage, rows.AsSpan(0, n), logits.AsSpan(0, n * headRows));
                for (int i = 0; i < n; i++)
                    nll -= Sampler.LogProbability(logits.AsSpan(i * headRows, Config.Vocab), chunk[at + i + 1]);
                scored += n;
                progress?.Report((float)Math.Min(1, (start + at + n + 1) / (double)tokens.Length));
            }
        }
        return new PerplexityResult(scored, nll / scored);
    }

    /// <summary>Cancels the model's work in flight, waits for the round in progress, then frees the weights and the KV cache.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Scheduler.Retire(Scheduled);
        Pool.Dispose();
        Transformer.Dispose();
        if (_ownsBackend) Backend.Dispose();
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
