using System.Text;

namespace Ponder.Tests.Formats;

/// <summary>Builds raw GGUF and safetensors bytes field by field, so tests can write files no writer would.</summary>
internal sealed class GgufBytes
{
    private readonly MemoryStream _stream = new();
    private readonly BinaryWriter _w;

    public GgufBytes(uint magic = 0x46554747, uint version = 3, ulong tensorCount = 0, ulong kvCount = 0)
    {
        _w = new BinaryWriter(_stream);
        _w.Write(magic);
        _w.Write(version);
        _w.Write(tensorCount);
        _w.Write(kvCount);
    }

    public GgufBytes String(string s, ulong? claimedLength = null)
    {
        byte[] b = Encoding.UTF8.GetBytes(s);
        _w.Write(claimedLength ?? (ulong)b.Length);
        _w.Write(b);
        return this;
    }

    public GgufBytes KvString(string key, string value) { String(key); _w.Write(8u); return String(value); }
    public GgufBytes KvU32(string key, uint value) { String(key); _w.Write(4u); _w.Write(value); return this; }

    /// <summary>An array header (element type, claimed count) followed by <paramref name="payload"/>.</summary>
    public GgufBytes KvArray(string key, uint elementType, ulong count, byte[] payload)
    {
        String(key);
        _w.Write(9u);
        _w.Write(elementType);
        _w.Write(count);
        _w.Write(payload);
        return this;
    }

    public GgufBytes Tensor(string name, ulong[] dims, uint type, ulong offset)
    {
        String(name);
        _w.Write((uint)dims.Length);
        foreach (ulong d in dims) _w.Write(d);
        _w.Write(type);
        _w.Write(offset);
        return this;
    }

    public GgufBytes Raw(params byte[] bytes) { _w.Write(bytes); return this; }

    /// <summary>Pads to 32 bytes and appends <paramref name="dataBytes"/> zero bytes of tensor data.</summary>
    public GgufBytes Data(int dataBytes)
    {
        while (_stream.Length % 32 != 0) _w.Write((byte)0);
        _w.Write(new byte[dataBytes]);
        return this;
    }

    public string WriteTo(string path)
    {
        _w.Flush();
        File.WriteAllBytes(path, _stream.ToArray());
        return path;
    }
}

internal static class SafetensorsBytes
{
    /// <summary>Writes a safetensors file: the header length (or <paramref name="claimedHeaderLength"/>), the JSON header, then <paramref name="dataBytes"/> bytes.</summary>
    public static string Write(string path, string headerJson, int dataBytes, ulong? claimedHeaderLength = null)
    {
        byte[] header = Encoding.UTF8.GetBytes(headerJson);
        using var f = new BinaryWriter(File.Create(path));
        f.Write(claimedHeaderLength ?? (ulong)header.Length);
        f.Write(header);
        f.Write(new byte[dataBytes]);
        return path;
    }
}
