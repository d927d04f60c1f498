using System.Text.Json.Serialization;
using Ponder.Models;
using Ponder.Scheduling;

namespace Ponder.Search.Engine;

/// <summary>
/// How a separate PRM scores steps, read from <c>prm.json</c> next to its weights (a model folder). Without the file,
/// a model whose config.json has a value head (<c>*ForTokenClassification</c>, <c>score.weight</c>) is a value-head PRM.
/// <code>
///   {"format": "value_head"}                                               the value head (as without prm.json)
///   {"format": "token_logit", "step_tag": " ки", "good_token": "+", "bad_token": "-"}     Math-Shepherd style
///   {"format": "token_logit", "step_tag_ids": [12902], "good_token_id": 648, "bad_token_id": 387}
/// </code>
/// A token-logit PRM is a causal LM: the step tag is appended after every step, and the score is the softmax
/// probability of the good token among {good, bad} at the tag's last token (<see cref="TokenLogitVerifier"/>). Each of
/// the tag and the two candidates is given either as text (encoded by the PRM's tokenizer, special-token text mapping to
/// its id; a candidate must encode to exactly one token) or as ids, not both.
/// </summary>
public sealed record PrmFormat
{
    /// <summary>The file's name in a model folder.</summary>
    public const string FileName = "prm.json";

    /// <summary><c>value_head</c> or <c>token_logit</c>.</summary>
    [JsonPropertyName("format")] public string? Format { get; init; }
    /// <summary>Step tag text appended after each step (token_logit).</summary>
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
    public const string Supported = "value_head, token_logit";

    /// <summary>Reads <c>prm.json</c> of the model at <paramref name="modelLocation"/>; null when it has none (or is not a folder).</summary>
    public static PrmFormat? Read(string modelLocation)
    {
        ArgumentNullException.ThrowIfNull(modelLocation);
        if (!Directory.Exists(modelLocation)) return null;
        string path = Path.Combine(modelLocation, FileName);
        return File.Exists(path) ? ConfigJson.Load<PrmFormat>(path, "PRM format") : null;
    }

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
        string source = Path.Combine(prm.Location, FileName);
        switch (format?.Format)
        {
            case null when format is null:
                if (prm.Config.Head != HeadKind.Value)
                    throw new ArgumentException($"PRM '{prm.Location}' is a language model without {FileName}: a token-logit PRM needs one naming its step tag and candidate tokens, a value-head PRM needs score.weight", nameof(prm));
                return m => new ValueHeadVerifier(m);
            case null:
                throw new InvalidDataException($"{source}: field 'format' is missing (one of: {Supported})");
            case "value_head":
                if (format.StepTag is not null || format.StepTagIds is not null || format.GoodToken is not null || format.GoodTokenId is not null
                    || format.BadToken is not null || format.BadTokenId is not null)
                    throw new InvalidDataException($"{source}: format 'value_head' takes no step tag or candidate tokens (those are for 'token_logit')");
                if (prm.Config.Head != HeadKind.Value)
                    throw new InvalidDataException($"{source}: format 'value_head', but the model's config.json has a language-model head (no score.weight)");
                return m => new ValueHeadVerifier(m);
            case "token_logit":
                if (prm.Config.Head != HeadKind.LanguageModel)
                    throw new InvalidDataException($"{source}: format 'token_logit' reads a language-model head's logits, but the model has a value head (score.weight)");
                int vocab = prm.Config.Vocab;
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
}
