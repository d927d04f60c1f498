using System.Text.Json;
using Ponder.Tensors;

namespace Ponder.Models.Safetensors;

/// <summary>
/// A Hugging Face model folder: <c>config.json</c> plus <c>model.safetensors</c>, or shards listed in
/// <c>model.safetensors.index.json</c>. Files are memory-mapped; tensors are converted to f32 on read.
/// Every header is validated (offsets, sizes, dtypes, overlaps) before any tensor is read.
/// </summary>
public sealed class SafetensorsSource : ITensorSource
{
    /// <summary>Largest JSON header accepted (Hugging Face's own reader caps it at 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    internal const string SingleFile = "model.safetensors";
    internal const string IndexFile = "model.safetensors.index.json";

    private readonly List<MappedFile> _files = [];
    private readonly Dictionary<string, (MappedFile File, long Offset)> _data = [];
    private readonly Dictionary<string, TensorInfo> _tensors = [];

    /// <inheritdoc />
    public string Location { get; }
    /// <inheritdoc />
    public ModelConfig Config { get; }
    /// <inheritdoc />
    public IReadOnlyDictionary<string, TensorInfo> Tensors => _tensors;

    /// <summary>Opens and validates the model in <paramref name="folder"/>.</summary>
    /// <exception cref="FileNotFoundException">The folder, config.json, or a listed shard is missing.</exception>
    /// <exception cref="InvalidDataException">A file is malformed, or a tensor is missing or has the wrong shape.</exception>
    /// <exception cref="NotSupportedException">A tensor has a dtype other than F32, F16, BF16.</exception>
    public SafetensorsSource(string folder)
    {
        Location = folder;
        if (!Directory.Exists(folder)) throw new FileNotFoundException($"{folder}: model folder not found", folder);
        string configPath = Path.Combine(folder, "config.json");
        if (!File.Exists(configPath)) throw new FileNotFoundException($"{configPath}: config.json not found", configPath);
        Config = ModelConfig.FromHuggingFaceJson(File.ReadAllText(configPath), configPath);
        try
        {
            string indexPath = Path.Combine(folder, IndexFile);
            if (File.Exists(indexPath)) OpenShards(folder, indexPath);
            else
            {
                string single = Path.Combine(folder, SingleFile);
                if (!File.Exists(single))
                    throw new FileNotFoundException($"{folder}: neither {SingleFile} nor {IndexFile} found", single);
                ReadHeader(Open(single));
            }
            SplitFused();
            TensorNames.CheckComplete(this);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public void ReadF32(string name, Span<float> destination)
    {
        if (!_tensors.TryGetValue(name, out var info))
            throw new ArgumentException($"{Location}: no tensor named '{name}'", nameof(name));
        if (destination.Length != info.ElementCount)
            throw new ArgumentException($"{Location}: tensor '{name}' has {info.ElementCount} elements, destination holds {destination.Length}", nameof(destination));
        var (file, offset) = _data[name];
        file.ReadF32(offset, info.Type, destination, $"tensor '{name}'");
    }

    /// <summary>
    /// Phi-3 stores each layer's Q, K and V as one <c>qkv_proj</c> (rows q | k | v) and gate and up as one
    /// <c>gate_up_proj</c> (rows gate | up). Their row ranges become the separate tensors the forward pass multiplies
    /// (one dispatch for all three or both, as for any model), read in place from the file.
    /// </summary>
    private void SplitFused()
    {
        foreach (var (fused, parts, meaning) in TensorNames.Fused(Config)) Split(fused, parts, meaning);
    }

    private void Split(string fused, (string Name, int Rows)[] parts, string meaning)
    {
        if (!_tensors.TryGetValue(fused, out var info)) return;
        int rows = parts.Sum(p => p.Rows);
        if (!info.Shape.SequenceEqual([rows, (long)Config.DModel]))
            throw new InvalidDataException($"{Location}: tensor '{fused}' has shape {info.ShapeText}, expected [{rows}, {Config.DModel}] {meaning}");
        var (file, offset) = _data[fused];
        foreach (var (name, partRows) in parts)
        {
            if (_tensors.ContainsKey(name))
                throw new InvalidDataException($"{Location}: both '{fused}' and '{name}' are present; a checkpoint has one or the other");
            _tensors[name] = new TensorInfo(name, info.Type, [partRows, Config.DModel]);
            _data[name] = (file, offset);
            offset += DTypes.ByteSize(info.Type, (long)partRows * Config.DModel);
        }
        _tensors.Remove(fused);
        _data.Remove(fused);
    }

    /// <summary>Releases the memory maps.</summary>
    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }

    private MappedFile Open(string path)
    {
        var f = new MappedFile(path);
        _files.Add(f);
        return f;
    }

    private void OpenShards(string folder, string indexPath)
    {
        Dictionary<string, string> weightMap = [];
        try
        {
            using var doc = JsonFile.Parse(File.ReadAllBytes(indexPath), indexPath);
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{indexPath}: no 'weight_map' object");
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new InvalidDataException($"{indexPath}: weight_map entry '{p.Name}' is not a file name");
                if (!weightMap.TryAdd(p.Name, p.Value.GetString()!))
                    throw new InvalidDataException($"{indexPath}: tensor '{p.Name}' is listed twice in weight_map");
            }
        }
        catch (JsonException e) { throw new InvalidDataException($"{indexPath}: not valid JSON ({e.Message})", e); }

        foreach (string shard in weightMap.Values.Distinct().Order(StringComparer.Ordinal))
        {
            if (shard.Length == 0 || Path.GetFileName(shard) != shard)
                throw new InvalidDataException($"{indexPath}: shard name '{shard}' is not a plain file name");
            string shardPath = Path.Combine(folder, shard);
            if (!File.Exists(shardPath))
                throw new FileNotFoundException($"{indexPath}: shard '{shard}' is listed but not found", shardPath);
            ReadHeader(Open(shardPath));
        }
        foreach (var (name, shard) in weightMap)
        {
            if (!_data.TryGetValue(name, out var at))
                throw new InvalidDataException($"{indexPath}: tensor '{name}' is listed in shard '{shard}' but no shard holds it");
            if (Path.GetFileName(at.File.Path) != shard)
                throw new InvalidDataException($"{indexPath}: tensor '{name}' is listed in shard '{shard}' but found in '{Path.GetFileName(at.File.Path)}'");
        }
    }

    private void ReadHeader(MappedFile file)
    {
        string path = file.Path;
        ulong headerLength = BitConverter.ToUInt64(file.Span(0, 8, "the 8-byte header length"));
        if (headerLength > MaxHeaderBytes || (long)headerLength > file.Length - 8)
            throw new InvalidDataException($"{path}: header length {headerLength} is past the end of the file ({file.Length} bytes) or above {MaxHeaderBytes}; the file is truncated or not safetensors");
        long dataStart = 8 + (long)headerLength;
        long dataLength = file.Length - dataStart;

        var ranges = new List<(long Begin, long End, string Name)>();
        try
        {
            using var doc = JsonFile.Parse(file.Span(8, (int)headerLength, "the JSON header").ToArray(), $"{path}: the header");
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{path}: header is not a JSON object");
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Name == "__metadata__") continue;
                var (info, begin, end) = ParseEntry(path, p.Name, p.Value);
                if (end > dataLength)
                    throw new InvalidDataException($"{path}: tensor '{p.Name}' data_offsets [{begin}, {end}] lie past the end of the data ({dataLength} bytes)");
                if (!_tensors.TryAdd(p.Name, info))
                    throw new InvalidDataException($"{path}: tensor '{p.Name}' appears twice (in {Path.GetFileName(_data[p.Name].File.Path)} and {Path.GetFileName(path)})");
                _data[p.Name] = (file, dataStart + begin);
                ranges.Add((begin, end, p.Name));
            }
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: header is not valid JSON ({e.Message})", e); }

        ranges.Sort((a, b) => a.Begin.CompareTo(b.Begin));
        for (int i = 1; i < ranges.Count; i++)
            if (ranges[i].Begin < ranges[i - 1].End)
                throw new InvalidDataException($"{path}: tensors '{ranges[i - 1].Name}' and '{ranges[i].Name}' overlap (data_offsets {ranges[i - 1].Begin}..{ranges[i - 1].End} and {ranges[i].Begin}..{ranges[i].End})");
    }

    private static (TensorInfo Info, long Begin, long End) ParseEntry(string path, string name, JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Object
            || !e.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String
            || !e.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array
            || !e.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
            throw new InvalidDataException($"{path}: tensor '{name}' needs 'dtype', 'shape' and two 'data_offsets'");
        string dtypeText = dtypeEl.GetString()!;
        DType type = dtypeText switch
        {
            "F32" => DType.F32,
            "F16" => DType.F16,
            "BF16" => DType.BF16,
            _ => throw new NotSupportedException($"{path}: tensor '{name}' has dtype {dtypeText} (supported: F32, F16, BF16)"),
        };
        long NonNegative(JsonElement v, string what) =>
            v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long x) && x >= 0
                ? x : throw new InvalidDataException($"{path}: tensor '{name}' has a bad {what}: {v.GetRawText()}");
        long[] shape = shapeEl.EnumerateArray().Select(v => NonNegative(v, "shape dimension")).ToArray();
        long begin = NonNegative(offEl[0], "data_offsets start"), end = NonNegative(offEl[1], "data_offsets end");
        var info = new TensorInfo(name, type, shape);
        long bytes;
        try { bytes = DTypes.ByteSize(type, info.ElementCount); }
        catch (OverflowException) { throw new InvalidDataException($"{path}: tensor '{name}' shape {info.ShapeText} overflows"); }
        if (end < begin || end - begin != bytes)
            throw new InvalidDataException($"{path}: tensor '{name}' data_offsets [{begin}, {end}] hold {end - begin} bytes, but {dtypeText} {info.ShapeText} needs {bytes}");
        return (info, begin, end);
    }
}
