using System.Text;
using System.Text.Json;

namespace Ponder.Evaluation.Study;

/// <summary>
/// An append-only JSONL file of entries with string keys: what a study has already computed, so a rerun (after an
/// interruption, or with another part of the study changed) recomputes only what is missing. A later line with the
/// same key replaces an earlier one. Thread-safe.
/// <para>
/// Crash-safe: each entry is one whole line written with one append (the file is opened for append, never
/// rewritten). A run killed mid-write leaves at most a torn last line; the next open drops it with a warning (its
/// work is redone) and cuts the file back to the last whole line, so later appends start on a fresh line. A bad line
/// that has its line end is not a crash's trace and still fails, naming the file and the line.
/// </para>
/// <para>
/// One sweep per cache: opening takes an exclusive lock on <c>{path}.lock</c> (an OS file lock, released when the
/// process ends, even by a crash), so a second process opening the same cache fails at once, naming the process that
/// holds it, instead of duplicating the first one's work or interleaving its lines. Caches on one path in one process
/// share the lock and write under one monitor.
/// </para>
/// </summary>
public sealed class JsonlCache<T> where T : class
{
    readonly string _path;
    readonly Func<T, string> _key;
    readonly Dictionary<string, T> _entries = new(StringComparer.Ordinal);
    readonly Lock _sync = new();
    readonly object _fileSync;

    // Lock files held by this process, by full cache path: the lock lives as long as the process.
    static readonly Dictionary<string, (FileStream Lock, object Sync)> Held = new(StringComparer.Ordinal);

    /// <summary>
    /// Opens (or starts) the cache at <paramref name="path"/> (creating its folder); a bad line throws naming the file,
    /// the line and <paramref name="what"/>, a torn last line is dropped with a warning to <paramref name="warn"/>
    /// (default: standard error), and a cache another process holds throws <see cref="IOException"/>.
    /// </summary>
    public JsonlCache(string path, Func<T, string> key, string what, Action<string>? warn = null)
    {
        _path = Path.GetFullPath(path); _key = key;
        _fileSync = Acquire(_path);
        lock (_fileSync) Load(what, warn ?? (m => Console.Error.WriteLine(m)));
    }

    /// <summary>The warning given when a torn last line was dropped on open; null when the file was whole.</summary>
    public string? RecoveryWarning { get; private set; }

    static object Acquire(string path)
    {
        lock (Held)
        {
            if (Held.TryGetValue(path, out var held)) return held.Sync;
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            string lockPath = path + ".lock";
            FileStream stream;
            try { stream = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
            catch (IOException e)
            {
                string holder = "another process";
                try { holder = "process " + File.ReadAllText(lockPath).Trim(); } catch (IOException) { } catch (UnauthorizedAccessException) { }
                throw new IOException($"{path} is in use by {holder} (lock {lockPath}): run one sweep per cache folder at a time", e);
            }
            stream.SetLength(0);
            byte[] pid = Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            stream.Write(pid);
            stream.Flush();
            Held[path] = (stream, new object());
            return Held[path].Sync;
        }
    }

    void Load(string what, Action<string> warn)
    {
        if (!File.Exists(_path)) return;
        byte[] bytes = File.ReadAllBytes(_path);
        // Caches written by earlier versions (a StreamWriter's UTF-8 encoding) begin with a byte-order mark.
        int start = bytes.AsSpan().StartsWith("\uFEFF"u8) ? 3 : 0, line = 0;
        while (start < bytes.Length)
        {
            line++;
            int end = Array.IndexOf(bytes, (byte)'\n', start);
            var text = bytes.AsSpan(start, (end < 0 ? bytes.Length : end) - start);
            string? problem = null;
            if (text.Trim(" \t\r"u8).IsEmpty) { }
            else if (end < 0) problem = "no line end";
            else
            {
                try
                {
                    var e = JsonSerializer.Deserialize<T>(text, JsonOptions) ?? throw new JsonException("null entry");
                    _entries[_key(e)] = e;
                }
                catch (Exception e) when (e is JsonException or ArgumentException or NotSupportedException or DecoderFallbackException)
                {
                    problem = e.Message;
                }
            }
            if (problem is not null)
            {
                // Each line is written whole with its line end in one append: only a last line without its end can be a
                // write cut short by a crash. A whole line that does not parse is damage, wherever it is.
                if (end >= 0) throw new InvalidDataException($"{_path}:{line}: not {what} ({problem})");
                RecoveryWarning = $"{_path}:{line}: dropped a torn last line ({problem}); its work will be redone";
                warn(RecoveryWarning);
                using var fs = new FileStream(_path, FileMode.Open, FileAccess.Write, FileShare.Read);
                fs.SetLength(start);
                return;
            }
            start = end + 1;
        }
    }

    /// <summary>Entries in the cache.</summary>
    public int Count { get { lock (_sync) return _entries.Count; } }

    /// <summary>The entry stored under <paramref name="key"/>, if any.</summary>
    public bool TryGet(string key, out T entry)
    {
        lock (_sync) return _entries.TryGetValue(key, out entry!);
    }

    /// <summary>Stores an entry and appends it to the file at once, as one whole line (an interrupted run keeps everything finished before).</summary>
    public void Add(T entry)
    {
        byte[] line = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(entry, JsonOptions) + "\n");
        lock (_sync) _entries[_key(entry)] = entry;
        lock (_fileSync)
        {
            // Append mode: every write lands at the end, whatever else was written since; one write call per line.
            using var fs = new FileStream(_path, FileMode.Append, FileAccess.Write, FileShare.Read, bufferSize: 1, FileOptions.None);
            fs.Write(line);
            fs.Flush(flushToDisk: false);
        }
    }

    /// <summary>Creates the cache file's folder (the constructor already has; kept for callers that ask).</summary>
    public void EnsureDirectory()
    {
        var dir = Path.GetDirectoryName(_path);
        if (dir is not null) Directory.CreateDirectory(dir);
    }

    static readonly JsonSerializerOptions JsonOptions = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
}
