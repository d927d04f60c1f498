using System.Text;

namespace Ponder.Training;

/// <summary>
/// The byte-level vocabulary of Ponder's own models: ids 0..255 are raw UTF-8 bytes, then three specials.
/// </summary>
public static class ByteTokenizer
{
    /// <summary>Beginning of sequence.</summary>
    public const int Bos = 256;
    /// <summary>End of sequence (the policy stops here).</summary>
    public const int Eos = 257;
    /// <summary>Padding (never a target).</summary>
    public const int Pad = 258;
    /// <summary>Vocabulary size: 256 bytes + 3 specials.</summary>
    public const int VocabSize = 259;

    /// <summary>The special tokens' text forms, by id.</summary>
    public static IReadOnlyDictionary<string, int> Specials { get; } = new Dictionary<string, int> { ["<|bos|>"] = Bos, ["<|eos|>"] = Eos, ["<|pad|>"] = Pad };

    /// <summary>The UTF-8 bytes of <paramref name="text"/> as token ids.</summary>
    public static int[] Encode(string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        var ids = new int[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) ids[i] = bytes[i];
        return ids;
    }

    /// <summary>Text of the byte tokens in <paramref name="ids"/>; specials are skipped.</summary>
    public static string Decode(ReadOnlySpan<int> ids)
    {
        var bytes = new List<byte>(ids.Length);
        foreach (int id in ids) if (id is >= 0 and < 256) bytes.Add((byte)id);
        return Encoding.UTF8.GetString(bytes.ToArray());
    }
}
