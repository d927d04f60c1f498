using Ponder.Models;
using Ponder.Scheduling;

namespace Ponder.Search.Engine;

/// <summary>
/// How a PRM turns its head's output at a step's last token into a score in [0, 1]. The engine mirrors every branch
/// into <see cref="Model"/>'s pool (same tokens) and asks for the head output at each step's last token.
/// A token-logit PRM (Math-Shepherd style: softmax over two candidate tokens at a step tag) plugs in as another
/// implementation over a language-model head.
/// </summary>
public interface IStepVerifier
{
    /// <summary>The PRM as the scheduler runs it.</summary>
    ScheduledModel Model { get; }

    /// <summary>The score of a step prefix from the head's output row (HeadRows values) at the step's last token.</summary>
    double Score(ReadOnlySpan<float> headOutput);
}

/// <summary>
/// A value-head PRM (<see cref="HeadKind.Value"/>): one label scores sigmoid(output); two labels score the softmax
/// probability of label 1 ("correct").
/// </summary>
public sealed class ValueHeadVerifier : IStepVerifier
{
    /// <summary>Wraps <paramref name="model"/>, which must have a value head with one or two labels.</summary>
    public ValueHeadVerifier(ScheduledModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Config.Head != HeadKind.Value)
            throw new ArgumentException($"model '{model.Name}' has a language-model head; a value-head verifier needs a value head (score.weight)", nameof(model));
        if (model.Config.NumLabels is not (1 or 2))
            throw new ArgumentException($"model '{model.Name}' has {model.Config.NumLabels} labels; a value-head verifier reads 1 (sigmoid) or 2 (softmax)", nameof(model));
        Model = model;
    }

    public ScheduledModel Model { get; }

    public double Score(ReadOnlySpan<float> headOutput) => headOutput.Length switch
    {
        1 => Sigmoid(headOutput[0]),
        2 => Sigmoid((double)headOutput[1] - headOutput[0]), // softmax over two labels = sigmoid of the difference
        _ => throw new ArgumentException($"a value head output of {headOutput.Length} values; expected 1 or 2", nameof(headOutput)),
    };

    static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));
}

/// <summary>
/// The shared-backbone PRM: a value row on the policy's own final hidden state (<see cref="ModelConfig.SharedValueHead"/>),
/// read from the same forward that computes the next token's logits. The engine feeds every step's last token anyway
/// (for the next step's logits), so a step's score costs no second model, no second KV cache and no extra forward:
/// only the head's 2·dModel FLOPs per output row, counted with the LM head. Score = sigmoid(output[vocab]).
/// </summary>
public sealed class SharedValueHeadVerifier : IStepVerifier
{
    /// <summary>Wraps <paramref name="policy"/>, which must be a language model with a shared value row.</summary>
    public SharedValueHeadVerifier(ScheduledModel policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        if (policy.Config.Head != HeadKind.LanguageModel || !policy.Config.SharedValueHead)
            throw new ArgumentException($"model '{policy.Name}' has no shared value head (config.json \"ponder_value_head\": 1 with value_head.weight)", nameof(policy));
        Model = policy;
    }

    /// <summary>The policy itself: scores come with its tokens.</summary>
    public ScheduledModel Model { get; }

    public double Score(ReadOnlySpan<float> headOutput)
    {
        if (headOutput.Length != Model.Config.HeadRows)
            throw new ArgumentException($"a head output of {headOutput.Length} values; the policy writes {Model.Config.HeadRows} (vocab {Model.Config.Vocab} + the value row)", nameof(headOutput));
        return 1 / (1 + Math.Exp(-(double)headOutput[Model.Config.Vocab]));
    }
}
