using System.Text;
using Ponder.Evaluation.Study;

namespace Ponder.Training.Tests.Study;

/// <summary>The study cache survives a writer killed mid-line, refuses a second process, and keeps concurrent writers' lines whole.</summary>
public sealed class JsonlCacheTests : IDisposable
{
    public sealed record Entry(string Key, int Value, string Pad);

    readonly string _dir = Path.Combine(Path.GetTempPath(), "ponder-jsonl-" + Guid.NewGuid().ToString("N"));
    string CachePath => Path.Combine(_dir, "cache.jsonl");

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    JsonlCache<Entry> Open(List<string>? warnings = null) => new(CachePath, e => e.Key, "an entry", m => warnings?.Add(m));

    [Fact]
    public void ATornLastLineIsDroppedWithAWarningAndLaterAppendsStartOnAFreshLine()
    {
        var cache = Open();
        cache.Add(new Entry("a", 1, ""));
        cache.Add(new Entry("b", 2, ""));
        long whole = new FileInfo(CachePath).Length;
        // A writer killed mid-write: part of a line, no line end.
        File.AppendAllText(CachePath, """{"Key":"c","Val""");

        var warnings = new List<string>();
        var reopened = Open(warnings);
        Assert.Equal(2, reopened.Count);
        Assert.Single(warnings);
        Assert.Contains("cache.jsonl:3", warnings[0]);
        Assert.Equal(whole, new FileInfo(CachePath).Length);
        Assert.False(reopened.TryGet("c", out _));

        reopened.Add(new Entry("c", 3, ""));
        warnings.Clear();
        var again = Open(warnings);
        Assert.Empty(warnings);
        Assert.Equal(3, again.Count);
        Assert.True(again.TryGet("c", out var c) && c.Value == 3);
    }

    [Fact]
    public void ABadLineBeforeTheLastIsStillAnErrorNamingIt()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(CachePath, "{\"Key\":\"a\",\"Value\":1,\"Pad\":\"\"}\nnot json\n{\"Key\":\"b\",\"Value\":2,\"Pad\":\"\"}\n");
        var e = Assert.Throws<InvalidDataException>(() => Open());
        Assert.Contains("cache.jsonl:2", e.Message);
    }

    [Fact]
    public void ACacheAnotherProcessHoldsIsRefused()
    {
        Directory.CreateDirectory(_dir);
        // What another sweep's process holds: the OS lock on the lock file.
        using var other = new FileStream(CachePath + ".lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        var e = Assert.Throws<IOException>(() => Open());
        Assert.Contains("run one sweep per cache folder at a time", e.Message);
        Assert.False(File.Exists(CachePath));
    }

    [Fact]
    public void TwoWritersAtOnceLoseAndTearNoLine()
    {
        var first = Open();
        var second = Open();
        const int perWriter = 400;
        // Long lines (~4 KB) make an interleaved write visible as a line that does not parse.
        string pad = new('x', 4000);
        Parallel.For(0, 2, w =>
        {
            var cache = w == 0 ? first : second;
            for (int i = 0; i < perWriter; i++) cache.Add(new Entry($"{w}-{i}", i, pad));
        });
        var warnings = new List<string>();
        var merged = Open(warnings);
        Assert.Empty(warnings);
        Assert.Equal(2 * perWriter, merged.Count);
        Assert.Equal(2 * perWriter, File.ReadAllLines(CachePath, Encoding.UTF8).Length);
    }

    [Fact]
    public void A_cache_written_with_a_byte_order_mark_by_earlier_versions_loads()
    {
        string dir = Directory.CreateTempSubdirectory("ponder-bom-").FullName;
        try
        {
            string path = Path.Combine(dir, "records.jsonl");
            File.WriteAllText(path, "{\"Key\":\"a\",\"Record\":null}\n", new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: true));
            Assert.Equal(0xEF, File.ReadAllBytes(path)[0]);
            var cache = new JsonlCache<StudyRunner.CachedRecord>(path, r => r.Key, "a sweep record");
            Assert.True(cache.TryGet("a", out _));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
