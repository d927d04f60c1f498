using Microsoft.AspNetCore.Builder;
using Ponder.Hosting;
using Ponder.Tests.Hosting;

namespace Ponder.Server.Tests;

/// <summary>A random policy (and PRM) served by Kestrel on a free loopback port for the whole test class.</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public PonderModel Policy { get; } = HostingTestModels.Policy(kvTokens: 8192, location: "random-policy");
    public PonderModel Prm { get; } = HostingTestModels.Prm();
    public CompletionEngine Engine { get; private set; } = null!;
    public WebApplication App { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;
    public Uri BaseAddress { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        // The PRM is the default and also registered by name, as `ponder serve --prm small=path` registers one.
        Engine = new CompletionEngine(Policy, Prm, namedPrms: new Dictionary<string, PonderModel> { ["small"] = Prm });
        App = PonderServer.Create(Engine, new PonderServerOptions { Urls = ["http://127.0.0.1:0"], AllowChatMlFallback = true });
        await App.StartAsync();
        BaseAddress = new Uri(App.Urls.Single());
        Assert.True(BaseAddress.IsLoopback);
        Http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
        Engine.Dispose();
        Prm.Dispose();
        Policy.Dispose();
    }
}
