using System.Text;
using System.Text.Json;

namespace Ponder.Evaluation.Study;

/// <summary>
/// An append-only JSONL file of entries with string keys: what a study has already computed, so a rerun (after an
/// interruption, or with another part of the study changed) recomputes only what is missing. A later line with the
/// same key replaces an earlier one. Thread-safe.
/// </summary>
public sealed class JsonlCache<T> where T : class
{
    readonly string _path;
    readonly Func<T, string> _key;
    readonly Dictionary<string, T> _entries = new(StringComparer.Ordinal);
    readonly Lock _sync = new();

    /// <summary>Opens (or starts) the cache at <paramref name="path"/>; a bad line throws naming the file, the line and <paramref name="what"/>.</summary>
    public JsonlCache(string path, Func<T, string> key, string what)
    {
        _path = path; _key = key;
        if (!File.Exists(path)) return;
        int line = 0;
        foreach (var text in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            try
            {
                var e = JsonSerializer.Deserialize<T>(text, JsonOptions) ?? throw new JsonException("null entry");
                _entries[key(e)] = e;
            }
            catch (Exception e) when (e is JsonException or ArgumentException or NotSupportedException)
            {
                throw new InvalidDataException($"{path}:{line}: not {what} ({e.Message})", e);
            }
        }
    }

    /// <summary>Entries in the cache.</summary>
    public int Count { get { lock (_sync) return _entries.Count; } }

    /// <summary>The entry stored under <paramref name="key"/>, if any.</summary>
    public bool TryGet(string key, out T entry)
    {
        lock (_sync) return _entries.TryGetValue(key, out entry!);
    }

    /// <summary>Stores an entry and appends it to the file at once (an interrupted run keeps everything finished before).</summary>
    public void Add(T entry)
    {
        string line = JsonSerializer.Serialize(entry, JsonOptions) + "\n";
        lock (_sync)
        {
            _entries[_key(entry)] = entry;
            File.AppendAllText(_path, line, Encoding.UTF8);
        }
    }

    /// <summary>Creates the cache file's folder.</summary>
    public void EnsureDirectory()
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(_path));
        if (dir is not null) Directory.CreateDirectory(dir);
    }

    static readonly JsonSerializerOptions JsonOptions = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
}
