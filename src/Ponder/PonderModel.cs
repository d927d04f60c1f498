using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Cache;
using Ponder.Models;
using Ponder.Sampling;
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
    public ILogger? Logger { get; init; }
}

/// <summary>One generated token and the text it completes (may be empty while a UTF-8 character is incomplete).</summary>
public readonly record struct GeneratedToken(int Id, string Text);

/// <summary>Result of <see cref="PonderModel.Perplexity"/>.</summary>
public sealed record PerplexityResult(int TokensScored, double MeanNll)
{
    public double Perplexity => Math.Exp(MeanNll);
}

/// <summary>
/// A loaded model: weights on a backend, its tokenizer, and a KV block pool. The entry point for a .NET host:
/// <code>
///   await using var model = await PonderModel.LoadAsync("weights/policy-small");
///   await foreach (var t in model.GenerateAsync("Q: 2+3*4\n", new SamplingOptions { Temperature = 0 }))
///       Console.Write(t.Text);
/// </code>
/// One forward runs at a time per model (a lock guards the backend); the scheduler batches many searches into those forwards.
/// </summary>
public sealed partial class PonderModel : IDisposable, IAsyncDisposable
{
    readonly bool _ownsBackend;
    readonly SemaphoreSlim _lock = new(1, 1);
    readonly ILogger _logger;

    PonderModel(Transformer transformer, ITokenizer? tokenizer, BlockPool pool, bool ownsBackend, ILogger logger, string location)
    {
        Transformer = transformer; Tokenizer = tokenizer; Pool = pool; _ownsBackend = ownsBackend; _logger = logger; Location = location;
    }

    public string Location { get; }
    public ModelConfig Config => Transformer.Config;
    public Transformer Transformer { get; }
    public IBackend Backend => Transformer.Backend;
    public ITokenizer? Tokenizer { get; }
    public BlockPool Pool { get; }

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
            var pool = BlockPool.ForTokens(backend, KvLayout.For(transformer.Config, options.BlockSize), options.KvCacheTokens);
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
        GenerateAsync(Encode(prompt), options, cancellationToken);

    /// <summary>Streams the continuation of a prompt given as token ids.</summary>
    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(int[] prompt, SamplingOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        options ??= new SamplingOptions();
        var sampler = new Sampler(options);
        if (prompt.Length == 0) throw new ArgumentException("the prompt is empty (no tokens)", nameof(prompt));
        foreach (int t in prompt)
            if ((uint)t >= (uint)Config.Vocab) throw new ArgumentOutOfRangeException(nameof(prompt), $"prompt token {t} is outside the vocabulary (0..{Config.Vocab - 1})");
        if (Config.Head != HeadKind.LanguageModel) throw new InvalidOperationException($"{Location} has a value head; it scores, it does not generate");

        var decoder = Encoding.UTF8.GetDecoder();
        var stops = new StopStringMatcher(options.StopStrings);
        var eos = options.StopAtEos ? (Tokenizer?.EosIds ?? Config.EosTokenIds) : [];
        var context = new List<int>(prompt);
        var logits = new float[Config.Vocab];
        var batch = new BatchLayout(Pool.BlockSize);
        using var sequence = new Sequence(Pool);
        int[] next = prompt;
        for (int step = 0; step < options.MaxNewTokens; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int[] chunk = next;
            int token = await Task.Run(async () =>
            {
                await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    RunChunk(sequence, chunk, batch, logits);
                    return sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(context));
                }
                finally { _lock.Release(); }
            }, cancellationToken).ConfigureAwait(false);
            context.Add(token);
            if (eos.Contains(token)) yield break;
            string text = Tokenizer is null ? "" : DecodeBytes(decoder, Tokenizer.TokenBytes(token));
            var (emit, stopped) = stops.Push(text);
            if (emit.Length > 0 || Tokenizer is null) yield return new GeneratedToken(token, emit);
            if (stopped) yield break;
            next = [token];
        }
        string rest = stops.Flush();
        if (rest.Length > 0) yield return new GeneratedToken(-1, rest);
    }

    /// <summary>Runs a chunk of new tokens of one sequence and leaves the last position's logits in <paramref name="logits"/>.</summary>
    void RunChunk(Sequence sequence, ReadOnlySpan<int> tokens, BatchLayout batch, Span<float> logits)
    {
        int p = sequence.Length;
        sequence.Append(tokens);
        batch.Clear();
        batch.Add(p, tokens.Length, sequence.BlockTable);
        Span<int> lastRow = [tokens.Length - 1];
        Transformer.Forward(batch, tokens, Pool.Storage, lastRow, logits);
        sequence.MarkComputed(sequence.Length);
    }

    static string DecodeBytes(Decoder decoder, byte[] bytes)
    {
        var chars = new char[Encoding.UTF8.GetMaxCharCount(bytes.Length)];
        int n = decoder.GetChars(bytes, 0, bytes.Length, chars, 0, flush: false);
        return new string(chars, 0, n);
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
        _lock.Wait(cancellationToken);
        try
        {
            var batch = new BatchLayout(Pool.BlockSize);
            double nll = 0; int scored = 0;
            for (int start = 0; start < tokens.Length - 1; start += w)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var chunk = tokens.Slice(start, Math.Min(w, tokens.Length - start));
                if (chunk.Length < 2) break;
                using var sequence = new Sequence(Pool);
                sequence.Append(chunk);
                batch.Clear();
                batch.Add(0, chunk.Length, sequence.BlockTable);
                var rows = Enumerable.Range(0, chunk.Length - 1).ToArray();
                var logits = new float[(long)rows.Length * Config.Vocab];
                Transformer.Forward(batch, chunk, Pool.Storage, rows, logits);
                for (int i = 0; i < rows.Length; i++)
                    nll -= Sampler.LogProbability(logits.AsSpan(i * Config.Vocab, Config.Vocab), chunk[i + 1]);
                scored += rows.Length;
                progress?.Report((float)Math.Min(1, (start + chunk.Length) / (double)tokens.Length));
            }
            return new PerplexityResult(scored, nll / scored);
        }
        finally { _lock.Release(); }
    }

    public void Dispose()
    {
        Pool.Dispose();
        Transformer.Dispose();
        if (_ownsBackend) Backend.Dispose();
        _lock.Dispose();
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
