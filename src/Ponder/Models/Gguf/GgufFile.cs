using System.Buffers.Binary;
using System.Text;
using Ponder.Tensors;

namespace Ponder.Models.Gguf;

/// <summary>GGUF metadata value types (the numbers stored in the file).</summary>
#pragma warning disable CS1591 // the members are the GGUF specification's own type names
public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
}
#pragma warning restore CS1591

/// <summary>The ggml tensor types Ponder reads (numbers as stored in GGUF); others are reported by number.</summary>
#pragma warning disable CS1591 // the members are ggml's own type names (ggml.h), with its numbers
public enum GgmlType : uint
{
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30,
}
#pragma warning restore CS1591

/// <summary>One tensor as a GGUF file describes it.</summary>
/// <param name="Name">The GGUF name (e.g. <c>blk.0.attn_q.weight</c>).</param>
/// <param name="Dims">Dimensions innermost first, as ggml stores them (reverse of row-major shape).</param>
/// <param name="Type">The raw ggml type number.</param>
/// <param name="Offset">Absolute byte offset of the data in the file.</param>
/// <param name="ByteSize">Bytes of data, or -1 when the type is not one Ponder knows.</param>
public sealed record GgufTensorInfo(string Name, long[] Dims, GgmlType Type, long Offset, long ByteSize)
{
    /// <summary>Row-major shape (outermost first).</summary>
    public long[] Shape => Dims.Reverse().ToArray();

    /// <summary>The Ponder dtype, or null when the ggml type is not supported.</summary>
    public DType? DType => GgufFile.ToDType(Type);
}

/// <summary>
/// A parsed GGUF v3 file: metadata, tensor directory and a memory map of the data. Every length and offset is
/// checked against the file size before use, so a corrupt file throws <see cref="InvalidDataException"/> (naming the
/// file and the field) instead of allocating or reading out of bounds.
/// </summary>
public sealed class GgufFile : IDisposable
{
    /// <summary>"GGUF" as a little-endian uint32.</summary>
    public const uint Magic = 0x46554747;
    /// <summary>The only version read.</summary>
    public const uint SupportedVersion = 3;
    /// <summary>Data alignment when <c>general.alignment</c> is absent.</summary>
    public const int DefaultAlignment = 32;
    /// <summary>Most dimensions a ggml tensor has.</summary>
    public const int MaxDims = 4;

    private readonly MappedFile _file;

    /// <summary>The file's path.</summary>
    public string Path => _file.Path;
    /// <summary>Key/value metadata. Scalars are the .NET type matching the GGUF type (uint for UINT32, float for FLOAT32, ...); arrays are typed arrays (uint[], string[], ...).</summary>
    public IReadOnlyDictionary<string, object> Metadata { get; }
    /// <summary>The GGUF type of each metadata value (for arrays: <see cref="GgufValueType.Array"/>).</summary>
    public IReadOnlyDictionary<string, GgufValueType> MetadataTypes { get; }
    /// <summary>Tensors in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }
    /// <summary>Alignment of the data section and of each tensor's data.</summary>
    public int Alignment { get; }
    /// <summary>Absolute offset of the data section.</summary>
    public long DataOffset { get; }

    /// <summary>Parses <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not GGUF v3, is truncated, or is inconsistent.</exception>
    public GgufFile(string path)
    {
        _file = new MappedFile(path);
        try
        {
            var r = new Reader(_file);
            uint magic = r.U32("the magic number");
            if (magic != Magic)
                throw new InvalidDataException($"{path}: not a GGUF file (magic 0x{magic:X8}, expected 'GGUF')");
            uint version = r.U32("the version");
            if (version != SupportedVersion)
                throw new InvalidDataException($"{path}: GGUF version {version} is not supported (only {SupportedVersion})");
            ulong tensorCount = r.U64("the tensor count");
            ulong kvCount = r.U64("the metadata count");
            // Each entry takes at least 12 (kv) or 24 (tensor) bytes: bigger counts cannot fit in the file.
            if (kvCount > (ulong)(_file.Length / 12) || tensorCount > (ulong)(_file.Length / 24))
                throw new InvalidDataException($"{path}: header claims {tensorCount} tensors and {kvCount} metadata entries, more than a {_file.Length}-byte file can hold");

            var metadata = new Dictionary<string, object>(StringComparer.Ordinal);
            var types = new Dictionary<string, GgufValueType>(StringComparer.Ordinal);
            for (ulong i = 0; i < kvCount; i++)
            {
                string key = r.String($"metadata key #{i}");
                var type = (GgufValueType)r.U32($"the type of metadata '{key}'");
                object value = r.Value(type, key);
                if (!metadata.TryAdd(key, value)) throw new InvalidDataException($"{path}: metadata key '{key}' appears twice");
                types[key] = type;
            }
            Metadata = metadata;
            MetadataTypes = types;

            Alignment = DefaultAlignment;
            if (metadata.TryGetValue("general.alignment", out object? a))
            {
                if (a is not uint align || align == 0 || (align & (align - 1)) != 0 || align > 1 << 20)
                    throw new InvalidDataException($"{path}: general.alignment = {a} must be a UINT32 power of two");
                Alignment = (int)align;
            }

            var infos = new List<(string Name, long[] Dims, uint Type, ulong Offset)>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (ulong i = 0; i < tensorCount; i++)
            {
                string name = r.String($"the name of tensor #{i}");
                if (!names.Add(name)) throw new InvalidDataException($"{path}: tensor '{name}' appears twice");
                uint nDims = r.U32($"tensor '{name}' dimension count");
                if (nDims == 0 || nDims > MaxDims)
                    throw new InvalidDataException($"{path}: tensor '{name}' has {nDims} dimensions (1..{MaxDims} allowed)");
                var dims = new long[nDims];
                for (int d = 0; d < nDims; d++)
                {
                    ulong dim = r.U64($"tensor '{name}' dimension {d}");
                    if (dim == 0 || dim > int.MaxValue)
                        throw new InvalidDataException($"{path}: tensor '{name}' dimension {d} = {dim} is out of range (1..{int.MaxValue})");
                    dims[d] = (long)dim;
                }
                uint ggmlType = r.U32($"tensor '{name}' type");
                ulong offset = r.U64($"tensor '{name}' offset");
                infos.Add((name, dims, ggmlType, offset));
            }
            DataOffset = Align(r.Position, Alignment);
            if (DataOffset > _file.Length && tensorCount > 0)
                throw new InvalidDataException($"{path}: data section would start at byte {DataOffset}, past the end of the file ({_file.Length} bytes); the file is truncated");

            long dataLength = Math.Max(0, _file.Length - DataOffset);
            var tensors = new List<GgufTensorInfo>();
            foreach (var (name, dims, rawType, offset) in infos)
            {
                long count;
                try { count = dims.Aggregate(1L, (x, y) => checked(x * y)); }
                catch (OverflowException) { throw new InvalidDataException($"{path}: tensor '{name}' dimensions [{string.Join(", ", dims)}] overflow"); }
                var type = (GgmlType)rawType;
                long bytes = -1;
                if (ToDType(type) is DType dt)
                {
                    if (dims[0] % DTypes.BlockValues(dt) != 0)
                        throw new InvalidDataException($"{path}: {dt} tensor '{name}' has rows of {dims[0]} values, not a multiple of its {DTypes.BlockValues(dt)}-value block");
                    try { bytes = DTypes.ByteSize(dt, count); }
                    catch (OverflowException) { throw new InvalidDataException($"{path}: tensor '{name}' dimensions [{string.Join(", ", dims)}] overflow"); }
                }
                if (offset % (ulong)Alignment != 0)
                    throw new InvalidDataException($"{path}: tensor '{name}' offset {offset} is not a multiple of the alignment {Alignment}");
                if (offset > (ulong)dataLength || (bytes >= 0 && bytes > dataLength - (long)offset))
                    throw new InvalidDataException($"{path}: tensor '{name}' data (offset {offset}, {bytes} bytes) lies past the end of the data section ({dataLength} bytes); the file is truncated or corrupt");
                tensors.Add(new GgufTensorInfo(name, dims, type, DataOffset + (long)offset, bytes));
            }
            var sorted = tensors.Where(t => t.ByteSize >= 0).OrderBy(t => t.Offset).ToList();
            for (int i = 1; i < sorted.Count; i++)
                if (sorted[i].Offset < sorted[i - 1].Offset + sorted[i - 1].ByteSize)
                    throw new InvalidDataException($"{path}: tensors '{sorted[i - 1].Name}' and '{sorted[i].Name}' overlap");
            Tensors = tensors;
        }
        catch
        {
            _file.Dispose();
            throw;
        }
    }

    /// <summary>Converts a tensor's data to f32 in stored (ggml) order: row-major over <see cref="GgufTensorInfo.Shape"/>.</summary>
    public void ReadF32(GgufTensorInfo tensor, Span<float> destination)
    {
        var dtype = tensor.DType ?? throw Unsupported(tensor);
        _file.ReadF32(tensor.Offset, dtype, destination, $"tensor '{tensor.Name}'");
    }

    /// <summary>The tensor's stored bytes (its ggml type, ggml order); valid while the file is open.</summary>
    public ReadOnlySpan<byte> Raw(GgufTensorInfo tensor)
    {
        if (tensor.DType is null) throw Unsupported(tensor);
        return _file.Span(tensor.Offset, checked((int)tensor.ByteSize), $"tensor '{tensor.Name}'");
    }

    /// <summary>The ggml types Ponder reads, for messages.</summary>
    public const string SupportedTypes = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K";

    internal NotSupportedException Unsupported(GgufTensorInfo tensor) =>
        new($"{Path}: tensor '{tensor.Name}' has ggml type {TypeName(tensor.Type)} (supported: {SupportedTypes})");

    /// <summary>Releases the memory map.</summary>
    public void Dispose() => _file.Dispose();

    internal static DType? ToDType(GgmlType type) => type switch
    {
        GgmlType.F32 => Ponder.Tensors.DType.F32,
        GgmlType.F16 => Ponder.Tensors.DType.F16,
        GgmlType.BF16 => Ponder.Tensors.DType.BF16,
        GgmlType.Q8_0 => Ponder.Tensors.DType.Q8_0,
        GgmlType.Q4_0 => Ponder.Tensors.DType.Q4_0,
        GgmlType.Q4_1 => Ponder.Tensors.DType.Q4_1,
        GgmlType.Q5_0 => Ponder.Tensors.DType.Q5_0,
        GgmlType.Q5_1 => Ponder.Tensors.DType.Q5_1,
        GgmlType.Q4_K => Ponder.Tensors.DType.Q4_K,
        GgmlType.Q5_K => Ponder.Tensors.DType.Q5_K,
        GgmlType.Q6_K => Ponder.Tensors.DType.Q6_K,
        _ => null,
    };

    internal static GgmlType ToGgml(DType type) => type switch
    {
        Ponder.Tensors.DType.F32 => GgmlType.F32,
        Ponder.Tensors.DType.F16 => GgmlType.F16,
        Ponder.Tensors.DType.BF16 => GgmlType.BF16,
        Ponder.Tensors.DType.Q8_0 => GgmlType.Q8_0,
        Ponder.Tensors.DType.Q4_0 => GgmlType.Q4_0,
        Ponder.Tensors.DType.Q4_1 => GgmlType.Q4_1,
        Ponder.Tensors.DType.Q5_0 => GgmlType.Q5_0,
        Ponder.Tensors.DType.Q5_1 => GgmlType.Q5_1,
        Ponder.Tensors.DType.Q4_K => GgmlType.Q4_K,
        Ponder.Tensors.DType.Q5_K => GgmlType.Q5_K,
        Ponder.Tensors.DType.Q6_K => GgmlType.Q6_K,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "no ggml type"),
    };

    /// <summary>A readable name for a ggml type number, for messages.</summary>
    public static string TypeName(GgmlType type) => (uint)type switch
    {
        0 => "F32", 1 => "F16", 2 => "Q4_0", 3 => "Q4_1", 6 => "Q5_0", 7 => "Q5_1", 8 => "Q8_0", 9 => "Q8_1",
        10 => "Q2_K", 11 => "Q3_K", 12 => "Q4_K", 13 => "Q5_K", 14 => "Q6_K", 15 => "Q8_K",
        24 => "I8", 25 => "I16", 26 => "I32", 27 => "I64", 28 => "F64", 30 => "BF16",
        uint n => $"#{n}",
    };

    internal static long Align(long offset, int alignment) => (offset + alignment - 1) / alignment * alignment;

    /// <summary>A bounds-checked cursor over the header: every read names what it reads, for the error message.</summary>
    private sealed class Reader(MappedFile file)
    {
        /// <summary>Longest string accepted: keys and token strings are short; a larger length is corruption.</summary>
        private const ulong MaxString = 1 << 24;

        public long Position { get; private set; }

        private ReadOnlySpan<byte> Take(int n, string what)
        {
            var s = file.Span(Position, n, $"{what} at byte {Position}");
            Position += n;
            return s;
        }

        public uint U32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));
        public ulong U64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what));

        public string String(string what)
        {
            ulong length = U64($"the length of {what}");
            if (length > MaxString || length > (ulong)(file.Length - Position))
                throw new InvalidDataException($"{file.Path}: {what} claims {length} bytes at byte {Position}, past the end of the file ({file.Length} bytes) or above {MaxString}");
            try { return new UTF8Encoding(false, true).GetString(Take((int)length, what)); }
            catch (DecoderFallbackException) { throw new InvalidDataException($"{file.Path}: {what} at byte {Position - (long)length} is not valid UTF-8"); }
        }

        public object Value(GgufValueType type, string key) => type switch
        {
            GgufValueType.UInt8 => Take(1, key)[0],
            GgufValueType.Int8 => (sbyte)Take(1, key)[0],
            GgufValueType.UInt16 => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, key)),
            GgufValueType.Int16 => BinaryPrimitives.ReadInt16LittleEndian(Take(2, key)),
            GgufValueType.UInt32 => U32(key),
            GgufValueType.Int32 => BinaryPrimitives.ReadInt32LittleEndian(Take(4, key)),
            GgufValueType.Float32 => BinaryPrimitives.ReadSingleLittleEndian(Take(4, key)),
            GgufValueType.Bool => Take(1, key)[0] switch
            {
                0 => false,
                1 => true,
                byte b => throw new InvalidDataException($"{file.Path}: metadata '{key}' is a BOOL with value {b} (0 or 1 expected)"),
            },
            GgufValueType.String => String($"metadata '{key}'"),
            GgufValueType.UInt64 => U64(key),
            GgufValueType.Int64 => BinaryPrimitives.ReadInt64LittleEndian(Take(8, key)),
            GgufValueType.Float64 => BinaryPrimitives.ReadDoubleLittleEndian(Take(8, key)),
            GgufValueType.Array => Array(key),
            _ => throw new InvalidDataException($"{file.Path}: metadata '{key}' has unknown value type {(uint)type}"),
        };

        private object Array(string key)
        {
            var type = (GgufValueType)U32($"the element type of array '{key}'");
            ulong count = U64($"the length of array '{key}'");
            int minSize = type switch
            {
                GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
                GgufValueType.UInt16 or GgufValueType.Int16 => 2,
                GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
                GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 or GgufValueType.String => 8,
                GgufValueType.Array => throw new InvalidDataException($"{file.Path}: metadata '{key}' is an array of arrays (not supported)"),
                _ => throw new InvalidDataException($"{file.Path}: array '{key}' has unknown element type {(uint)type}"),
            };
            // Checked before allocating: a corrupt length must not allocate gigabytes.
            if (count > (ulong)(file.Length - Position) / (ulong)minSize)
                throw new InvalidDataException($"{file.Path}: array '{key}' claims {count} elements at byte {Position}, more than the rest of the file ({file.Length - Position} bytes) can hold");
            int n = (int)count;
            string item = $"array '{key}' element";
            switch (type)
            {
                case GgufValueType.String:
                    var strings = new string[n];
                    for (int i = 0; i < n; i++) strings[i] = String($"{item} {i}");
                    return strings;
                case GgufValueType.UInt8: return Take(n, item).ToArray();
                case GgufValueType.Int8: return Fill(n, i => (sbyte)Take(1, item)[0]);
                case GgufValueType.Bool: return Fill(n, i => Value(GgufValueType.Bool, key) is true);
                case GgufValueType.UInt16: return Fill(n, i => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, item)));
                case GgufValueType.Int16: return Fill(n, i => BinaryPrimitives.ReadInt16LittleEndian(Take(2, item)));
                case GgufValueType.UInt32: return Fill(n, i => U32(item));
                case GgufValueType.Int32: return Fill(n, i => BinaryPrimitives.ReadInt32LittleEndian(Take(4, item)));
                case GgufValueType.Float32: return Fill(n, i => BinaryPrimitives.ReadSingleLittleEndian(Take(4, item)));
                case GgufValueType.UInt64: return Fill(n, i => U64(item));
                case GgufValueType.Int64: return Fill(n, i => BinaryPrimitives.ReadInt64LittleEndian(Take(8, item)));
                default: return Fill(n, i => BinaryPrimitives.ReadDoubleLittleEndian(Take(8, item)));
            }
        }

        private static T[] Fill<T>(int n, Func<int, T> read)
        {
            var a = new T[n];
            for (int i = 0; i < n; i++) a[i] = read(i);
            return a;
        }
    }
}
