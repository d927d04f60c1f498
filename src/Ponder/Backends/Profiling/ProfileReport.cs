using System.Text.Json;

namespace Ponder.Backends.Profiling;

/// <summary>One row of the summary: every launch of one op kind.</summary>
/// <param name="RooflineFraction">Σ roofline-bound time / Σ elapsed time (1 = at the roofline), or NaN without a roofline.</param>
/// <param name="CpuMs">CPU milliseconds the process spent in these launches (all threads), NaN when not recorded.</param>
/// <param name="GflopsPerCpuSecond">FLOPs per CPU second (GFLOP per CPU-s): the op's efficiency whatever else shares the cores.</param>
public sealed record OpSummary(string Op, int Calls, double TotalMs, double PercentTime, long Flops, long Bytes, double Gflops, double GBps, double RooflineFraction,
    double CpuMs = double.NaN, double GflopsPerCpuSecond = double.NaN);

/// <summary>Turns <see cref="OpRecord"/>s into a per-op summary and a Chrome trace-event file (Perfetto, chrome://tracing).</summary>
public static class ProfileReport
{
    /// <summary>Per op kind, sorted by total time (largest first).</summary>
    public static IReadOnlyList<OpSummary> Summarize(IReadOnlyList<OpRecord> records, Roofline? roofline)
    {
        double totalUs = records.Sum(r => r.DurationUs);
        return records.GroupBy(r => r.Op).Select(g =>
        {
            double us = g.Sum(r => r.DurationUs);
            long flops = g.Sum(r => r.Flops), bytes = g.Sum(r => r.Bytes);
            double seconds = us / 1e6;
            double bound = roofline is null ? double.NaN : g.Sum(r => roofline.BoundSeconds(r.Flops, r.Bytes));
            double cpuMs = g.Sum(r => r.CpuUs) / 1e3;
            return new OpSummary(g.Key, g.Count(), us / 1e3, totalUs > 0 ? 100 * us / totalUs : 0, flops, bytes,
                seconds > 0 ? flops / seconds / 1e9 : 0, seconds > 0 ? bytes / seconds / 1e9 : 0, seconds > 0 ? bound / seconds : double.NaN,
                cpuMs, cpuMs > 0 ? flops / (cpuMs / 1e3) / 1e9 : double.NaN);
        }).OrderByDescending(s => s.TotalMs).ToList();
    }

    /// <summary>
    /// Writes the records as complete ("X") trace events, one per op, microsecond timestamps; the phase is the
    /// thread lane, and args carry shape, FLOPs and bytes.
    /// </summary>
    public static void WriteChromeTrace(IReadOnlyList<OpRecord> records, Stream stream, string processName)
    {
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = false });
        var lanes = records.Select(r => r.Phase).Distinct().Select((p, i) => (p, i)).ToDictionary(x => x.p, x => x.i + 1);
        w.WriteStartObject();
        w.WriteString("displayTimeUnit", "ms");
        w.WriteStartArray("traceEvents");
        foreach (var r in records)
        {
            w.WriteStartObject();
            w.WriteString("name", r.Op);
            w.WriteString("cat", "op");
            w.WriteString("ph", "X");
            w.WriteNumber("ts", Math.Round(r.StartUs, 3));
            w.WriteNumber("dur", Math.Round(r.DurationUs, 3));
            w.WriteNumber("pid", 1);
            w.WriteNumber("tid", lanes[r.Phase]);
            w.WriteStartObject("args");
            w.WriteString("shape", r.Shape);
            w.WriteString("phase", r.Phase);
            w.WriteNumber("flops", r.Flops);
            w.WriteNumber("bytes", r.Bytes);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartObject("otherData");
        w.WriteString("process", processName);
        w.WriteEndObject();
        w.WriteEndObject();
    }
}
