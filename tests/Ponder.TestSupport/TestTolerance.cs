namespace Ponder.TestSupport;

/// <summary>The worst element of a comparison, for messages: where, what was expected, what came.</summary>
/// <param name="MaxAbs">Largest |expected - actual|.</param>
/// <param name="MaxRel">Largest |expected - actual| / max(|expected|, floor) (floor = the absolute tolerance).</param>
/// <param name="WorstIndex">Flat index of the element furthest beyond tolerance (or with the largest error when all pass).</param>
/// <param name="Expected">The expected value there.</param>
/// <param name="Actual">The actual value there.</param>
public sealed record Comparison(double MaxAbs, double MaxRel, long WorstIndex, double Expected, double Actual)
{
    /// <inheritdoc />
    public override string ToString() =>
        $"max abs diff {MaxAbs:G4}, max rel diff {MaxRel:G4}; worst at index {WorstIndex}: expected {Expected:G9}, actual {Actual:G9}";
}

/// <summary>Thrown when values differ beyond tolerance; test frameworks report it as a failure.</summary>
public sealed class ToleranceException(string message) : Exception(message);

/// <summary>Element-wise comparisons with a combined tolerance |e - a| &lt;= abs + rel * |e|.</summary>
public static class TestTolerance
{
    /// <summary>Compares flat sequences; throws <see cref="ArgumentException"/> when the lengths differ.</summary>
    public static Comparison Compare(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, double abs = 0, double rel = 0)
    {
        if (expected.Length != actual.Length)
            throw new ArgumentException($"expected {expected.Length} values, got {actual.Length}", nameof(actual));
        double maxAbs = 0, maxRel = 0, worstExcess = double.NegativeInfinity;
        long worst = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i], diff = Math.Abs(e - a);
            if (double.IsNaN(diff)) diff = double.PositiveInfinity; // NaN must never pass
            maxAbs = Math.Max(maxAbs, diff);
            maxRel = Math.Max(maxRel, diff / Math.Max(Math.Abs(e), Math.Max(abs, 1e-300)));
            double excess = diff - (abs + rel * Math.Abs(e));
            if (excess > worstExcess) { worstExcess = excess; worst = i; }
        }
        return worst < 0 ? new Comparison(0, 0, -1, 0, 0) : new Comparison(maxAbs, maxRel, worst, expected[(int)worst], actual[(int)worst]);
    }

    /// <summary>Throws <see cref="ToleranceException"/> (naming <paramref name="what"/>, the worst index, expected and actual) unless every element is within abs + rel * |expected|.</summary>
    public static Comparison AssertClose(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, double abs, double rel, string what)
    {
        var c = Compare(expected, actual, abs, rel);
        if (c.WorstIndex >= 0)
        {
            double e = c.Expected, diff = Math.Abs(e - c.Actual);
            if (!(diff <= abs + rel * Math.Abs(e)))
                throw new ToleranceException($"{what}: beyond tolerance (abs {abs:G3}, rel {rel:G3}): {c}");
        }
        return c;
    }

    /// <summary><see cref="AssertClose(ReadOnlySpan{double}, ReadOnlySpan{double}, double, double, string)"/> for f32 actual values.</summary>
    public static Comparison AssertClose(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double abs, double rel, string what)
        => AssertClose(expected, ToDouble(actual), abs, rel, what);

    /// <summary>Compares a [rows, cols] reference with actual values; the message gives the worst (row, col).</summary>
    public static Comparison AssertClose(double[,] expected, double[,] actual, double abs, double rel, string what)
    {
        if (expected.GetLength(0) != actual.GetLength(0) || expected.GetLength(1) != actual.GetLength(1))
            throw new ArgumentException($"{what}: expected [{expected.GetLength(0)}, {expected.GetLength(1)}], got [{actual.GetLength(0)}, {actual.GetLength(1)}]", nameof(actual));
        int cols = expected.GetLength(1);
        var c = Compare(Flatten(expected), Flatten(actual), abs, rel);
        if (c.WorstIndex >= 0 && !(Math.Abs(c.Expected - c.Actual) <= abs + rel * Math.Abs(c.Expected)))
            throw new ToleranceException($"{what}: beyond tolerance (abs {abs:G3}, rel {rel:G3}) at [{c.WorstIndex / cols}, {c.WorstIndex % cols}]: {c}");
        return c;
    }

    /// <summary>Row-major copy of a 2-D array.</summary>
    public static double[] Flatten(double[,] a)
    {
        var flat = new double[a.Length];
        int i = 0;
        foreach (double v in a) flat[i++] = v;
        return flat;
    }

    /// <summary>Widens f32 values.</summary>
    public static double[] ToDouble(ReadOnlySpan<float> a)
    {
        var d = new double[a.Length];
        for (int i = 0; i < a.Length; i++) d[i] = a[i];
        return d;
    }
}
