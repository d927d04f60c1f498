using System.IO.MemoryMappedFiles;
using System.Runtime.CompilerServices;
using Ponder.Models.Gguf;
using Ponder.Models.Safetensors;
using Ponder.Tensors;

namespace Ponder.Models;

/// <summary>Opens a model from a path, whatever its format.</summary>
public static class ModelFiles
{
    /// <summary>
    /// Opens <paramref name="path"/>: a <c>.gguf</c> file, a Hugging Face folder (<c>config.json</c> plus safetensors),
    /// or a folder holding exactly one <c>.gguf</c> file.
    /// </summary>
    /// <exception cref="FileNotFoundException">Nothing exists at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The folder holds no model, or the files are malformed.</exception>
    public static ITensorSource Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (File.Exists(path)) return new GgufSource(path);
        if (!Directory.Exists(path)) throw new FileNotFoundException($"{path}: no such model file or folder", path);
        if (File.Exists(Path.Combine(path, "config.json"))) return new SafetensorsSource(path);
        string[] ggufs = Directory.GetFiles(path, "*.gguf");
        return ggufs.Length switch
        {
            1 => new GgufSource(ggufs[0]),
            0 => throw new InvalidDataException($"{path}: no model found (looked for config.json with model.safetensors, or one .gguf file)"),
            _ => throw new InvalidDataException($"{path}: {ggufs.Length} .gguf files found ({string.Join(", ", ggufs.Select(Path.GetFileName))}); open one by its path"),
        };
    }
}

/// <summary>
/// A read-only memory map of a whole file with bounds-checked access. Tensor readers take slices of it, so a
/// tensor's bytes are read once, straight from the page cache.
/// </summary>
internal sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;

    public string Path { get; }
    public long Length { get; }

    public MappedFile(string path)
    {
        Path = path;
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        Length = new FileInfo(path).Length;
        // An empty file cannot be mapped; callers report it as truncated through the bounds checks.
        if (Length == 0) return;
        _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _map.CreateViewAccessor(0, Length, MemoryMappedFileAccess.Read);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = p + _view.PointerOffset;
    }

    /// <summary>Bytes [offset, offset+count); throws <see cref="InvalidDataException"/> naming <paramref name="what"/> when they lie past the end.</summary>
    public ReadOnlySpan<byte> Span(long offset, int count, string what)
    {
        CheckRange(offset, count, what);
        return new ReadOnlySpan<byte>(_base + offset, count);
    }

    public void CheckRange(long offset, long count, string what)
    {
        if (offset < 0 || count < 0 || offset > Length || count > Length - offset)
            throw new InvalidDataException($"{Path}: {what} (bytes {offset}..{offset + count}) lies past the end of the file ({Length} bytes); the file is truncated or corrupt");
    }

    /// <summary>Converts <paramref name="destination"/>.Length values of <paramref name="type"/> stored at <paramref name="offset"/> to f32, in chunks so spans stay under 2 GiB.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void ReadF32(long offset, DType type, Span<float> destination, string what)
    {
        CheckRange(offset, DTypes.ByteSize(type, destination.Length), what);
        const int chunk = 1 << 20; // values per conversion call: a multiple of the Q8_0 block
        for (int done = 0; done < destination.Length; done += chunk)
        {
            int n = Math.Min(chunk, destination.Length - done);
            long at = offset + DTypes.ByteSize(type, done);
            var src = new ReadOnlySpan<byte>(_base + at, (int)DTypes.ByteSize(type, n));
            DTypes.ToF32(type, src, destination.Slice(done, n));
        }
    }

    public void Dispose()
    {
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }
}
