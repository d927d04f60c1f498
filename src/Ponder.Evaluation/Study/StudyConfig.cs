using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ponder.Search;

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

    /// <summary>Reads a study config file.</summary>
    public static StudyConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"study config '{path}' does not exist", path);
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses study config JSON; <paramref name="source"/> names it in errors.</summary>
    public static StudyConfig Parse(string json, string source)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }) as JsonObject
                ?? throw new InvalidDataException($"{source}: a study config must be a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not valid JSON ({e.Message})", e);
        }
        var r = new Reader(root, source);
        var known = new HashSet<string>(StringComparer.Ordinal)
        {
            "name", "policy", "prm", "reviser", "largePolicy", "dataset", "questions", "from", "to", "strategies", "budgets", "seeds", "oracleSamples",
            "oracleSeed", "oracleCache", "recordCache", "bins", "temperature", "maxStepTokens", "maxRounds", "threads", "concurrency", "kvCacheTokens",
            "ratios", "policyPretrainTokens", "largePretrainTokens", "comment",
        };
        foreach (var (key, _) in root)
            if (!known.Contains(key)) throw new InvalidDataException($"{source}: unknown field '{key}' (known: {string.Join(", ", known.Order())})");
        var defaults = new StudyConfig { Policy = "", Dataset = "", Strategies = [], Budgets = [] };
        var config = new StudyConfig
        {
            Name = r.String("name") ?? defaults.Name,
            Policy = r.String("policy") ?? throw r.Missing("policy"),
            Prm = r.String("prm"),
            Reviser = r.String("reviser"),
            LargePolicy = r.String("largePolicy"),
            Dataset = r.String("dataset") ?? throw r.Missing("dataset"),
            Questions = r.Int("questions", 1) ?? defaults.Questions,
            From = r.Int("from", 0) ?? 0,
            To = r.Int("to", 1),
            Strategies = ParseStrategies(r, root["strategies"] ?? throw r.Missing("strategies")),
            Budgets = r.IntArray("budgets", 1) ?? throw r.Missing("budgets"),
            Seeds = r.IntArray("seeds", 0)?.Select(s => (ulong)s).ToList() ?? defaults.Seeds,
            OracleSamples = r.Int("oracleSamples", 1) ?? defaults.OracleSamples,
            OracleSeed = (ulong)(r.Int("oracleSeed", 0) ?? (int)defaults.OracleSeed),
            OracleCache = r.String("oracleCache") ?? defaults.OracleCache,
            RecordCache = r.String("recordCache") ?? defaults.RecordCache,
            Bins = r.Int("bins", 1) ?? defaults.Bins,
            Temperature = (float)(r.Double("temperature", 0) ?? defaults.Temperature),
            MaxStepTokens = r.Int("maxStepTokens", 1) ?? defaults.MaxStepTokens,
            MaxRounds = r.Int("maxRounds", 1) ?? defaults.MaxRounds,
            Threads = r.Int("threads", 1),
            Concurrency = r.Int("concurrency", 1) ?? defaults.Concurrency,
            KvCacheTokens = r.Int("kvCacheTokens", 256) ?? defaults.KvCacheTokens,
            Ratios = r.DoubleArray("ratios") ?? defaults.Ratios,
            PolicyPretrainTokens = r.Long("policyPretrainTokens"),
            LargePretrainTokens = r.Long("largePretrainTokens"),
        };
        try { Tasks.ArithmeticStepChecker.Parse(config.Prm); }
        catch (ArgumentException e) { throw new InvalidDataException($"{source}: field 'prm': {e.Message}", e); }
        if (config.Budgets.Count == 0) throw new InvalidDataException($"{source}: field 'budgets' is empty");
        if (config.Budgets.Distinct().Count() != config.Budgets.Count) throw new InvalidDataException($"{source}: field 'budgets' lists a budget twice");
        if (config.Seeds.Count == 0) throw new InvalidDataException($"{source}: field 'seeds' is empty");
        if (config.To is int to && to <= config.From) throw new InvalidDataException($"{source}: field 'to' ({to}) must be greater than 'from' ({config.From})");
        return config;
    }

    static List<StrategySpec> ParseStrategies(Reader r, JsonNode node)
    {
        if (node is not JsonArray array || array.Count == 0)
            throw new InvalidDataException($"{r.Source}: field 'strategies' must be a non-empty array of {{\"name\", \"params\", \"selection\"}} objects");
        var list = new List<StrategySpec>();
        for (int i = 0; i < array.Count; i++)
        {
            string field = $"strategies[{i}]";
            if (array[i] is not JsonObject o) throw new InvalidDataException($"{r.Source}: field '{field}' must be an object");
            var sr = new Reader(o, r.Source, field + ".");
            foreach (var (key, _) in o)
                if (key is not ("name" or "params" or "selection"))
                    throw new InvalidDataException($"{r.Source}: unknown field '{field}.{key}' (known: name, params, selection)");
            string name = sr.String("name") ?? throw sr.Missing("name");
            try
            {
                var selection = StrategySpec.ParseSelection(sr.String("selection") ?? "weighted", $"{field}.selection");
                foreach (var p in sr.StringArray("params") ?? [""])
                    list.Add(StrategySpec.Parse(name, p, 0) with { Selection = selection });
            }
            catch (ArgumentException e) { throw new InvalidDataException($"{r.Source}: field '{field}': {e.Message}", e); }
        }
        return list;
    }

    /// <summary>Typed field access whose errors name the file and the field.</summary>
    sealed class Reader(JsonObject o, string source, string prefix = "")
    {
        public string Source => source;

        public InvalidDataException Missing(string key) => new($"{source}: required field '{prefix}{key}' is missing");

        InvalidDataException Bad(string key, string expected, JsonNode? node) =>
            new($"{source}: field '{prefix}{key}' = {node?.ToJsonString() ?? "null"} is not {expected}");

        public string? String(string key)
        {
            var node = o[key];
            if (node is null) return null;
            return node is JsonValue v && v.TryGetValue(out string? s) ? s : throw Bad(key, "a string", node);
        }

        public long? Long(string key)
        {
            var node = o[key];
            if (node is null) return null;
            return node is JsonValue v && v.TryGetValue(out long l) && l > 0 ? l : throw Bad(key, "a positive integer", node);
        }

        public int? Int(string key, int min)
        {
            var node = o[key];
            if (node is null) return null;
            return node is JsonValue v && v.TryGetValue(out int i) && i >= min ? i : throw Bad(key, $"an integer >= {min}", node);
        }

        public double? Double(string key, double min)
        {
            var node = o[key];
            if (node is null) return null;
            return node is JsonValue v && v.TryGetValue(out double d) && d >= min ? d : throw Bad(key, $"a number >= {min.ToString(CultureInfo.InvariantCulture)}", node);
        }

        public List<int>? IntArray(string key, int min) => Values<int>(key, $"an array of integers >= {min}",
            n => n is JsonValue v && v.TryGetValue(out int i) && i >= min ? i : (int?)null);

        public List<double>? DoubleArray(string key) => Values<double>(key, "an array of positive numbers",
            n => n is JsonValue v && v.TryGetValue(out double d) && d > 0 ? d : (double?)null);

        public List<string>? StringArray(string key) => Strings(key, "an array of strings",
            n => n is JsonValue v && v.TryGetValue(out string? s) ? s : null);

        List<T>? Values<T>(string key, string expected, Func<JsonNode?, T?> item) where T : struct =>
            ArrayOf(key, expected, n => item(n) is T t ? (true, t) : (false, default));

        List<string>? Strings(string key, string expected, Func<JsonNode?, string?> item) =>
            ArrayOf(key, expected, n => item(n) is string s ? (true, s) : (false, ""));

        List<T>? ArrayOf<T>(string key, string expected, Func<JsonNode?, (bool Ok, T Value)> item)
        {
            var node = o[key];
            if (node is null) return null;
            if (node is not JsonArray a) throw Bad(key, expected, node);
            var list = new List<T>(a.Count);
            foreach (var n in a)
            {
                var (ok, value) = item(n);
                if (!ok) throw Bad(key, expected, node);
                list.Add(value);
            }
            return list;
        }
    }
}
