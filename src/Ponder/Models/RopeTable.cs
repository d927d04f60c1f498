using Ponder.Backends;

namespace Ponder.Models;

/// <summary>Rotary position embedding tables (Hugging Face convention), including the <c>llama3</c> frequency scaling.</summary>
internal static class RopeTable
{
    /// <summary>Inverse frequencies θ^(-2i/headDim) for i in [0, headDim/2), adjusted by llama3 scaling when configured.</summary>
    public static double[] InverseFrequencies(ModelConfig config)
    {
        int half = config.HeadDim / 2;
        var inv = new double[half];
        for (int i = 0; i < half; i++) inv[i] = 1.0 / Math.Pow(config.RopeTheta, 2.0 * i / config.HeadDim);
        if (config.RopeScaling is { } s)
        {
            // Llama 3.1: wavelengths longer than the original context / lowFreqFactor are divided by `factor`,
            // those shorter than original / highFreqFactor are kept, and the band between is interpolated.
            double lowWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
            double highWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
            for (int i = 0; i < half; i++)
            {
                double wavelen = 2 * Math.PI / inv[i];
                if (wavelen > lowWavelen) inv[i] /= s.Factor;
                else if (wavelen >= highWavelen)
                {
                    double smooth = (s.OriginalMaxPositionEmbeddings / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    inv[i] = (1 - smooth) * inv[i] / s.Factor + smooth * inv[i];
                }
            }
        }
        return inv;
    }

    /// <summary>Builds the [positions, headDim] table (cos in the first half of each row, sin in the second) on the backend.</summary>
    public static DeviceTensor Upload(IBackend backend, ModelConfig config, int positions)
    {
        int e = config.HeadDim, half = e / 2;
        var inv = InverseFrequencies(config);
        var table = new float[(long)positions * e];
        for (int p = 0; p < positions; p++)
            for (int i = 0; i < half; i++)
            {
                double angle = p * inv[i];
                table[(long)p * e + i] = (float)Math.Cos(angle);
                table[(long)p * e + half + i] = (float)Math.Sin(angle);
            }
        return backend.Upload(table, positions, e);
    }
}
