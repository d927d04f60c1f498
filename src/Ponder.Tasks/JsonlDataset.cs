using System.Text.Json;
using System.Text.Json.Nodes;

namespace Ponder.Tasks;

/// <summary>One question of a dataset with its reference answer.</summary>
public sealed record DatasetItem(string Question, string Answer);

/// <summary>
/// A question/answer dataset read from JSONL (one object per line with <c>question</c> and <c>answer</c>; MATH-500
/// style files use <c>problem</c> for the question, which is accepted too), graded by a pluggable extractor and
/// comparer. The arithmetic-chain splits load here as well.
/// </summary>
public sealed class JsonlDataset : ITask
{
    readonly Dictionary<string, string> answers;
    readonly Func<string, string> prompt;
    readonly Func<string, string?> extractor;
    readonly Func<string, string, bool> matches;

    /// <summary>The items in file order.</summary>
    public IReadOnlyList<DatasetItem> Items { get; }

    /// <summary>
    /// Builds a task over <paramref name="items"/>. Defaults: prompt <c>"Q: {question}\n"</c>, the <c>A: n</c>
    /// integer extractor, and exact string match after trimming.
    /// </summary>
    public JsonlDataset(IReadOnlyList<DatasetItem> items, Func<string, string>? prompt = null,
        Func<string, string?>? extractor = null, Func<string, string, bool>? matches = null)
    {
        Items = items;
        answers = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var item in items) answers.TryAdd(item.Question, item.Answer);
        this.prompt = prompt ?? (q => "Q: " + q + "\n");
        this.extractor = extractor ?? AnswerExtractors.IntegerAnswerLine;
        this.matches = matches ?? ((expected, got) => string.Equals(expected.Trim(), got.Trim(), StringComparison.Ordinal));
    }

    /// <summary>Reads a JSONL file; throws <see cref="InvalidDataException"/> naming the file and line when a record lacks a question or answer.</summary>
    public static JsonlDataset Load(string path, Func<string, string>? prompt = null,
        Func<string, string?>? extractor = null, Func<string, string, bool>? matches = null)
    {
        var items = new List<DatasetItem>();
        int lineNo = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonObject o;
            try { o = JsonNode.Parse(line) as JsonObject ?? throw new InvalidDataException($"{path}:{lineNo}: not a JSON object"); }
            catch (JsonException e) { throw new InvalidDataException($"{path}:{lineNo}: not valid JSON ({e.Message})", e); }
            string q = Text(o["question"] ?? o["problem"]) ?? throw new InvalidDataException($"{path}:{lineNo}: no 'question' (or 'problem') string");
            string a = Text(o["answer"]) ?? throw new InvalidDataException($"{path}:{lineNo}: no 'answer'");
            items.Add(new DatasetItem(q, a));
        }
        return new JsonlDataset(items, prompt, extractor, matches);
    }

    static string? Text(JsonNode? node) => node is JsonValue v
        ? v.TryGetValue(out string? s) ? s : v.ToJsonString()
        : null;

    /// <inheritdoc/>
    public string Prompt(string question) => prompt(question);

    /// <inheritdoc/>
    public string? ExtractAnswer(string completion) => extractor(completion);

    /// <inheritdoc/>
    public bool Grade(string question, string completion)
    {
        if (!answers.TryGetValue(question, out string? expected))
            throw new ArgumentException($"question '{question}' is not in this dataset", nameof(question));
        string? got = extractor(completion);
        return got is not null && matches(expected, got);
    }
}
