using Ponder.Backends;
using Ponder.Kernels.Ilgpu;

namespace Ponder.Kernels.Tests;

/// <summary>F16 weights: converted on the device, widened in the GEMM/GEMV; reference uses the f16-rounded weights.</summary>
public abstract class MatMulF16Tests : MatMulTests
{
    IlgpuBackend Ilgpu => (IlgpuBackend)Backend;

    protected override DeviceWeight Upload(float[] w, int rows, int cols) => Ilgpu.UploadWeight(w, rows, cols, WeightPrecision.F16);
    protected override double RoundWeight(float w) => (double)(float)(System.Half)w;

    [Fact]
    public void HalfUploadMatchesDeviceConversion()
    {
        var w = Random(5 * 9, 30);
        Check(3, 5, 9, (data, rows, cols) => Ilgpu.UploadWeight(data.Select(x => (System.Half)x).ToArray(), rows, cols));
        using var weight = Ilgpu.UploadWeight(w, 5, 9, WeightPrecision.F16);
        Assert.Equal(5 * 9 * 2, weight.Bytes);
    }
}

public sealed class HalfBitsTests
{
    /// <summary>The device's f32 → f16 rounding agrees bit for bit with System.Half on edge cases and random values.</summary>
    [Fact]
    public void MatchesSystemHalf()
    {
        var values = new List<float> { 0f, -0f, 1f, -1f, 65504f, 65519.99f, 65520f, 1e9f, float.PositiveInfinity, float.NegativeInfinity, float.NaN,
            6.1035156e-5f, 6.1e-5f, 5.96e-8f, 2.98e-8f, 2.9802322e-8f, 3e-8f, 1e-10f, 1.0009766f, 1.00048828125f, 1.00146484375f, -2.5e-6f };
        var rng = new Random(40);
        for (int i = 0; i < 20000; i++) values.Add(BitConverter.Int32BitsToSingle(rng.Next()) * (rng.Next(2) == 0 ? 1 : -1));
        for (int i = 0; i < 20000; i++) values.Add((float)((rng.NextDouble() - 0.5) * Math.Pow(2, rng.Next(-30, 17))));
        foreach (float v in values)
        {
            ushort expected = BitConverter.HalfToUInt16Bits((System.Half)v), actual = Ilgpu.Kernels.HalfBits(v);
            if (float.IsNaN(v)) Assert.True(System.Half.IsNaN(BitConverter.UInt16BitsToHalf(actual)), "NaN must stay NaN");
            else Assert.True(expected == actual, $"{v:R}: expected 0x{expected:X4}, actual 0x{actual:X4}");
        }
    }
}

/// <summary>Softmax, log-softmax and argmax over logits rows (sampling support, not in IBackend).</summary>
public abstract class SamplingTests : BackendTest
{
    IlgpuBackend Ilgpu => (IlgpuBackend)Backend;

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 37)]
    [InlineData(2, 300)]
    public void SoftmaxAndLogSoftmaxAreStable(int n, int vocab)
    {
        var logits = Random(n * vocab, 31, 5f);
        logits[0] = 1000f; // would overflow exp without the max shift
        foreach (bool log in new[] { false, true })
        {
            using var t = Backend.Upload(logits, n, vocab);
            if (log) Ilgpu.LogSoftmax(t, n); else Ilgpu.Softmax(t, n);
            var expected = new double[n * vocab];
            for (int i = 0; i < n; i++)
            {
                var row = logits.Skip(i * vocab).Take(vocab).Select(x => (double)x).ToArray();
                double max = row.Max(), logSum = Math.Log(row.Sum(x => Math.Exp(x - max)));
                for (int j = 0; j < vocab; j++) expected[i * vocab + j] = log ? row[j] - max - logSum : Math.Exp(row[j] - max - logSum);
            }
            Compare.Close(expected, Read(t, n), 1e-5, log ? "log-softmax" : "softmax");
        }
    }

    [Fact]
    public void ArgmaxTakesFirstOfTies()
    {
        int vocab = 53;
        var logits = Random(3 * vocab, 32);
        logits[0 * vocab + 40] = 9; logits[0 * vocab + 17] = 9;   // tie: 17 wins
        logits[1 * vocab + 52] = 7;                               // last column
        Array.Fill(logits, float.NegativeInfinity, 2 * vocab, vocab); // all -inf: index 0
        using var t = Backend.Upload(logits, 3, vocab);
        var result = new int[3];
        Ilgpu.Argmax(t, result);
        Assert.Equal([17, 52, 0], result);
    }
}
