using System.Security.Cryptography;

namespace Ponder.Tasks;

/// <summary>Names a model's weights by content, so caches of its samples and scores survive renames and notice retraining.</summary>
public static class WeightsFingerprint
{
    /// <summary>
    /// "folder-name@first 12 hex digits of SHA-256 over the weight files" (config.json, *.safetensors and a PRM's
    /// prm.json, which changes what its scores mean; or the GGUF).
    /// </summary>
    public static string Of(string path)
    {
        var files = Directory.Exists(path)
            ? Directory.GetFiles(path, "*.safetensors").Append(Path.Combine(path, "config.json")).Append(Path.Combine(path, "prm.json")).Where(File.Exists).Order(StringComparer.Ordinal).ToList()
            : [path];
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var f in files)
        {
            using var stream = File.OpenRead(f);
            var buffer = new byte[1 << 20];
            int n;
            while ((n = stream.Read(buffer)) > 0) sha.AppendData(buffer, 0, n);
        }
        string name = Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(path));
        return $"{name}@{Convert.ToHexStringLower(sha.GetHashAndReset())[..12]}";
    }
}
