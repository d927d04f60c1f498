using Ponder.Fuzz;

namespace Ponder.Server.Tests;

/// <summary>
/// Every input the fuzzers found a crash with (bench/fuzz.sh; an exception other than the parser's named domain error)
/// is kept in Data/fuzz/&lt;harness&gt;/ and replayed through the same harness code: each must now be refused with the
/// parser's domain exception naming the file or field. The seeds each harness starts from must load cleanly.
/// </summary>
public sealed class FuzzRegressionTests : IDisposable
{
    readonly string _work = Directory.CreateTempSubdirectory("ponder-fuzz-regress-").FullName;

    public void Dispose() => Directory.Delete(_work, recursive: true);

    static string DataDir => Path.Combine(AppContext.BaseDirectory, "Data", "fuzz");

    public static TheoryData<string, string> Inputs()
    {
        var data = new TheoryData<string, string>();
        foreach (string dir in Directory.GetDirectories(DataDir).Order(StringComparer.Ordinal))
            foreach (string file in Directory.GetFiles(dir).Order(StringComparer.Ordinal))
                data.Add(Path.GetFileName(dir), Path.GetFileName(file));
        return data;
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void A_fuzzer_finding_is_now_a_clean_named_refusal(string harness, string input)
    {
        Assert.Contains(harness, FuzzTargets.Names);
        // Run throws FuzzFindingException for anything but the domain error; null would mean the input was accepted.
        var refused = FuzzTargets.Run(harness, File.ReadAllBytes(Path.Combine(DataDir, harness, input)), _work);
        Assert.NotNull(refused);
        Assert.False(string.IsNullOrWhiteSpace(refused.Message));
    }

    [Fact]
    public void Every_harness_has_seeds_that_load_cleanly()
    {
        // WriteSeeds runs each seed through its harness and throws if one is refused or is a finding.
        foreach (string harness in FuzzTargets.Names)
        {
            string dir = Path.Combine(_work, "seeds-" + harness);
            FuzzTargets.WriteSeeds(harness, dir, RepoRoot());
            Assert.NotEmpty(Directory.GetFiles(dir));
        }
    }

    static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("no Engine.sln above " + AppContext.BaseDirectory);
    }
}
