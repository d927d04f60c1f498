using Ponder.Tasks;

namespace Ponder.Training.Tests.Study;

/// <summary>A model folder's fingerprint (the study cache's key) covers a PRM's prm.json: another step tag means other scores.</summary>
public sealed class WeightsFingerprintTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ponder-fingerprint-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void PrmJsonChangesTheFingerprintAndItsAbsenceKeepsTheWeightsOwn()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), "{}");
        File.WriteAllBytes(Path.Combine(_dir, "model.safetensors"), [1, 2, 3]);
        string weights = WeightsFingerprint.Of(_dir);
        File.WriteAllText(Path.Combine(_dir, "prm.json"), """{"format": "token_logit", "step_tag": " ки", "good_token": "+", "bad_token": "-"}""");
        string tagged = WeightsFingerprint.Of(_dir);
        File.WriteAllText(Path.Combine(_dir, "prm.json"), """{"format": "token_logit", "step_tag": "\n\n", "good_token": "+", "bad_token": "-"}""");
        string otherTag = WeightsFingerprint.Of(_dir);
        Assert.Equal(3, new[] { weights, tagged, otherTag }.Distinct().Count());
        File.Delete(Path.Combine(_dir, "prm.json"));
        Assert.Equal(weights, WeightsFingerprint.Of(_dir));
        Assert.StartsWith(Path.GetFileName(_dir) + "@", weights);
    }
}
