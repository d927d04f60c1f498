using Ponder.Tasks;
using Ponder.Models;

namespace Ponder.Training;

/// <summary>One trainable tensor: its canonical name, value, gradient and AdamW moments, and whether weight decay applies.</summary>
public sealed class Parameter(string name, int[] shape, bool decay)
{
    /// <summary>Canonical Hugging Face name (<see cref="TensorNames"/>).</summary>
    public string Name { get; } = name;
    /// <summary>The value, row-major f32, as the writers take it.</summary>
    public HostTensor Value { get; } = new(shape);
    /// <summary>The gradient, same shape as <see cref="Value"/>.</summary>
    public float[] Grad { get; } = new float[shape.Aggregate(1, (a, b) => a * b)];
    /// <summary>AdamW first moment.</summary>
    public float[] M { get; } = new float[shape.Aggregate(1, (a, b) => a * b)];
    /// <summary>AdamW second moment.</summary>
    public float[] V { get; } = new float[shape.Aggregate(1, (a, b) => a * b)];
    /// <summary>Matrices decay; norm weights and biases do not.</summary>
    public bool Decay { get; } = decay;
    /// <summary>The value's storage.</summary>
    public float[] Data => Value.Data;
}

/// <summary>
/// Every parameter of a Llama-family model, in <see cref="TensorNames.Expected"/> order, keyed by canonical name.
/// </summary>
public sealed class ParameterSet
{
    readonly Dictionary<string, Parameter> byName = new(StringComparer.Ordinal);

    /// <summary>The model's shape.</summary>
    public ModelConfig Config { get; }
    /// <summary>Parameters in canonical order.</summary>
    public IReadOnlyList<Parameter> All { get; }

    /// <summary>Allocates zeroed parameters for <paramref name="config"/>.</summary>
    public ParameterSet(ModelConfig config)
    {
        Config = config;
        var list = new List<Parameter>();
        foreach (var (name, shape, _) in TensorNames.Expected(config))
        {
            var p = new Parameter(name, shape.Select(s => checked((int)s)).ToArray(), decay: shape.Length > 1);
            list.Add(p);
            byName[name] = p;
        }
        All = list;
    }

    /// <summary>The parameter called <paramref name="name"/>.</summary>
    public Parameter this[string name] => byName.TryGetValue(name, out var p) ? p
        : throw new KeyNotFoundException($"no parameter '{name}' in this {Config.Architecture} model");

    /// <summary>True when the model has <paramref name="name"/>.</summary>
    public bool Contains(string name) => byName.ContainsKey(name);

    /// <summary>Total element count.</summary>
    public long Count => All.Sum(p => (long)p.Data.Length);

    /// <summary>The values by canonical name, for <c>SafetensorsWriter</c> / <c>GgufWriter</c>.</summary>
    public IReadOnlyDictionary<string, HostTensor> Tensors => All.ToDictionary(p => p.Name, p => p.Value, StringComparer.Ordinal);

    /// <summary>
    /// GPT-2 style initialization: matrices N(0, 0.02), the residual-branch outputs (o_proj, down_proj) scaled by
    /// 1/sqrt(2 nLayers) so the residual stream's variance does not grow with depth; norms 1; biases and the value head 0.
    /// </summary>
    public void Initialize(ulong seed)
    {
        var rng = DeterministicRandom.ForStream(seed, 0xC0FFEE);
        double residualScale = 1 / Math.Sqrt(2.0 * Config.NLayers);
        foreach (var p in All)
        {
            if (p.Value.Shape.Length == 1) { p.Data.AsSpan().Fill(p.Name.EndsWith("norm.weight", StringComparison.Ordinal) ? 1f : 0f); continue; }
            if (p.Name == TensorNames.ValueHead) { Array.Clear(p.Data); continue; }
            double std = 0.02 * (p.Name.EndsWith("o_proj.weight", StringComparison.Ordinal) || p.Name.EndsWith("down_proj.weight", StringComparison.Ordinal) ? residualScale : 1);
            for (int i = 0; i < p.Data.Length; i++) p.Data[i] = (float)(std * rng.NextGaussian());
        }
    }

    /// <summary>Zeroes every gradient.</summary>
    public void ZeroGrad()
    {
        foreach (var p in All) Array.Clear(p.Grad);
    }
}
