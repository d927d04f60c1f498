using System.Globalization;
using Ponder.Models;

namespace Ponder.Training;

/// <summary>
/// Early stopping for a fine-tuning run: the parameters with the lowest validation loss so far, kept as a checkpoint
/// (<c>best.bin</c>) with its step and loss (<c>best.txt</c>) in the run's folder. The file, not memory, is the record,
/// so a run that resumes, or is re-run after finishing, restores the same parameters.
/// </summary>
public sealed class BestParameters
{
    /// <summary>Checkpoint file name of the kept parameters.</summary>
    public const string CheckpointFile = "best.bin";
    const string InfoFile = "best.txt";

    readonly string checkpointPath, infoPath;

    /// <summary>Step of the kept parameters (0: none yet).</summary>
    public long Step { get; private set; }
    /// <summary>Their validation loss (+infinity: none yet).</summary>
    public double Loss { get; private set; } = double.PositiveInfinity;

    BestParameters(string dir)
    {
        checkpointPath = Path.Combine(dir, CheckpointFile);
        infoPath = Path.Combine(dir, InfoFile);
    }

    /// <summary>
    /// The record in <paramref name="dir"/> for a run resuming at <paramref name="resumeStep"/>. A record from after
    /// that step (or any record when starting from step 0) belongs to a stretch the run is about to redo, so it is dropped.
    /// </summary>
    public static BestParameters Open(string dir, long resumeStep)
    {
        var b = new BestParameters(dir);
        if (File.Exists(b.infoPath) && File.Exists(b.checkpointPath))
        {
            var cells = File.ReadAllText(b.infoPath).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (cells.Length != 2 || !long.TryParse(cells[0], CultureInfo.InvariantCulture, out long step)
                || !double.TryParse(cells[1], CultureInfo.InvariantCulture, out double loss))
                throw new InvalidDataException($"{b.infoPath}: expected '<step> <validation loss>', found '{File.ReadAllText(b.infoPath).Trim()}'");
            if (step > 0 && step <= resumeStep) (b.Step, b.Loss) = (step, loss);
        }
        if (b.Step == 0) { File.Delete(b.infoPath); File.Delete(b.checkpointPath); }
        return b;
    }

    /// <summary>Keeps <paramref name="parameters"/> when <paramref name="loss"/> is below every earlier one (ties keep the earlier step).</summary>
    public bool Offer(long step, double loss, ParameterSet parameters, TrainingState state)
    {
        if (!(loss < Loss)) return false;
        Checkpoint.Save(checkpointPath, parameters, state);
        File.WriteAllText(infoPath, string.Create(CultureInfo.InvariantCulture, $"{step} {loss:R}\n"));
        (Step, Loss) = (step, loss);
        return true;
    }

    /// <summary>Copies the kept parameters into <paramref name="parameters"/>; leaves them as they are when nothing was kept.</summary>
    public void Restore(ParameterSet parameters)
    {
        if (Step == 0) return;
        var (kept, _) = Checkpoint.Load(checkpointPath);
        foreach (var t in parameters.All) kept[t.Name].Data.CopyTo(t.Data, 0);
    }
}
