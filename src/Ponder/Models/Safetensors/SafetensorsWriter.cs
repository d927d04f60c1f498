using System.Text;
using System.Text.Json;
using Ponder.Tensors;

namespace Ponder.Models.Safetensors;

/// <summary>Writes a Hugging Face model folder (config.json plus safetensors) that transformers and <see cref="SafetensorsSource"/> read.</summary>
public static class SafetensorsWriter
{
    /// <summary>
    /// Writes <c>config.json</c> and the tensors into <paramref name="folder"/> (created if needed): one
    /// <c>model.safetensors</c>, or shards of at most <paramref name="maxShardBytes"/> of data each (a tensor larger
    /// than that gets its own shard) with <c>model.safetensors.index.json</c>. All tensors are stored as <paramref name="dtype"/>.
    /// </summary>
    /// <exception cref="ArgumentException">A tensor the config needs is missing or has the wrong shape.</exception>
    /// <exception cref="NotSupportedException"><paramref name="dtype"/> is Q8_0 (safetensors has no such type).</exception>
    public static void WriteFolder(string folder, ModelConfig config, IReadOnlyDictionary<string, HostTensor> tensors,
        DType dtype = DType.F32, long maxShardBytes = long.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        string dtypeText = dtype switch
        {
            DType.F32 => "F32",
            DType.F16 => "F16",
            DType.BF16 => "BF16",
            _ => throw new NotSupportedException($"safetensors cannot store {dtype} (supported: F32, F16, BF16)"),
        };
        List<string> names = ModelTensors.CheckAndOrder(config, tensors, nameof(tensors));

        var shards = new List<List<string>> { new() };
        long shardBytes = 0;
        foreach (string name in names)
        {
            long bytes = DTypes.ByteSize(dtype, tensors[name].Data.Length);
            if (shards[^1].Count > 0 && bytes > maxShardBytes - shardBytes)
            {
                shards.Add([]);
                shardBytes = 0;
            }
            shards[^1].Add(name);
            shardBytes += bytes;
        }

        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToHuggingFaceJson());
        string indexPath = Path.Combine(folder, SafetensorsSource.IndexFile);
        if (shards.Count == 1)
        {
            // A stale index would make readers look for shards instead of this file.
            File.Delete(indexPath);
            WriteFile(Path.Combine(folder, SafetensorsSource.SingleFile), shards[0], tensors, dtype, dtypeText);
            return;
        }
        File.Delete(Path.Combine(folder, SafetensorsSource.SingleFile));
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        long total = 0;
        for (int s = 0; s < shards.Count; s++)
        {
            string file = $"model-{s + 1:D5}-of-{shards.Count:D5}.safetensors";
            total += WriteFile(Path.Combine(folder, file), shards[s], tensors, dtype, dtypeText);
            foreach (string name in shards[s]) weightMap[name] = file;
        }
        using var stream = File.Create(indexPath);
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteStartObject("metadata");
        json.WriteNumber("total_size", total);
        json.WriteEndObject();
        json.WriteStartObject("weight_map");
        foreach (var (name, file) in weightMap) json.WriteString(name, file);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>Writes one safetensors file; returns its data size in bytes.</summary>
    private static long WriteFile(string path, List<string> names, IReadOnlyDictionary<string, HostTensor> tensors, DType dtype, string dtypeText)
    {
        using var headerStream = new MemoryStream();
        long offset = 0;
        using (var json = new Utf8JsonWriter(headerStream))
        {
            json.WriteStartObject();
            json.WriteStartObject("__metadata__");
            json.WriteString("format", "pt");
            json.WriteEndObject();
            foreach (string name in names)
            {
                var t = tensors[name];
                long bytes = DTypes.ByteSize(dtype, t.Data.Length);
                json.WriteStartObject(name);
                json.WriteString("dtype", dtypeText);
                json.WriteStartArray("shape");
                foreach (int d in t.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }
            json.WriteEndObject();
        }
        // The data section starts 8-byte aligned, as the safetensors crate pads it (with spaces).
        var header = new List<byte>(headerStream.ToArray());
        while ((8 + header.Count) % 8 != 0) header.Add((byte)' ');

        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        file.Write(BitConverter.GetBytes((ulong)header.Count));
        file.Write(header.ToArray());
        foreach (string name in names) file.Write(DTypes.FromF32(dtype, tensors[name].Data));
        return offset;
    }
}

/// <summary>Checks a writer's tensors against the config: shared by the safetensors and GGUF writers.</summary>
internal static class ModelTensors
{
    /// <summary>
    /// Throws <see cref="ArgumentException"/> when a tensor the config expects is missing or misshapen, or a tensor's
    /// data does not match its shape; returns the names in the config's order followed by any extra tensors, sorted.
    /// </summary>
    public static List<string> CheckAndOrder(ModelConfig config, IReadOnlyDictionary<string, HostTensor> tensors, string paramName)
    {
        var names = new List<string>();
        foreach (var (name, shape, meaning) in TensorNames.Expected(config))
        {
            if (!tensors.TryGetValue(name, out var t))
                throw new ArgumentException($"tensor '{name}' is missing (expected shape [{string.Join(", ", shape)}] {meaning})", paramName);
            if (!t.Shape.Select(d => (long)d).SequenceEqual(shape))
                throw new ArgumentException($"tensor '{name}' has shape [{string.Join(", ", t.Shape)}], expected [{string.Join(", ", shape)}] {meaning}", paramName);
            names.Add(name);
        }
        var expected = names.ToHashSet();
        names.AddRange(tensors.Keys.Where(n => !expected.Contains(n)).Order(StringComparer.Ordinal));
        foreach (string name in names)
        {
            var t = tensors[name];
            long count = t.Shape.Aggregate(1L, (a, b) => a * b);
            if (t.Shape.Any(d => d < 0) || count != t.Data.Length)
                throw new ArgumentException($"tensor '{name}' has shape [{string.Join(", ", t.Shape)}] but {t.Data.Length} values", paramName);
        }
        return names;
    }
}
