using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Ponder;
using Ponder.Hosting;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>How <see cref="PonderServiceCollectionExtensions.AddPonder(IServiceCollection, Action{PonderServiceOptions})"/> loads and serves a model.</summary>
public sealed class PonderServiceOptions
{
    /// <summary>The model: a Hugging Face folder or a GGUF file (required).</summary>
    public string? ModelPath { get; set; }
    /// <summary>Optional value-head PRM sharing the model's tokenizer (a folder or GGUF file), for searches that score steps.</summary>
    public string? PrmPath { get; set; }
    /// <summary>
    /// False (default): the model loads on first resolution, logging through the container's <see cref="ILoggerFactory"/>.
    /// True: it loads synchronously inside <c>AddPonder</c>, so a bad path fails at startup (it logs through
    /// <see cref="ModelOptions.Logger"/>, as the container does not exist yet).
    /// </summary>
    public bool LoadImmediately { get; set; }
    /// <summary>Backend, threads and KV cache of the model (and of the PRM). Its logger, if null, is the container's.</summary>
    public ModelOptions Model { get; set; } = new();
    /// <summary>The chat client's options (template, ChatML fallback, sampling, seed, model id). Its logger, if null, is the container's.</summary>
    public PonderChatClientOptions ChatClient { get; set; } = new();
}

/// <summary>Registers Ponder with a service collection.</summary>
public static class PonderServiceCollectionExtensions
{
    /// <summary>The service key of the PRM (<see cref="PonderServiceOptions.PrmPath"/>) as a keyed <see cref="PonderModel"/>.</summary>
    public const string PrmKey = "ponder.prm";

    /// <summary>
    /// Registers a <see cref="PonderModel"/> loaded from <see cref="PonderServiceOptions.ModelPath"/>, and over it a
    /// <see cref="PonderChatClient"/> that is also the <see cref="IChatClient"/>. All are singletons the container disposes.
    /// <code>
    ///   services.AddLogging().AddPonder(o => { o.ModelPath = "weights/policy-small"; o.PrmPath = "weights/prm-small"; });
    ///   var chat = provider.GetRequiredService&lt;IChatClient&gt;();
    /// </code>
    /// </summary>
    /// <exception cref="ArgumentException">No model path was given.</exception>
    public static IServiceCollection AddPonder(this IServiceCollection services, Action<PonderServiceOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new PonderServiceOptions();
        configure(options);
        if (string.IsNullOrWhiteSpace(options.ModelPath)) throw new ArgumentException("PonderServiceOptions.ModelPath is required", nameof(configure));
        string modelPath = options.ModelPath, prmPath = options.PrmPath ?? "";
        bool hasPrm = options.PrmPath is not null;

        ModelOptions ModelOptionsFor(IServiceProvider? sp) =>
            options.Model.Logger is not null || sp?.GetService<ILoggerFactory>() is not { } factory ? options.Model : options.Model with { Logger = factory.CreateLogger("Ponder") };
        static PonderModel Load(string path, ModelOptions modelOptions) =>
            PonderModel.LoadAsync(path, modelOptions).GetAwaiter().GetResult();

        if (options.LoadImmediately)
        {
            var model = Load(modelPath, ModelOptionsFor(null));
            PonderModel? prm = null;
            try { prm = hasPrm ? Load(prmPath, ModelOptionsFor(null)) : null; }
            catch { model.Dispose(); throw; }
            // Through factories, so the container owns and disposes them.
            services.TryAddSingleton(_ => model);
            if (prm is not null) services.TryAddKeyedSingleton(PrmKey, (_, _) => prm);
        }
        else
        {
            services.TryAddSingleton(sp => Load(modelPath, ModelOptionsFor(sp)));
            if (hasPrm) services.TryAddKeyedSingleton(PrmKey, (sp, _) => Load(prmPath, ModelOptionsFor(sp)));
        }
        services.TryAddSingleton(sp =>
        {
            var chat = options.ChatClient with
            {
                Prm = options.ChatClient.Prm ?? (hasPrm ? sp.GetRequiredKeyedService<PonderModel>(PrmKey) : null),
                Logger = options.ChatClient.Logger ?? sp.GetService<ILoggerFactory>()?.CreateLogger("Ponder.Hosting"),
            };
            return new PonderChatClient(sp.GetRequiredService<PonderModel>(), chat);
        });
        services.TryAddSingleton<IChatClient>(sp => sp.GetRequiredService<PonderChatClient>());
        return services;
    }

    /// <summary>Registers the model at <paramref name="modelPath"/> (see <see cref="AddPonder(IServiceCollection, Action{PonderServiceOptions})"/>).</summary>
    public static IServiceCollection AddPonder(this IServiceCollection services, string modelPath, Action<PonderServiceOptions>? configure = null) =>
        services.AddPonder(o => { o.ModelPath = modelPath; configure?.Invoke(o); });
}
