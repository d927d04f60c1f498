using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Ponder.Hosting;
using Ponder.Models.Safetensors;
using Ponder.TestSupport;
using Ponder.Tests.Tokenization;
using Ponder.Tokenization;

namespace Ponder.Tests.Hosting;

/// <summary>services.AddPonder: the model and its IChatClient from a path, on first use or at once, logging through the container.</summary>
public sealed class DependencyInjectionTests
{
    static TempFolder ModelFolder(out string path, Models.ModelConfig? config = null, int seed = 11)
    {
        var folder = new TempFolder();
        var c = config ?? HostingTestModels.PolicyConfig;
        SafetensorsWriter.WriteFolder(folder.Path, c, RandomModel.Create(c, seed));
        TokenizerFiles.WriteByteLevel(folder.File("tokenizer.json"), [.. ByteTokenizer.PonderSpecials.OrderBy(kv => kv.Value).Select(kv => kv.Key)]);
        path = folder.Path;
        return folder;
    }

    [Fact]
    public async Task LazyRegistrationLoadsOnFirstUseLogsThroughTheContainerAndAnswers()
    {
        using var folder = ModelFolder(out string path);
        using var prmFolder = ModelFolder(out string prmPath, HostingTestModels.PrmConfig, 12);
        var logs = new RecordingLoggerFactory();
        var services = new ServiceCollection().AddSingleton<ILoggerFactory>(logs);
        services.AddPonder(path, o =>
        {
            o.PrmPath = prmPath;
            o.Model = new ModelOptions { Threads = 1, KvCacheTokens = 1024, BlockSize = 8 };
            o.ChatClient = HostingTestModels.ChatMlFallback;
        });
        Assert.Empty(logs.Messages); // nothing loaded yet
        PonderModel model;
        await using (var provider = services.BuildServiceProvider())
        {
            var chat = provider.GetRequiredService<IChatClient>();
            Assert.Same(provider.GetRequiredService<PonderChatClient>(), chat);
            model = provider.GetRequiredService<PonderModel>();
            Assert.Same(model, chat.GetService(typeof(PonderModel)));
            Assert.Contains(logs.Messages, m => m.StartsWith("Loaded " + path, StringComparison.Ordinal));
            Assert.Contains(logs.Messages, m => m.StartsWith("Loaded " + prmPath, StringComparison.Ordinal));

            // The registered client answers as a hand-built one over the same model does.
            var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 6 };
            ChatMessage[] messages = [new(ChatRole.User, "Q: 2+3")];
            using var direct = model.AsChatClient(HostingTestModels.ChatMlFallback);
            Assert.Equal((await direct.GetResponseAsync(messages, options)).Text, (await chat.GetResponseAsync(messages, options)).Text);
            var beam = await chat.GetResponseAsync(messages, new ChatOptions
            {
                Seed = 3, AdditionalProperties = new() { ["strategy"] = "beam", ["n"] = 2, ["max_step_tokens"] = 4, ["max_rounds"] = 2 },
            });
            Assert.True(Assert.IsType<CompletionReport>(beam.AdditionalProperties!["ponder"]).Flops.Flops.PrmHead > 0, "the registered PRM scored the beams");
        }
        // The container owned the model: disposing the container disposed it.
        Assert.Throws<ObjectDisposedException>(() => model.Perplexity([1, 2, 3]));
    }

    [Fact]
    public void ImmediateRegistrationFailsAtStartupNamingTheBadPath()
    {
        string missing = Path.Combine(Path.GetTempPath(), "ponder-no-such-model-" + Guid.NewGuid().ToString("N"));
        var e = Assert.ThrowsAny<Exception>(() => new ServiceCollection().AddPonder(missing, o => o.LoadImmediately = true));
        Assert.Contains(missing, e.Message);
        Assert.Throws<ArgumentException>(() => new ServiceCollection().AddPonder(_ => { }));
    }

    [Fact]
    public void ImmediateRegistrationServesTheModelItLoaded()
    {
        using var folder = ModelFolder(out string path);
        var services = new ServiceCollection().AddPonder(path, o =>
        {
            o.LoadImmediately = true;
            o.Model = new ModelOptions { Threads = 1, KvCacheTokens = 256, BlockSize = 8 };
            o.ChatClient = HostingTestModels.ChatMlFallback;
        });
        using var provider = services.BuildServiceProvider();
        Assert.Equal(path, provider.GetRequiredService<PonderModel>().Location);
        Assert.IsType<PonderChatClient>(provider.GetRequiredService<IChatClient>());
    }

    sealed class RecordingLoggerFactory : ILoggerFactory
    {
        public List<string> Messages { get; } = [];
        public ILogger CreateLogger(string categoryName) => new Logger(this);
        public void AddProvider(ILoggerProvider provider) { }
        public void Dispose() { }

        sealed class Logger(RecordingLoggerFactory owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
            public bool IsEnabled(LogLevel logLevel) => true;
            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                lock (owner.Messages) owner.Messages.Add(formatter(state, exception));
            }
        }
    }
}
