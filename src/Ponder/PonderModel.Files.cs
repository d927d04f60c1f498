using Ponder.Models;
using Ponder.Tokenization;

namespace Ponder;

public sealed partial class PonderModel
{
    /// <summary>Loads a model folder (config.json + safetensors + tokenizer files) or a GGUF file (with its own vocabulary).</summary>
    public static Task<PonderModel> LoadAsync(string path, ModelOptions? options = null, IProgress<float>? progress = null, CancellationToken cancellationToken = default) =>
        Task.Run(() =>
        {
            using var source = ModelFiles.Open(path);
            return Load(source, OpenTokenizer(path, source), options, progress, cancellationToken);
        }, cancellationToken);

    /// <summary>The tokenizer that belongs with a model file, or null when it has none.</summary>
    static ITokenizer? OpenTokenizer(string path, ITensorSource source) => null;
}
