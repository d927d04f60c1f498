using System.Diagnostics;

namespace Ponder.Tests.Hosting;

/// <summary>
/// Packs Ponder and Ponder.Kernels (once, from this build's outputs, with a unique pre-release version so no cached
/// package is reused), then restores, builds and runs a fresh console project in a temp folder that references them
/// through a local feed plus the normal one: a broken package (missing dependency, missing dll) fails here.
/// </summary>
[Trait("Category", "Package")]
public sealed class PackageConsumptionTests
{
    static readonly TimeSpan StepLimit = TimeSpan.FromSeconds(150);

    const string Program = """
        using Microsoft.Extensions.AI;
        using Ponder;
        using Ponder.Hosting;
        using Ponder.Models;
        using Ponder.Sampling;

        var (config, tensors) = RandomModels.Create("tiny", seed: 1);
        await using var model = PonderModel.Load(new HostTensorSource(config, tensors, "random:tiny"), tokenizer: null, new ModelOptions { Threads = 1 });
        using var request = model.CreateRequest();
        int count = 0;
        await foreach (var t in model.GenerateAsync([1, 2, 3], new SamplingOptions { Temperature = 0, MaxNewTokens = 5, StopAtEos = false }, request)) count++;
        IChatClient? unused = null;
        Console.WriteLine($"tokens={count} flops={request.Report().Flops.Total} kernels={typeof(Ponder.Kernels.Ilgpu.IlgpuBackend).Name} meter={PonderTelemetry.Name} chat={unused is null}");
        """;

    [Fact]
    public async Task PackedPackagesRestoreBuildAndRunInAFreshProject()
    {
        string root = RepoRoot();
        string configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}") ? "Debug" : "Release";
        string version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
        string work = Directory.CreateTempSubdirectory("ponder-package-").FullName;
        string feed = Path.Combine(work, "feed"), app = Path.Combine(work, "app");
        try
        {
            foreach (var project in new[] { "src/Ponder/Ponder.csproj", "kernels/Ponder.Kernels/Ponder.Kernels.csproj" })
            {
                bool built = File.Exists(Path.Combine(root, Path.GetDirectoryName(project)!, "bin", configuration, "net10.0", Path.GetFileNameWithoutExtension(project) + ".dll"));
                await Dotnet(root, $"pack {project} -c {configuration} {(built ? "--no-build" : "")} -p:Version={version} -o \"{feed}\" --disable-build-servers");
            }
            Assert.True(File.Exists(Path.Combine(feed, $"Ponder.{version}.nupkg")));
            Assert.True(File.Exists(Path.Combine(feed, $"Ponder.Kernels.{version}.nupkg")));

            Directory.CreateDirectory(app);
            File.WriteAllText(Path.Combine(app, "Consumer.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <Nullable>enable</Nullable>
                    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                    <WarningsNotAsErrors>NU1603;NU1901;NU1902;NU1903;NU1904</WarningsNotAsErrors>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="Ponder" Version="{version}" />
                    <PackageReference Include="Ponder.Kernels" Version="{version}" />
                  </ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(app, "Program.cs"), Program);
            // The local feed plus whatever sources the machine already uses (no <clear/>).
            File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <add key="ponder-local" value="{feed}" />
                  </packageSources>
                </configuration>
                """);
            // Directory.Build.props / Directory.Packages.props of the temp folder's parents must not leak in.
            File.WriteAllText(Path.Combine(work, "Directory.Build.props"), "<Project />");
            File.WriteAllText(Path.Combine(work, "Directory.Packages.props"), "<Project />");

            await Dotnet(app, "build -c Release --disable-build-servers");
            string output = await Dotnet(app, "bin/Release/net10.0/Consumer.dll", run: true);
            Assert.Contains("tokens=5", output);
            Assert.Contains("kernels=IlgpuBackend", output);
            Assert.Matches(@"flops=[1-9]\d*", output);
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
            // Keep the machine's package cache free of test versions.
            string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            foreach (var id in new[] { "ponder", "ponder.kernels" })
                try { Directory.Delete(Path.Combine(cache, id, version), recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no Engine.sln above {AppContext.BaseDirectory}");
    }

    static async Task<string> Dotnet(string directory, string arguments, bool run = false)
    {
        var info = new ProcessStartInfo("dotnet", arguments)
        {
            WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(StepLimit);
        try { await process.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"'dotnet {arguments}' in {directory} ran past {StepLimit.TotalSeconds} s");
        }
        string output = await stdout + await stderr;
        Assert.True(process.ExitCode == 0, $"'dotnet {arguments}' in {directory} exited {process.ExitCode}{(run ? "" : " (build)")}:\n{output}");
        return output;
    }
}
