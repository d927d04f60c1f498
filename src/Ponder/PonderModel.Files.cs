using Ponder.Models;
using Ponder.Models.Gguf;
using Ponder.Tokenization;

namespace Ponder;

public sealed partial class PonderModel
{
    /// <summary>Loads a model folder (config.json + safetensors + tokenizer files) or a GGUF file (with its own vocabulary).</summary>
    public static Task<PonderModel> LoadAsync(string path, ModelOptions? options = null, IProgress<float>? progress = null, CancellationToken cancellationToken = default) =>
        Task.Run(() =>
        {
            var (source, tokenizer) = OpenFiles(path);
            using (source) return Load(source, tokenizer, options, progress, cancellationToken);
        }, cancellationToken);

    /// <summary>
    /// Opens a model's weights and its tokenizer, and checks they agree: every id the tokenizer can produce or names
    /// as special must be a row of the model's embedding. Nothing stays open when a file is refused.
    /// </summary>
    /// <exception cref="InvalidDataException">A file is malformed, or the tokenizer's ids exceed the model's vocabulary.</exception>
    internal static (ITensorSource Source, ITokenizer? Tokenizer) OpenFiles(string path)
    {
        var source = ModelFiles.Open(path);
        try
        {
            var tokenizer = OpenTokenizer(path, source);
            if (tokenizer is not null)
            {
                int vocab = source.Config.Vocab;
                string where = source is GgufSource ? source.Location : TokenizerFile(path);
                if (tokenizer.VocabSize > vocab)
                    throw new InvalidDataException($"{where}: the tokenizer has {tokenizer.VocabSize} token ids, more than the model's vocabulary (vocab_size {vocab})");
                foreach (int id in tokenizer.EosIds.Concat(tokenizer.BosId is int b ? [b] : []))
                    if ((uint)id >= (uint)vocab)
                        throw new InvalidDataException($"{where}: special token id {id} is outside the model's vocabulary (vocab_size {vocab})");
            }
            return (source, tokenizer);
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    static string TokenizerFile(string path)
    {
        string folder = Directory.Exists(path) ? path : Path.GetDirectoryName(Path.GetFullPath(path))!;
        string json = Path.Combine(folder, "tokenizer.json");
        return File.Exists(json) ? json : Path.Combine(folder, "tokenizer.model");
    }

    /// <summary>The tokenizer that belongs with a model file, or null when it has none.</summary>
    static ITokenizer? OpenTokenizer(string path, ITensorSource source)
    {
        if (source is GgufSource gguf) return TokenizerFactory.FromGgufMetadata(gguf.File.Metadata, gguf.Location);
        string folder = Directory.Exists(path) ? path : Path.GetDirectoryName(Path.GetFullPath(path))!;
        bool hasFile = File.Exists(Path.Combine(folder, "tokenizer.json")) || File.Exists(Path.Combine(folder, "tokenizer.model"));
        return hasFile ? TokenizerFactory.FromModelFolder(folder) : null;
    }
}
