using Ponder.Models;
using Ponder.Training;
using Ponder.Tasks;

namespace Ponder.Training.Tests;

/// <summary>
/// Whole-model gradient checks: the float32 hand-written backward against central finite differences of the float32
/// forward (h = 1e-3, loss accumulated in float64). Float32 rounding of a loss near 2.5 gives ~1e-4 noise in the
/// difference quotient, hence the tolerance |analytic - numeric| &lt;= 2e-3 + 3e-2 |numeric|.
/// </summary>
public sealed class ModelGradientTests
{
    [Theory]
    [InlineData(HeadKind.LanguageModel, true, false)]
    [InlineData(HeadKind.LanguageModel, false, true)]
    [InlineData(HeadKind.Value, false, false)]
    public void Backward_matches_finite_differences_for_every_parameter(HeadKind head, bool tied, bool qkvBias)
    {
        var model = TinyModels.Model(TinyModels.Config(head, tied, qkvBias));
        var batch = TinyModels.Batch(11, labels: head == HeadKind.Value);
        model.Forward(batch);
        model.Parameters.ZeroGrad();
        model.Backward();
        var rng = new DeterministicRandom(3);
        int checkedCount = 0;
        foreach (var p in model.Parameters.All)
        {
            for (int trial = 0; trial < 6; trial++)
            {
                int i = rng.Next(0, p.Data.Length);
                float keep = p.Data[i];
                const float h = 1e-3f;
                p.Data[i] = keep + h; double up = model.Forward(batch);
                p.Data[i] = keep - h; double down = model.Forward(batch);
                p.Data[i] = keep;
                double numeric = (up - down) / (2 * h), analytic = p.Grad[i];
                Assert.True(Math.Abs(analytic - numeric) <= 2e-3 + 3e-2 * Math.Abs(numeric),
                    $"{p.Name}[{i}]: backward {analytic:G6}, finite difference {numeric:G6}");
                checkedCount++;
            }
        }
        Assert.True(checkedCount > 50);
    }
}
