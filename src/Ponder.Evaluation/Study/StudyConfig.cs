using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Ponder.Search;
using Ponder.Tasks;

namespace Ponder.Evaluation.Study;

/// <summary>
/// A study: which models, which questions, which strategies at which budgets and seeds, and how difficulty is
/// estimated. Read from JSON by <see cref="Load"/> (every error names the file and the field). Relative paths are
/// resolved against a base directory (the repository root for <c>ponder demo</c>, the working directory for
/// <c>ponder sweep</c>).
/// </summary>
public sealed record StudyConfig
{
    /// <summary>Study name (report titles, output folder default).</summary>
    public string Name { get; init; } = "study";
    /// <summary>Policy model path (folder or GGUF).</summary>
    public required string Policy { get; init; }
    /// <summary>
    /// Value-head PRM path; null or missing file = no verifier (majority-only fallback). <see cref="SharedPrm"/>
    /// ("shared"): the policy's own value row scores the steps (a policy with <c>"ponder_value_head": 1</c>).
    /// "exact", "random" or "noisy:&lt;auc&gt;": the task's step checker (or a degraded copy) scores them, no model.
    /// </summary>
    public string? Prm { get; init; }

    /// <summary>The <see cref="Prm"/> value that selects the policy's shared value head as the verifier.</summary>
    public const string SharedPrm = "shared";

    /// <summary>Whether the verifier is the policy's shared value head (<c>"prm": "shared"</c>).</summary>
    public bool UsesSharedPrm => Prm == SharedPrm;
    /// <summary>Revision model (writes a new attempt after previous ones) for the revisions strategy; null or missing = revisions are skipped.</summary>
    public string? Reviser { get; init; }
    /// <summary>A larger policy for the FLOPs-matched comparison; null or missing = that part is skipped.</summary>
    public string? LargePolicy { get; init; }
    /// <summary>Question file: arithmetic-chain JSONL (question, answer, ...).</summary>
    public required string Dataset { get; init; }
    /// <summary>How many questions to use, evenly spaced over [<see cref="From"/>, <see cref="To"/>) of the file.</summary>
    public int Questions { get; init; } = 100;
    /// <summary>First line (0-based) of the range questions are drawn from.</summary>
    public int From { get; init; }
    /// <summary>End of the range (exclusive); null = end of file.</summary>
    public int? To { get; init; }
    /// <summary>
    /// Strategy settings to sweep, each run at every budget (their own <see cref="StrategySpec.Budget"/> is 0). In JSON
    /// one entry <c>{"name", "params": [...], "selection"}</c> is one setting per params string.
    /// </summary>
    [JsonConverter(typeof(StudyStrategiesConverter))]
    public required IReadOnlyList<StrategySpec> Strategies { get; init; }
    /// <summary>Budgets in generations.</summary>
    public required IReadOnlyList<int> Budgets { get; init; }
    /// <summary>Seeds (every run is repeated per seed).</summary>
    public IReadOnlyList<ulong> Seeds { get; init; } = [1];
    /// <summary>Oracle samples per question (K; the paper used 2048).</summary>
    public int OracleSamples { get; init; } = 16;
    /// <summary>Seed of the oracle samples (part of the cache key).</summary>
    public ulong OracleSeed { get; init; } = 7;
    /// <summary>Oracle sample cache (JSONL).</summary>
    public string OracleCache { get; init; } = "out/study-cache/oracle-samples.jsonl";
    /// <summary>Sweep record cache (JSONL): runs found there under the same models, settings and job are not rerun.</summary>
    public string RecordCache { get; init; } = "out/study-cache/records.jsonl";
    /// <summary>Difficulty bins.</summary>
    public int Bins { get; init; } = DifficultyBins.DefaultBins;
    /// <summary>Sampling temperature of proposals.</summary>
    public float Temperature { get; init; } = 1f;
    /// <summary>Longest step in tokens.</summary>
    public int MaxStepTokens { get; init; } = 32;
    /// <summary>Most step rounds per solution.</summary>
    public int MaxRounds { get; init; } = 16;
    /// <summary>CPU threads of the shared backend (null = all cores).</summary>
    public int? Threads { get; init; }
    /// <summary>Searches run at once (their forwards are batched together).</summary>
    public int Concurrency { get; init; } = 16;
    /// <summary>KV cache capacity per model, in tokens.</summary>
    public int KvCacheTokens { get; init; } = 65536;
    /// <summary>R values of the FLOPs-matched comparison.</summary>
    public IReadOnlyList<double> Ratios { get; init; } = FlopsMatched.PaperRatios;
    /// <summary>D_pretrain of the policy (tokens); null = read "D_pretrain = N" from its model card.</summary>
    public long? PolicyPretrainTokens { get; init; }
    /// <summary>D_pretrain of the larger policy; null = from its model card.</summary>
    public long? LargePretrainTokens { get; init; }

    /// <summary>A free-text note in the file (ignored).</summary>
    public string? Comment { get; init; }

    /// <summary>Reads a study config file (<see cref="ConfigJson"/>), then <see cref="Validate"/>s it.</summary>
    public static StudyConfig Load(string path) => ConfigJson.Load<StudyConfig>(path, "study config").Validate(path);

    /// <summary>Parses study config JSON, then <see cref="Validate"/>s it; <paramref name="source"/> names it in errors.</summary>
    public static StudyConfig Parse(string json, string source) => ConfigJson.Parse<StudyConfig>(json, source, "study config").Validate(source);

    /// <summary>Throws <see cref="InvalidDataException"/> naming <paramref name="source"/> and the field when a value is impossible.</summary>
    public StudyConfig Validate(string source)
    {
        InvalidDataException Bad(string field, object? value, string expected) =>
            new($"{source}: field '{field}' = {Show(value)} must be {expected}");
        void AtLeast(string field, long value, long min) { if (value < min) throw Bad(field, value, $">= {min}"); }
        if (string.IsNullOrWhiteSpace(Policy)) throw Bad("policy", Policy, "a model path");
        if (string.IsNullOrWhiteSpace(Dataset)) throw Bad("dataset", Dataset, "a question file");
        AtLeast("questions", Questions, 1);
        AtLeast("from", From, 0);
        if (To is int to && to <= From) throw Bad("to", to, $"greater than 'from' ({From})");
        if (Strategies is null || Strategies.Count == 0) throw Bad("strategies", "[]", "a non-empty array of {\"name\", \"params\", \"selection\"} objects");
        if (Budgets is null || Budgets.Count == 0) throw Bad("budgets", "[]", "a non-empty array of budgets");
        foreach (int b in Budgets) if (b < 1) throw Bad("budgets", Budgets, "integers >= 1");
        if (Budgets.Distinct().Count() != Budgets.Count) throw Bad("budgets", Budgets, "distinct (a budget is listed twice)");
        if (Seeds is null || Seeds.Count == 0) throw Bad("seeds", "[]", "a non-empty array");
        AtLeast("oracleSamples", OracleSamples, 1);
        AtLeast("bins", Bins, 1);
        if (!(Temperature >= 0)) throw Bad("temperature", Temperature, ">= 0");
        AtLeast("maxStepTokens", MaxStepTokens, 1);
        AtLeast("maxRounds", MaxRounds, 1);
        if (Threads is int t) AtLeast("threads", t, 1);
        AtLeast("concurrency", Concurrency, 1);
        AtLeast("kvCacheTokens", KvCacheTokens, 256);
        if (Ratios is null || Ratios.Any(r => !(r > 0))) throw Bad("ratios", Ratios, "positive numbers");
        if (PolicyPretrainTokens is long pp) AtLeast("policyPretrainTokens", pp, 1);
        if (LargePretrainTokens is long lp) AtLeast("largePretrainTokens", lp, 1);
        try { Tasks.ArithmeticStepChecker.Parse(Prm); }
        catch (ArgumentException e) { throw new InvalidDataException($"{source}: field 'prm': {e.Message}", e); }
        return this;
    }

    static string Show(object? value) => value switch
    {
        null => "null",
        string s => $"'{s}'",
        System.Collections.IEnumerable e => "[" + string.Join(", ", e.Cast<object>().Select(v => Convert.ToString(v, CultureInfo.InvariantCulture))) + "]",
        _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "",
    };
}

/// <summary>
/// Reads a study config's <c>strategies</c>: an array of <c>{"name", "params": [...], "selection"}</c> entries, each
/// one <see cref="StrategySpec"/> template (budget 0) per params string; writes them back one entry per template.
/// </summary>
sealed class StudyStrategiesConverter : JsonConverter<IReadOnlyList<StrategySpec>>
{
    sealed record Entry
    {
        [JsonRequired] public string Name { get; init; } = "";
        public IReadOnlyList<string>? Params { get; init; }
        public string? Selection { get; init; }
    }

    public override IReadOnlyList<StrategySpec> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var entries = JsonSerializer.Deserialize<List<Entry?>>(ref reader, options) ?? throw new JsonException("'strategies' must be an array");
        var list = new List<StrategySpec>();
        for (int i = 0; i < entries.Count; i++)
        {
            var e = entries[i] ?? throw new JsonException($"field 'strategies[{i}]' must be an object");
            string field = $"strategies[{i}]";
            try
            {
                var selection = StrategySpec.ParseSelection(e.Selection ?? "weighted", $"{field}.selection");
                foreach (var p in e.Params ?? [""])
                {
                    try { list.Add(StrategySpec.Parse(e.Name, p, 0) with { Selection = selection }); }
                    catch (ArgumentException x) when (x.ParamName == "parameters" || x.ParamName is null) { throw new ArgumentException(x.Message, $"{field}.params", x); }
                    catch (ArgumentException x) { throw new ArgumentException(x.Message, $"{field}.name", x); }
                }
            }
            catch (ArgumentException x)
            {
                throw new JsonException($"field '{x.ParamName}': {StripParam(x)}", x);
            }
        }
        return list;
    }

    static string StripParam(ArgumentException e) =>
        e.ParamName is { } p && e.Message.EndsWith($" (Parameter '{p}')", StringComparison.Ordinal) ? e.Message[..^($" (Parameter '{p}')".Length)] : e.Message;

    public override void Write(Utf8JsonWriter writer, IReadOnlyList<StrategySpec> value, JsonSerializerOptions options)
    {
        writer.WriteStartArray();
        foreach (var s in value)
        {
            writer.WriteStartObject();
            writer.WriteString("name", s.Name);
            writer.WriteStartArray("params");
            writer.WriteStringValue(s.Params);
            writer.WriteEndArray();
            writer.WriteString("selection", StrategySpec.SelectionName(s.Selection));
            writer.WriteEndObject();
        }
        writer.WriteEndArray();
    }
}
