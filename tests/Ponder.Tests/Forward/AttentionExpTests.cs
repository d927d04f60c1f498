using System.Runtime.Intrinsics;
using Ponder.Backends.Cpu.Attention;

namespace Ponder.Tests.Forward;

/// <summary>The attention kernel's own vector exp against the float64 exp, on the range it is used for (x ≤ 0).</summary>
public sealed class AttentionExpTests
{
    [Fact]
    public void ExpIsWithinTwoUlpOnItsRangeAndExactlyZeroBelowIt()
    {
        // Cody-Waite reduction plus a degree-5 minimax polynomial: Cephes states ~1 ulp for expf; allow 2 ulp
        // (2^-22 relative) for the reduction's rounding, which is what softmax weights can tolerate bitwise-free.
        var rng = new Random(3);
        double worst = 0;
        var xs = new float[8];
        for (int i = 0; i < 200_000; i++)
        {
            for (int l = 0; l < 8; l++) xs[l] = i < 8 ? -l * 1e-3f : -(float)(rng.NextDouble() * 87);
            var e = PagedAttention.Exp(Vector256.Create(xs));
            for (int l = 0; l < 8; l++)
            {
                double exact = Math.Exp(xs[l]);
                worst = Math.Max(worst, Math.Abs(e[l] - exact) / exact);
            }
        }
        Assert.True(worst <= Math.Pow(2, -22), $"worst relative error {worst:E3}");
        var edge = PagedAttention.Exp(Vector256.Create(0f, float.NegativeInfinity, -87.5f, -1000f, -1e-30f, -86.9f, -0.5f, -20f));
        Assert.Equal(1f, edge[0]);
        Assert.Equal(0f, edge[1]);
        Assert.Equal(0f, edge[2]);
        Assert.Equal(0f, edge[3]);
        Assert.Equal(1f, edge[4]);
        Assert.True(edge[5] > 0);
    }
}
