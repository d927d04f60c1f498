using System.Text;

namespace Ponder.Tests.Gemm;

/// <summary>
/// Naive float64 GEMM and the comparison every GEMM test uses.
/// Tolerance per element: |actual - expected| &lt;= 4 * sqrt(k + 2) * eps32 * (|alpha| * sum_p |op(A)[i,p] * op(B)[p,j]| + |beta * C0[i,j]|) + 1e-30,
/// the probabilistic rounding-error bound of a length-k fp32 dot product (eps32 = 2^-24) with a factor 4 of headroom.
/// Elements outside the m x n window of C (leading-dimension padding, tails) must keep their exact bits.
/// </summary>
internal static class GemmReference
{
    public const double Eps32 = 1.0 / (1 << 24);

    public static float[] Random(int count, int seed)
    {
        var rng = new Random(seed);
        var x = new float[count];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    /// <summary>Expected C and per-element error bound for C = alpha * op(A) · op(B) + beta * C0.</summary>
    public static (double[] Expected, double[] Bound) Compute(bool transA, bool transB, int m, int n, int k, float alpha,
        float[] a, int lda, float[] b, int ldb, float beta, float[] c0, int ldc)
    {
        var expected = new double[m * n];
        var bound = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0, abs = 0;
                for (int p = 0; p < k; p++)
                {
                    double prod = (double)(transA ? a[p * lda + i] : a[i * lda + p]) * (transB ? b[j * ldb + p] : b[p * ldb + j]);
                    sum += prod;
                    abs += Math.Abs(prod);
                }
                double cPart = beta == 0 ? 0 : (double)beta * c0[i * ldc + j];
                expected[i * n + j] = alpha * sum + cPart;
                bound[i * n + j] = 4 * Math.Sqrt(k + 2) * Eps32 * (Math.Abs(alpha) * abs + Math.Abs(cPart)) + 1e-30;
            }
        return (expected, bound);
    }

    /// <summary>
    /// Fails with the worst element (index, expected, actual, bound) when any element of the window is off, and with the
    /// first changed element outside the window when the GEMM wrote where it must not.
    /// </summary>
    public static void AssertClose(string what, double[] expected, double[] bound, float[] actual, float[] before, int m, int n, int ld)
    {
        int worst = -1;
        double worstRatio = 1;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double err = Math.Abs(actual[i * ld + j] - expected[i * n + j]);
                double ratio = double.IsNaN(err) ? double.PositiveInfinity : err / bound[i * n + j];
                if (ratio > worstRatio) { worstRatio = ratio; worst = i * n + j; }
            }
        if (worst >= 0)
        {
            int i = worst / n, j = worst % n;
            Assert.Fail(new StringBuilder().Append(what).Append(": worst element [").Append(i).Append(", ").Append(j)
                .Append("] expected ").Append(expected[worst].ToString("R")).Append(" actual ").Append(actual[i * ld + j].ToString("R"))
                .Append(" tolerance ").Append(bound[worst].ToString("G3")).Append(" (").Append(worstRatio.ToString("G3")).Append("x)").ToString());
        }
        for (int idx = 0; idx < actual.Length; idx++)
        {
            bool inside = idx / ld < m && idx % ld < n;
            if (!inside && BitConverter.SingleToInt32Bits(actual[idx]) != BitConverter.SingleToInt32Bits(before[idx]))
                Assert.Fail($"{what}: element {idx} (row {idx / ld}, column {idx % ld}) outside the {m} x {n} window was written: {before[idx]} -> {actual[idx]}");
        }
    }
}
