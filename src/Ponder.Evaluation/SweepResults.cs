using System.Globalization;
using System.Text;
using System.Text.Json;
using Ponder.Search;

namespace Ponder.Evaluation;

/// <summary>One run of one strategy on one question with one seed: a row of a sweep.</summary>
/// <param name="Strategy">Strategy family (<see cref="StrategySpec.Name"/>), e.g. "beam".</param>
/// <param name="Params">Hyper-parameters (<see cref="StrategySpec.Params"/>), e.g. "M=4".</param>
/// <param name="Budget">Budget in generations.</param>
/// <param name="QuestionId">The question.</param>
/// <param name="Seed">The run's seed.</param>
/// <param name="Correct">Whether the selected answer was graded correct.</param>
/// <param name="Answer">The selected answer (null when none).</param>
/// <param name="Flops">Exact FLOPs spent (engine's count).</param>
/// <param name="Generations">Generations spent (engine's count).</param>
public sealed record SweepRecord(string Strategy, string Params, int Budget, string QuestionId, ulong Seed, bool Correct,
    string? Answer, long Flops, double Generations)
{
    /// <summary>The configuration across budgets, e.g. "beam(M=4)".</summary>
    public string Configuration => Params.Length == 0 ? Strategy : $"{Strategy}({Params})";

    /// <summary>The runnable spec.</summary>
    public StrategySpec Spec => StrategySpec.Parse(Strategy, Params, Budget);
}

/// <summary>Reads and writes sweep records as CSV (one row per record, RFC 4180 quoting) and JSON.</summary>
public static class SweepResults
{
    /// <summary>The CSV header.</summary>
    public const string CsvHeader = "strategy,params,budget,question,seed,correct,answer,flops,generations";

    /// <summary>Writes records as CSV. A null answer is an empty field; an empty answer is written as "".</summary>
    public static void WriteCsv(string path, IEnumerable<SweepRecord> records)
    {
        using var w = new StreamWriter(path, false, new UTF8Encoding(false));
        WriteCsv(w, records);
    }

    /// <summary>Writes records as CSV.</summary>
    public static void WriteCsv(TextWriter writer, IEnumerable<SweepRecord> records)
    {
        writer.Write(CsvHeader + "\n");
        var inv = CultureInfo.InvariantCulture;
        foreach (var r in records)
        {
            writer.Write(string.Join(",",
                Quote(r.Strategy), Quote(r.Params), r.Budget.ToString(inv), Quote(r.QuestionId), r.Seed.ToString(inv),
                r.Correct ? "1" : "0", r.Answer is null ? "" : r.Answer.Length == 0 ? "\"\"" : Quote(r.Answer),
                r.Flops.ToString(inv), r.Generations.ToString("R", inv)));
            writer.Write('\n');
        }
    }

    /// <summary>Reads a CSV written by <see cref="WriteCsv(string, IEnumerable{SweepRecord})"/>.</summary>
    public static List<SweepRecord> ReadCsv(string path)
    {
        using var r = new StreamReader(path);
        return ReadCsv(r, path);
    }

    /// <summary>Reads sweep CSV; <paramref name="source"/> names the input in errors.</summary>
    public static List<SweepRecord> ReadCsv(TextReader reader, string source)
    {
        var rows = ParseCsv(reader.ReadToEnd(), source);
        if (rows.Count == 0 || string.Join(",", rows[0].Select(f => f.Text)) != CsvHeader)
            throw new InvalidDataException($"{source}: first line must be the header '{CsvHeader}'");
        var inv = CultureInfo.InvariantCulture;
        var records = new List<SweepRecord>(rows.Count - 1);
        for (int i = 1; i < rows.Count; i++)
        {
            var f = rows[i];
            int line = i + 1;
            if (f.Count != 9) throw new InvalidDataException($"{source}: row {line} has {f.Count} fields, expected 9 ({CsvHeader})");
            T Field<T>(int k, string name, Func<string, (bool, T)> parse)
            {
                var (ok, v) = parse(f[k].Text);
                return ok ? v : throw new InvalidDataException($"{source}: row {line} field '{name}' = '{f[k].Text}' is not valid");
            }
            records.Add(new SweepRecord(
                f[0].Text, f[1].Text,
                Field(2, "budget", s => (int.TryParse(s, NumberStyles.Integer, inv, out var v), v)),
                f[3].Text,
                Field(4, "seed", s => (ulong.TryParse(s, NumberStyles.Integer, inv, out var v), v)),
                Field(5, "correct", s => (s is "0" or "1", s == "1")),
                f[6].Text.Length == 0 && !f[6].Quoted ? null : f[6].Text,
                Field(7, "flops", s => (long.TryParse(s, NumberStyles.Integer, inv, out var v), v)),
                Field(8, "generations", s => (double.TryParse(s, NumberStyles.Float, inv, out var v), v))));
        }
        return records;
    }

    /// <summary>Writes records as a JSON array.</summary>
    public static void WriteJson(string path, IEnumerable<SweepRecord> records) =>
        File.WriteAllText(path, JsonSerializer.Serialize(records.ToList(), JsonOptions));

    /// <summary>Reads records written by <see cref="WriteJson"/>.</summary>
    public static List<SweepRecord> ReadJson(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<List<SweepRecord>>(File.ReadAllText(path), JsonOptions)
                ?? throw new InvalidDataException($"{path}: sweep JSON is null");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not sweep JSON: {e.Message}", e);
        }
    }

    static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    static string Quote(string s) =>
        s.AsSpan().IndexOfAny(",\"\n\r") < 0 && s.Trim().Length == s.Length ? s : "\"" + s.Replace("\"", "\"\"") + "\"";

    readonly record struct CsvField(string Text, bool Quoted);

    static List<List<CsvField>> ParseCsv(string text, string source)
    {
        var rows = new List<List<CsvField>>();
        var row = new List<CsvField>();
        var field = new StringBuilder();
        bool quoted = false, inQuotes = false, any = false;
        int line = 1;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (inQuotes)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                else if (c == '"') inQuotes = false;
                else { if (c == '\n') line++; field.Append(c); }
                continue;
            }
            switch (c)
            {
                case '"' when field.Length == 0 && !quoted: inQuotes = quoted = any = true; break;
                case '"': throw new InvalidDataException($"{source}: line {line}: stray quote inside an unquoted field");
                case ',': row.Add(new(field.ToString(), quoted)); field.Clear(); quoted = false; any = true; break;
                case '\r': break;
                case '\n':
                    if (any || field.Length > 0) { row.Add(new(field.ToString(), quoted)); rows.Add(row); }
                    row = []; field.Clear(); quoted = false; any = false; line++;
                    break;
                default: field.Append(c); any = true; break;
            }
        }
        if (inQuotes) throw new InvalidDataException($"{source}: unterminated quoted field at end of file");
        if (any || field.Length > 0) { row.Add(new(field.ToString(), quoted)); rows.Add(row); }
        return rows;
    }
}
