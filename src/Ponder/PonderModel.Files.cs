namespace Ponder;

public sealed partial class PonderModel
{
    /// <summary>Loads a model folder (config.json + safetensors + tokenizer.json) or a GGUF file.</summary>
    public static Task<PonderModel> LoadAsync(string path, ModelOptions? options = null, IProgress<float>? progress = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException($"loading model files is not wired yet ({path})");
}
