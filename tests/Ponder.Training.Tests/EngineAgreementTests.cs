using Ponder.Tasks;
using Ponder.Models;
using Ponder.Training;

namespace Ponder.Training.Tests;

/// <summary>The trainer's forward against the engine's independent forward (Ponder.Transformer on the CPU backend) on the same weights.</summary>
public sealed class EngineAgreementTests
{
    [Theory]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void Trainer_loss_equals_engine_mean_nll(bool tied, bool qkvBias)
    {
        var model = TinyModels.Model(TinyModels.Config(HeadKind.LanguageModel, tied, qkvBias), seed: 8);
        var rng = new DeterministicRandom(2);
        int n = 14;
        var tokens = Enumerable.Range(0, n).Select(_ => rng.Next(0, 11)).ToArray();
        int T = n - 1;
        var batch = new TrainingBatch(1, T, tokens[..T], tokens[1..], Enumerable.Repeat(1f, T).ToArray(),
            Enumerable.Range(0, T).ToArray(), new int[T]);
        double trainer = model.Forward(batch);
        using var engine = PonderModel.Load(new HostTensorSource(model.Parameters.Config, model.Parameters.Tensors), null,
            new ModelOptions { Threads = 1, KvCacheTokens = 64 });
        var reference = engine.Perplexity(tokens);
        Assert.Equal(T, reference.TokensScored);
        Assert.True(Math.Abs(trainer - reference.MeanNll) < 1e-4, $"trainer {trainer:G8}, engine {reference.MeanNll:G8}");
    }
}
