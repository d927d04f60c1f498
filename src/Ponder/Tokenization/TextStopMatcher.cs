namespace Ponder.Tokenization;

/// <summary>
/// Watches streamed text for stop strings. Text that could still be the start of a stop string is held back, so what
/// <see cref="Push"/> releases never contains any part of a stop string; when one appears, the text before it is
/// released and the match is reported. One instance per sequence.
/// </summary>
public sealed class TextStopMatcher
{
    private readonly string[] _stops;
    private string _held = "";

    /// <summary>Creates a matcher for the given non-empty stop strings.</summary>
    public TextStopMatcher(IEnumerable<string> stopStrings)
    {
        ArgumentNullException.ThrowIfNull(stopStrings);
        _stops = stopStrings.ToArray();
        if (_stops.Any(string.IsNullOrEmpty)) throw new ArgumentException("stop strings must be non-empty", nameof(stopStrings));
    }

    /// <summary>The stop string that matched, once <see cref="Stopped"/>.</summary>
    public string? MatchedStop { get; private set; }

    /// <summary>Whether a stop string has appeared (further input is ignored).</summary>
    public bool Stopped => MatchedStop is not null;

    /// <summary>Adds decoded text; returns the text that is now safe to emit.</summary>
    public string Push(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (Stopped || text.Length == 0) return "";
        string buffer = _held + text;
        int best = -1;
        foreach (string stop in _stops)
        {
            int at = buffer.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (best < 0 || at < best || (at == best && stop.Length > MatchedStop!.Length)))
            {
                best = at;
                MatchedStop = stop;
            }
        }
        if (best >= 0)
        {
            _held = "";
            return buffer[..best];
        }
        int hold = LongestSuffixThatStartsAStop(buffer);
        _held = buffer[^hold..];
        return buffer[..^hold];
    }

    /// <summary>Ends the stream: returns held-back text (it was not a stop string after all).</summary>
    public string Flush()
    {
        string text = Stopped ? "" : _held;
        _held = "";
        return text;
    }

    private int LongestSuffixThatStartsAStop(string buffer)
    {
        int longest = 0;
        foreach (string stop in _stops)
        {
            for (int len = Math.Min(stop.Length - 1, buffer.Length); len > longest; len--)
            {
                if (buffer.AsSpan(buffer.Length - len).SequenceEqual(stop.AsSpan(0, len)))
                {
                    longest = len;
                    break;
                }
            }
        }
        return longest;
    }
}
