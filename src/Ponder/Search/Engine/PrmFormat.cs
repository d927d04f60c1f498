using System.Text.Json.Serialization;
using Ponder.Models;
using Ponder.Scheduling;

namespace Ponder.Search.Engine;

/// <summary>
/// How a separate PRM scores steps, read from <c>prm.json</c> next to its weights (in a model folder, or in the folder
/// of a <c>.gguf</c> file). Without the file, a model whose config has a value head (<c>*ForTokenClassification</c>,
/// <c>score.weight</c>) is a value-head PRM, and one with a process reward head (<c>Qwen2ForProcessRewardModel</c>) is
/// read at the separator <c>&lt;extra_0&gt;</c>.
/// <code>
///   {"format": "value_head"}                                               the value head (as without prm.json)
///   {"format": "process_reward"}                                           the process reward head (as without prm.json)
///   {"format": "process_reward", "step_tag": "&lt;extra_0&gt;"}                  ... with another separator (or "step_tag_ids")
///   {"format": "token_logit", "step_tag": " ки", "good_token": "+", "bad_token": "-"}     Math-Shepherd style
///   {"format": "token_logit", "step_tag_ids": [12902], "good_token_id": 648, "bad_token_id": 387}
/// </code>
/// A token-logit PRM is a causal LM: the step tag is appended after every step, and the score is the softmax
/// probability of the good token among {good, bad} at the tag's last token (<see cref="TokenLogitVerifier"/>). Each of
/// the tag and the two candidates is given either as text (encoded by the PRM's tokenizer, special-token text mapping to
/// its id; a candidate must encode to exactly one token) or as ids, not both. A process reward head appends its
/// separator (<c>step_tag</c>) the same way and reads its two labels there (<see cref="ProcessRewardVerifier"/>).
/// </summary>
public sealed record PrmFormat
{
    /// <summary>The file's name in a model folder.</summary>
    public const string FileName = "prm.json";

    /// <summary><c>value_head</c>, <c>process_reward</c> or <c>token_logit</c>.</summary>
    [JsonPropertyName("format")] public string? Format { get; init; }
    /// <summary>Step tag text appended after each step (token_logit; the separator of process_reward).</summary>
    [JsonPropertyName("step_tag")] public string? StepTag { get; init; }
    /// <summary>Step tag token ids (token_logit), instead of <see cref="StepTag"/>.</summary>
    [JsonPropertyName("step_tag_ids")] public int[]? StepTagIds { get; init; }
    /// <summary>The "good" candidate token's text (token_logit).</summary>
    [JsonPropertyName("good_token")] public string? GoodToken { get; init; }
    /// <summary>The "good" candidate token's id, instead of <see cref="GoodToken"/>.</summary>
    [JsonPropertyName("good_token_id")] public int? GoodTokenId { get; init; }
    /// <summary>The "bad" candidate token's text (token_logit).</summary>
    [JsonPropertyName("bad_token")] public string? BadToken { get; init; }
    /// <summary>The "bad" candidate token's id, instead of <see cref="BadToken"/>.</summary>
    [JsonPropertyName("bad_token_id")] public int? BadTokenId { get; init; }

    /// <summary>The formats <see cref="Format"/> may name.</summary>
    public const string Supported = "value_head, process_reward, token_logit";

    /// <summary>
    /// Reads <c>prm.json</c> of the model at <paramref name="modelLocation"/>: in the folder, or beside the file (a
    /// <c>.gguf</c>); null when there is none (or the location is neither, as for a model built in memory).
    /// </summary>
    public static PrmFormat? Read(string modelLocation)
    {
        ArgumentNullException.ThrowIfNull(modelLocation);
        if (!Directory.Exists(modelLocation) && !File.Exists(modelLocation)) return null;
        string path = FormatPath(modelLocation);
        return File.Exists(path) ? ConfigJson.Load<PrmFormat>(path, "PRM format") : null;
    }

    /// <summary>Where the <c>prm.json</c> of the model at <paramref name="modelLocation"/> (a folder or a file) lies.</summary>
    static string FormatPath(string modelLocation) =>
        Directory.Exists(modelLocation) ? Path.Combine(modelLocation, FileName)
        : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(modelLocation)) ?? ".", FileName);

    /// <summary>
    /// The verifier for a loaded PRM (see <see cref="StepVerifier.ForPrm"/>): everything is checked before the model
    /// moves onto <paramref name="runOn"/>, so a bad format leaves it where it was.
    /// </summary>
    internal static StepVerifier CreateVerifier(PonderModel prm, StepScheduler? runOn)
    {
        var create = Resolve(prm);
        if (runOn is not null) prm.RunOn(runOn, "prm");
        return create(prm.Scheduled);
    }

    static Func<ScheduledModel, StepVerifier> Resolve(PonderModel prm)
    {
        ArgumentNullException.ThrowIfNull(prm);
        var format = Read(prm.Location);
        string source = FormatPath(prm.Location);
        int vocab = prm.Config.Vocab;
        string HeadText() => prm.Config.Head switch
        {
            HeadKind.Value => "a value head (score.weight)",
            HeadKind.ProcessReward => "a process reward head (score.0 / ReLU / score.2)",
            _ => "a language-model head",
        };
        int[] Tokens(string? text, int[]? ids, string textField, string idsField)
        {
            if ((text is null) == (ids is null))
                throw new InvalidDataException($"{source}: give exactly one of '{textField}' and '{idsField}'");
            int[] tokens = ids ?? (prm.Tokenizer ?? throw new InvalidDataException($"{source}: field '{textField}' is text, but the model has no tokenizer: give '{idsField}'"))
                .Encode(text!, addSpecialTokens: false);
            string field = ids is null ? textField : idsField;
            if (tokens.Length == 0) throw new InvalidDataException($"{source}: field '{field}' has no tokens");
            foreach (int id in tokens)
                if ((uint)id >= (uint)vocab) throw new InvalidDataException($"{source}: field '{field}': token {id} is outside the vocabulary (0..{vocab - 1})");
            return tokens;
        }
        bool HasCandidates() => format.GoodToken is not null || format.GoodTokenId is not null || format.BadToken is not null || format.BadTokenId is not null;

        switch (format?.Format)
        {
            case null when format is null:
                return prm.Config.Head switch
                {
                    HeadKind.Value => m => new ValueHeadVerifier(m),
                    HeadKind.ProcessReward => DefaultSeparator(prm),
                    _ => throw new ArgumentException($"PRM '{prm.Location}' is a language model without {FileName}: a token-logit PRM needs one naming its step tag and candidate tokens, a value-head PRM needs score.weight", nameof(prm)),
                };
            case null:
                throw new InvalidDataException($"{source}: field 'format' is missing (one of: {Supported})");
            case "value_head":
                if (format.StepTag is not null || format.StepTagIds is not null || HasCandidates())
                    throw new InvalidDataException($"{source}: format 'value_head' takes no step tag or candidate tokens (those are for 'token_logit')");
                if (prm.Config.Head != HeadKind.Value)
                    throw new InvalidDataException($"{source}: format 'value_head', but the model has {HeadText()}");
                return m => new ValueHeadVerifier(m);
            case "process_reward":
                if (HasCandidates())
                    throw new InvalidDataException($"{source}: format 'process_reward' reads the head's two labels; it takes no candidate tokens (those are for 'token_logit')");
                if (prm.Config.Head != HeadKind.ProcessReward)
                    throw new InvalidDataException($"{source}: format 'process_reward' needs a process reward head (Qwen2ForProcessRewardModel: score.0 / ReLU / score.2), but the model has {HeadText()}");
                if (format.StepTag is null && format.StepTagIds is null) return DefaultSeparator(prm);
                var separator = Tokens(format.StepTag, format.StepTagIds, "step_tag", "step_tag_ids");
                return m => new ProcessRewardVerifier(m, separator);
            case "token_logit":
                if (prm.Config.Head != HeadKind.LanguageModel)
                    throw new InvalidDataException($"{source}: format 'token_logit' reads a language-model head's logits, but the model has {HeadText()}");
                int Candidate(string? text, int? id, string textField, string idField)
                {
                    var tokens = Tokens(text, id is int i ? [i] : null, textField, idField);
                    if (tokens.Length != 1)
                        throw new InvalidDataException($"{source}: field '{textField}' encodes to {tokens.Length} tokens ({string.Join(", ", tokens)}); a candidate must be one token");
                    return tokens[0];
                }
                var tag = Tokens(format.StepTag, format.StepTagIds, "step_tag", "step_tag_ids");
                int good = Candidate(format.GoodToken, format.GoodTokenId, "good_token", "good_token_id");
                int bad = Candidate(format.BadToken, format.BadTokenId, "bad_token", "bad_token_id");
                if (good == bad) throw new InvalidDataException($"{source}: the good and bad candidates are the same token ({good})");
                return m => new TokenLogitVerifier(m, tag, good, bad);
            default:
                throw new InvalidDataException($"{source}: field 'format' = '{format.Format}' is not supported (supported: {Supported})");
        }
    }

    /// <summary>
    /// A process reward head's verifier with <see cref="ProcessRewardVerifier.DefaultSeparator"/>, which the PRM's own
    /// tokenizer must encode as one token (an added token, as Qwen2.5-Math-PRM's has): several tokens mean a tokenizer
    /// that does not know it, and the head was never trained to read there.
    /// </summary>
    static Func<ScheduledModel, StepVerifier> DefaultSeparator(PonderModel prm)
    {
        string text = ProcessRewardVerifier.DefaultSeparator;
        var tokenizer = prm.Tokenizer ?? throw new InvalidDataException(
            $"PRM '{prm.Location}': a process reward head reads its score at the separator '{text}', but the model has no tokenizer to encode it; give 'step_tag_ids' in {FileName}");
        int[] ids = tokenizer.Encode(text, addSpecialTokens: false);
        if (ids.Length != 1)
            throw new InvalidDataException(
                $"PRM '{prm.Location}': the separator '{text}' encodes to {ids.Length} tokens ({string.Join(", ", ids.Take(8))}) with the model's tokenizer, which lacks it as an added token; "
                + $"use the PRM's own tokenizer, or give the separator in {FileName} ('step_tag' or 'step_tag_ids')");
        if ((uint)ids[0] >= (uint)prm.Config.Vocab)
            throw new InvalidDataException($"PRM '{prm.Location}': the separator '{text}' is token {ids[0]}, outside the vocabulary (0..{prm.Config.Vocab - 1})");
        return m => new ProcessRewardVerifier(m, ids);
    }
}
