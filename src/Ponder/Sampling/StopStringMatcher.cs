namespace Ponder.Sampling;

/// <summary>
/// Streams text while watching for stop strings: text that could still be the start of a stop string is held back
/// until it can no longer be, so a stop string is never emitted, even when it is split across tokens.
/// </summary>
public sealed class StopStringMatcher(IReadOnlyList<string> stops)
{
    readonly System.Text.StringBuilder _pending = new();

    /// <summary>Adds decoded text; returns what can be emitted now and whether a stop string was reached.</summary>
    public (string Emit, bool Stopped) Push(string text)
    {
        if (stops.Count == 0) return (text, false);
        _pending.Append(text);
        string s = _pending.ToString();
        int first = -1;
        foreach (var stop in stops)
        {
            int i = s.IndexOf(stop, StringComparison.Ordinal);
            if (i >= 0 && (first < 0 || i < first)) first = i;
        }
        if (first >= 0) { _pending.Clear(); return (s[..first], true); }
        // Hold back the longest suffix that is a prefix of some stop string.
        int hold = 0;
        foreach (var stop in stops)
            for (int len = Math.Min(stop.Length - 1, s.Length); len > hold; len--)
                if (string.CompareOrdinal(s, s.Length - len, stop, 0, len) == 0) { hold = len; break; }
        _pending.Clear().Append(s, s.Length - hold, hold);
        return (s[..^hold], false);
    }

    /// <summary>Whatever is held back, at the end of generation.</summary>
    public string Flush()
    {
        string s = _pending.ToString();
        _pending.Clear();
        return s;
    }
}
