namespace Ponder.Training;

/// <summary>AdamW hyper-parameters (Loshchilov and Hutter: the weight decay is decoupled from the gradient).</summary>
public sealed record AdamWOptions(float Beta1 = 0.9f, float Beta2 = 0.95f, float Epsilon = 1e-8f, float WeightDecay = 0.1f);

/// <summary>AdamW, linear warmup + cosine decay, and clipping by the global gradient norm.</summary>
public static class Optimizer
{
    /// <summary>
    /// One AdamW update at 1-based <paramref name="step"/>: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    /// p -= lr * (m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd * p), the decay only on matrices.
    /// </summary>
    public static void AdamWStep(ParameterSet parameters, AdamWOptions o, float lr, long step)
    {
        float c1 = 1f - MathF.Pow(o.Beta1, step), c2 = 1f - MathF.Pow(o.Beta2, step);
        Parallel.ForEach(parameters.All, p =>
        {
            float[] w = p.Data, g = p.Grad, m = p.M, v = p.V;
            float wd = p.Decay ? o.WeightDecay : 0f;
            for (int i = 0; i < w.Length; i++)
            {
                m[i] = o.Beta1 * m[i] + (1 - o.Beta1) * g[i];
                v[i] = o.Beta2 * v[i] + (1 - o.Beta2) * g[i] * g[i];
                w[i] -= lr * (m[i] / c1 / (MathF.Sqrt(v[i] / c2) + o.Epsilon) + wd * w[i]);
            }
        });
    }

    /// <summary>Global L2 norm of all gradients (float64); when above <paramref name="maxNorm"/> &gt; 0, scales them down to it. Returns the norm before clipping.</summary>
    public static double ClipGradNorm(ParameterSet parameters, double maxNorm)
    {
        double sum = 0;
        foreach (var p in parameters.All)
            foreach (float g in p.Grad) sum += (double)g * g;
        double norm = Math.Sqrt(sum);
        if (maxNorm > 0 && norm > maxNorm)
        {
            float s = (float)(maxNorm / norm);
            foreach (var p in parameters.All) System.Numerics.Tensors.TensorPrimitives.Multiply(p.Grad, s, p.Grad);
        }
        return norm;
    }

    /// <summary>Learning rate at 0-based <paramref name="step"/>: linear warmup to <paramref name="maxLr"/>, then cosine to maxLr * minFraction at totalSteps.</summary>
    public static float LearningRate(long step, long totalSteps, long warmupSteps, float maxLr, float minFraction)
    {
        if (step < warmupSteps) return maxLr * (step + 1) / warmupSteps;
        double progress = Math.Clamp((double)(step - warmupSteps) / Math.Max(1, totalSteps - warmupSteps), 0, 1);
        double min = maxLr * minFraction;
        return (float)(min + 0.5 * (maxLr - min) * (1 + Math.Cos(Math.PI * progress)));
    }
}
