namespace Ponder.Evaluation.Tasks;

/// <summary>
/// xoshiro256** seeded through SplitMix64 (Blackman and Vigna): the same sequence on every machine and .NET
/// version, unlike <see cref="System.Random"/>, whose algorithm is unspecified. The state can be saved and restored.
/// </summary>
public sealed class DeterministicRandom
{
    ulong s0, s1, s2, s3;

    /// <summary>Seeds the four state words from <paramref name="seed"/> with SplitMix64.</summary>
    public DeterministicRandom(ulong seed)
    {
        ulong x = seed;
        s0 = SplitMix64(ref x); s1 = SplitMix64(ref x); s2 = SplitMix64(ref x); s3 = SplitMix64(ref x);
    }

    /// <summary>A generator whose stream depends on both <paramref name="seed"/> and <paramref name="stream"/> (e.g. a step number).</summary>
    public static DeterministicRandom ForStream(ulong seed, ulong stream)
    {
        ulong x = seed ^ (stream * 0xD1B54A32D192ED03UL);
        return new DeterministicRandom(SplitMix64(ref x));
    }

    /// <summary>The four state words, for checkpoints.</summary>
    public ulong[] State
    {
        get => [s0, s1, s2, s3];
        set
        {
            if (value is not { Length: 4 }) throw new ArgumentException("State must have 4 words", nameof(value));
            if ((value[0] | value[1] | value[2] | value[3]) == 0) throw new ArgumentException("State must not be all zero", nameof(value));
            (s0, s1, s2, s3) = (value[0], value[1], value[2], value[3]);
        }
    }

    static ulong SplitMix64(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(s1 * 5, 7) * 9;
        ulong t = s1 << 17;
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3;
        s2 ^= t;
        s3 = ulong.RotateLeft(s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform in [0, 1) with 24 random bits.</summary>
    public float NextSingle() => (NextUInt64() >> 40) * (1.0f / (1 << 24));

    /// <summary>Uniform integer in [<paramref name="minInclusive"/>, <paramref name="maxExclusive"/>) (Lemire's method, unbiased).</summary>
    public int Next(int minInclusive, int maxExclusive)
    {
        if (maxExclusive <= minInclusive) throw new ArgumentOutOfRangeException(nameof(maxExclusive), $"empty range [{minInclusive}, {maxExclusive})");
        ulong range = (ulong)((long)maxExclusive - minInclusive);
        while (true)
        {
            UInt128 m = (UInt128)NextUInt64() * range;
            ulong low = (ulong)m;
            if (low >= range || low >= (0 - range) % range)
                return (int)((long)minInclusive + (long)(ulong)(m >> 64));
        }
    }

    /// <summary>A standard normal sample (Box-Muller; one of the pair is discarded so the state advances predictably).</summary>
    public double NextGaussian()
    {
        double u1 = 1.0 - NextDouble(), u2 = NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }
}
