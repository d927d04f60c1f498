namespace Ponder.Sampling;

/// <summary>
/// xoshiro256** seeded by SplitMix64: a small, fast generator with a published algorithm, so a seed gives the same
/// stream on every platform and .NET version (System.Random's algorithm is unspecified).
/// </summary>
public struct Rng
{
    ulong _s0, _s1, _s2, _s3;

    /// <summary>A stream whose four state words are expanded from <paramref name="seed"/> by SplitMix64.</summary>
    public Rng(ulong seed)
    {
        _s0 = SplitMix(ref seed); _s1 = SplitMix(ref seed); _s2 = SplitMix(ref seed); _s3 = SplitMix(ref seed);
    }

    /// <summary>The four state words, for checkpoints (never all zero).</summary>
    public ulong[] State
    {
        readonly get => [_s0, _s1, _s2, _s3];
        set
        {
            if (value is not { Length: 4 }) throw new ArgumentException("state must have 4 words", nameof(value));
            if ((value[0] | value[1] | value[2] | value[3]) == 0) throw new ArgumentException("state must not be all zero", nameof(value));
            (_s0, _s1, _s2, _s3) = (value[0], value[1], value[2], value[3]);
        }
    }

    static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3; _s2 ^= t; _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform integer in [0, n).</summary>
    public int NextInt(int n)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        return (int)(NextDouble() * n);
    }

    /// <summary>A seed for the i-th child stream (e.g. the i-th sample of a best-of-N), independent of the others.</summary>
    public static ulong Derive(ulong seed, ulong index)
    {
        ulong x = seed ^ (index * 0xD1B54A32D192ED03UL);
        return SplitMix(ref x);
    }
}
