namespace Ponder.Models;

/// <summary>An <see cref="ITensorSource"/> over tensors already in memory (a trainer's weights, a test's random model).</summary>
public sealed class HostTensorSource : ITensorSource
{
    readonly IReadOnlyDictionary<string, HostTensor> _tensors;

    /// <summary>Serves <paramref name="tensors"/> (f32, by name) for a model of shape <paramref name="config"/>, validated and named <paramref name="location"/> in errors.</summary>
    public HostTensorSource(ModelConfig config, IReadOnlyDictionary<string, HostTensor> tensors, string location = "(in memory)")
    {
        Config = config.Validate(location);
        _tensors = tensors;
        Location = location;
        Tensors = tensors.ToDictionary(kv => kv.Key, kv => new TensorInfo(kv.Key, Ponder.Tensors.DType.F32, kv.Value.Shape.Select(x => (long)x).ToArray()));
    }

    /// <inheritdoc/>
    public string Location { get; }
    /// <inheritdoc/>
    public ModelConfig Config { get; }
    /// <inheritdoc/>
    public IReadOnlyDictionary<string, TensorInfo> Tensors { get; }

    /// <inheritdoc/>
    public void ReadF32(string name, Span<float> destination)
    {
        if (!_tensors.TryGetValue(name, out var t)) throw new KeyNotFoundException($"{Location}: no tensor '{name}'");
        if (destination.Length != t.Data.Length) throw new ArgumentException($"{Location}: tensor '{name}' has {t.Data.Length} values, destination {destination.Length}");
        t.Data.CopyTo(destination);
    }

    /// <summary>Nothing to release: the tensors stay the caller's.</summary>
    public void Dispose() { }
}
