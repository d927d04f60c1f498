using Ponder.Sampling;

namespace Ponder.Tasks;

/// <summary>
/// The engine's <see cref="Rng"/> (xoshiro256** seeded through SplitMix64) with the draws the task generator and the
/// trainer need: the same sequence on every machine and .NET version. The state can be saved and restored.
/// </summary>
public sealed class DeterministicRandom
{
    Rng _rng;

    /// <summary>Seeds the four state words from <paramref name="seed"/> with SplitMix64.</summary>
    public DeterministicRandom(ulong seed) => _rng = new Rng(seed);

    /// <summary>A generator whose stream depends on both <paramref name="seed"/> and <paramref name="stream"/> (e.g. a step number).</summary>
    public static DeterministicRandom ForStream(ulong seed, ulong stream) => new(Rng.Derive(seed, stream));

    /// <summary>The four state words, for checkpoints.</summary>
    public ulong[] State
    {
        get => _rng.State;
        set => _rng.State = value;
    }

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64() => _rng.NextUInt64();

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
