namespace Ponder.Cluster;

/// <summary>Chooses the silo a request goes to, and hears when it is done.</summary>
public interface IRequestRouter
{
    /// <summary>
    /// The silo for a request whose prompt text is <paramref name="text"/>, among <paramref name="silos"/> (live, non-empty),
    /// counted in flight until <see cref="Done"/>.
    /// </summary>
    string Choose(string text, IReadOnlyList<string> silos);

    /// <summary>The request sent to <paramref name="silo"/> finished (or failed).</summary>
    void Done(string silo);

    /// <summary>Forgets a silo that is gone: its prefixes no longer attract requests.</summary>
    void Forget(string silo);
}

/// <summary>
/// Prefix-affinity routing. Each silo's prefix index is mirrored approximately by the set of prompt prefixes routed to
/// it, at whole chunks of <c>chunkChars</c> characters (hashes of text[0..k*chunk], chained). A request goes to the silo
/// whose set holds its longest prefix, so requests sharing a system prompt or few-shot context land where those KV
/// blocks are cached; with no prefix match, or when that silo already has <c>saturation</c> requests in flight and
/// another has fewer, it goes to the least-loaded silo. Thread-safe.
/// </summary>
public sealed class PrefixAffinityRouter(int chunkChars = 64, int saturation = 8, int maxPrefixesPerSilo = 200_000) : IRequestRouter
{
    readonly Lock _sync = new();
    readonly Dictionary<string, Dictionary<ulong, long>> _prefixes = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _inFlight = new(StringComparer.Ordinal);
    long _clock;
    int _spread;

    /// <summary>Requests routed to the silo holding their longest prefix (the rest went least-loaded).</summary>
    public int AffinityHits { get; private set; }

    /// <inheritdoc />
    public string Choose(string text, IReadOnlyList<string> silos)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (silos is not { Count: > 0 }) throw new ArgumentException("no silo to route to", nameof(silos));
        var hashes = ChunkHashes(text, chunkChars);
        lock (_sync)
        {
            string? best = null;
            int bestMatch = 0;
            foreach (string silo in silos)
            {
                if (!_prefixes.TryGetValue(silo, out var set)) continue;
                int match = 0;
                while (match < hashes.Count && set.ContainsKey(hashes[match])) match++;
                if (match > bestMatch || match == bestMatch && match > 0 && Load(silo) < Load(best!)) { best = silo; bestMatch = match; }
            }
            int least = silos.Min(Load);
            if (best is not null && (Load(best) < saturation || least >= saturation)) AffinityHits++;
            else
            {
                // Least-loaded; ties spread in turn so cold prefixes do not all pile on the first silo.
                var candidates = silos.Where(s => Load(s) == least).ToList();
                best = candidates[_spread++ % candidates.Count];
            }
            _inFlight[best] = Load(best) + 1;
            Remember(best, hashes);
            return best;
        }
    }

    /// <inheritdoc />
    public void Done(string silo)
    {
        lock (_sync) if (_inFlight.TryGetValue(silo, out int n) && n > 0) _inFlight[silo] = n - 1;
    }

    /// <inheritdoc />
    public void Forget(string silo)
    {
        lock (_sync) { _prefixes.Remove(silo); _inFlight.Remove(silo); }
    }

    int Load(string silo) => _inFlight.GetValueOrDefault(silo);

    void Remember(string silo, List<ulong> hashes)
    {
        if (!_prefixes.TryGetValue(silo, out var set)) _prefixes[silo] = set = [];
        long now = ++_clock;
        foreach (ulong h in hashes) set[h] = now;
        if (set.Count > maxPrefixesPerSilo)
        {
            // The silo's own index evicts least recently used blocks; the mirror drops its oldest half the same way.
            long cut = set.Values.Order().ElementAt(set.Count / 2);
            foreach (var old in set.Where(kv => kv.Value <= cut).Select(kv => kv.Key).ToList()) set.Remove(old);
        }
    }

    /// <summary>Chained FNV-1a hashes of each whole chunk prefix of <paramref name="text"/>.</summary>
    static List<ulong> ChunkHashes(string text, int chunk)
    {
        var hashes = new List<ulong>(text.Length / chunk);
        ulong h = 14695981039346656037;
        for (int i = 0; i < text.Length; i++)
        {
            h = (h ^ text[i]) * 1099511628211;
            if ((i + 1) % chunk == 0) hashes.Add(h);
        }
        return hashes;
    }
}

/// <summary>Uniformly random routing with a seed: the baseline prefix affinity is measured against.</summary>
public sealed class RandomRouter(int seed) : IRequestRouter
{
    readonly Random _random = new(seed);

    /// <inheritdoc />
    public string Choose(string text, IReadOnlyList<string> silos)
    {
        if (silos is not { Count: > 0 }) throw new ArgumentException("no silo to route to", nameof(silos));
        lock (_random) return silos[_random.Next(silos.Count)];
    }

    /// <inheritdoc />
    public void Done(string silo) { }

    /// <inheritdoc />
    public void Forget(string silo) { }
}
