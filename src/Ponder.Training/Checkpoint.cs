using System.Runtime.InteropServices;
using Ponder.Models;

namespace Ponder.Training;

/// <summary>Where a training run stands: the next step to run, the data cursor, and the seed every random stream derives from.</summary>
public sealed record TrainingState(long Step, long DataCursor, ulong Seed);

/// <summary>
/// A training checkpoint: model config, training state, and every parameter with its AdamW moments, in one binary file.
/// <code>
/// "PONDRCK1" | config.json (string) | step, cursor (int64) | seed (uint64) | count (int32)
/// count x [ name (string) | rank (int32) | dims (int32 x rank) | value | m | v (f32 x elements each) ]
/// </code>
/// Strings are .NET BinaryWriter strings (7-bit length prefix, UTF-8); numbers little-endian. Dropout and data
/// order are pure functions of (seed, step, cursor), so restoring these reproduces the next step exactly.
/// </summary>
public static class Checkpoint
{
    const string Magic = "PONDRCK1";

    /// <summary>Writes atomically (to a temporary file, then renamed over <paramref name="path"/>).</summary>
    public static void Save(string path, ParameterSet parameters, TrainingState state)
    {
        string tmp = path + ".tmp";
        using (var w = new BinaryWriter(File.Create(tmp)))
        {
            w.Write(System.Text.Encoding.ASCII.GetBytes(Magic));
            w.Write(parameters.Config.ToHuggingFaceJson());
            w.Write(state.Step); w.Write(state.DataCursor); w.Write(state.Seed);
            w.Write(parameters.All.Count);
            foreach (var p in parameters.All)
            {
                w.Write(p.Name);
                w.Write(p.Value.Shape.Length);
                foreach (int s in p.Value.Shape) w.Write(s);
                w.Write(MemoryMarshal.AsBytes(p.Data.AsSpan()));
                w.Write(MemoryMarshal.AsBytes(p.M.AsSpan()));
                w.Write(MemoryMarshal.AsBytes(p.V.AsSpan()));
            }
        }
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Reads a checkpoint; throws <see cref="InvalidDataException"/> naming the file and what is wrong.</summary>
    public static (ParameterSet Parameters, TrainingState State) Load(string path)
    {
        using var r = new BinaryReader(File.OpenRead(path));
        try
        {
            if (System.Text.Encoding.ASCII.GetString(r.ReadBytes(8)) != Magic)
                throw new InvalidDataException($"{path}: not a Ponder checkpoint (bad magic)");
            var config = ModelConfig.FromHuggingFaceJson(r.ReadString(), path);
            var state = new TrainingState(r.ReadInt64(), r.ReadInt64(), r.ReadUInt64());
            var parameters = new ParameterSet(config);
            int count = r.ReadInt32();
            if (count != parameters.All.Count)
                throw new InvalidDataException($"{path}: holds {count} tensors, the config expects {parameters.All.Count}");
            for (int i = 0; i < count; i++)
            {
                string name = r.ReadString();
                if (!parameters.Contains(name)) throw new InvalidDataException($"{path}: unexpected tensor '{name}'");
                var p = parameters[name];
                int rank = r.ReadInt32();
                var shape = new int[rank];
                for (int j = 0; j < rank; j++) shape[j] = r.ReadInt32();
                if (!shape.SequenceEqual(p.Value.Shape))
                    throw new InvalidDataException($"{path}: tensor '{name}' has shape [{string.Join(", ", shape)}], expected [{string.Join(", ", p.Value.Shape)}]");
                foreach (float[] buf in new[] { p.Data, p.M, p.V })
                    r.BaseStream.ReadExactly(MemoryMarshal.AsBytes(buf.AsSpan()));
            }
            return (parameters, state);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{path}: truncated checkpoint", e);
        }
    }
}
