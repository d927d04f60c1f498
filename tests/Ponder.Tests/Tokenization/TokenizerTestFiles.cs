namespace Ponder.Tests.Tokenization;

/// <summary>A temporary folder for tokenizer files, deleted on dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ponder-tok-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public string Write(string name, string text)
    {
        string path = File(name);
        System.IO.File.WriteAllText(path, text);
        return path;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }

    /// <summary>The checked-in hand-built byte-level BPE (ids 0..255 bytes; merges Ġ+t=256, h+e=257, Ġt+he=258, 1+7=259; 260 &lt;|endoftext|&gt;, 261 &lt;|im_end|&gt;).</summary>
    public static string TinyByteLevelJson =>
        System.IO.Path.Combine(AppContext.BaseDirectory, "Tokenization", "Data", "tiny-bytelevel.json");

    /// <summary>A folder holding the tiny tokenizer as tokenizer.json plus the given side files.</summary>
    public static TempFolder WithTiny(params (string Name, string Text)[] sideFiles)
    {
        var folder = new TempFolder();
        System.IO.File.Copy(TinyByteLevelJson, folder.File("tokenizer.json"));
        foreach (var (name, text) in sideFiles) folder.Write(name, text);
        return folder;
    }
}
