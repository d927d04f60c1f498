using Ponder.Backends;
using Ponder.Cache;
using Ponder.Tasks;
using Ponder.Models;
using Ponder.Scheduling;
using Ponder.Training;
using Ponder.Tokenization;

namespace Ponder.Training.Tests;

/// <summary>The shared value head's logistic fit and its scoring cost.</summary>
public sealed class ValueHeadTests
{
    /// <summary>
    /// Soft labels drawn as y = sigmoid(w* · x): the best possible mean BCE is the labels' mean entropy (reached at
    /// w = w*), and a zero head scores ln 2. The fit must get within 0.01 nats of that floor and find w*'s direction.
    /// </summary>
    [Fact]
    public void FitReachesTheEntropyFloorOnSyntheticSoftLabels()
    {
        const int d = 8, nTrain = 600, nVal = 150;
        var rng = new Random(3);
        double[] wStar = [.. Enumerable.Range(0, d).Select(_ => rng.NextDouble() * 4 - 2)];
        (float[] X, float[] Y) Make(int n)
        {
            var x = new float[n * d];
            var y = new float[n];
            for (int r = 0; r < n; r++)
            {
                double z = 0;
                for (int i = 0; i < d; i++) { x[r * d + i] = (float)(rng.NextDouble() * 2 - 1); z += wStar[i] * x[r * d + i]; }
                y[r] = (float)(1 / (1 + Math.Exp(-z)));
            }
            return (x, y);
        }
        var (xt, yt) = Make(nTrain);
        var (xv, yv) = Make(nVal);
        double entropy = yt.Average(p => -(p * Math.Log(p) + (1 - p) * Math.Log(1 - p)));

        var (w, fit) = ValueHeadTrainer.Fit(xt, yt, xv, yv, d, epochs: 3000, learningRate: 0.05f, weightDecay: 0);

        Assert.Equal(Math.Log(2), fit.InitialBce, 9);
        Assert.True(fit.TrainBce < entropy + 0.01, $"train BCE {fit.TrainBce:F4}, floor {entropy:F4}");
        Assert.True(fit.TrainBce < 0.55, $"train BCE {fit.TrainBce:F4} should be well under ln 2");
        double dot = 0, nw = 0, ns = 0;
        for (int i = 0; i < d; i++) { dot += w[i] * wStar[i]; nw += w[i] * w[i]; ns += wStar[i] * wStar[i]; }
        Assert.True(dot / Math.Sqrt(nw * ns) > 0.99, $"cosine(w, w*) = {dot / Math.Sqrt(nw * ns):F3}");
        Assert.Equal(nTrain, fit.TrainStepEnds);
    }

    /// <summary>
    /// What the trainer fits on is what the engine serves: the trainer's sigmoid(w · h) at each step end equals the
    /// value row (head output index vocab) of the engine's forward over the exported policy + row.
    /// </summary>
    [Fact]
    public void TrainerScoresEqualTheEngineForwardOfTheExportedModel()
    {
        var config = TinyModels.Config() with { Vocab = 259, MaxPositions = 64 };
        var policy = TinyModels.Model(config, seed: 3);
        var rng = new DeterministicRandom(4);
        float[] w = [.. Enumerable.Range(0, config.DModel).Select(_ => (float)rng.NextGaussian())];
        var task = new ArithmeticChainTask();
        const string q = "1+2*3", s = "2*3=6\n1+6=7\nA: 7\n";
        var scores = ValueHeadTrainer.StepScores(policy, w, task, [(q, s)])[0];
        Assert.Equal(3, scores.Length);

        var shared = config with { SharedValueHead = true };
        var tensors = new Dictionary<string, HostTensor>(policy.Parameters.Tensors) { [TensorNames.SharedValueHead] = new HostTensor(w, [1, config.DModel]) };
        using var engine = PonderModel.Load(new HostTensorSource(shared, tensors), null, new ModelOptions { Threads = 1, KvCacheTokens = 128 });
        var example = PrmLabels.Example(task, q, s, null);
        int[] tokens = example.Tokens[..^1];
        int[] rows = [.. Enumerable.Range(0, tokens.Length).Where(t => !float.IsNaN(example.Labels![t]))];
        using var seq = new Sequence(engine.Pool);
        seq.Append(tokens);
        var layout = new BatchLayout(engine.Pool.BlockSize);
        layout.Add(0, tokens.Length, seq.BlockTable);
        var output = new float[rows.Length * shared.HeadRows];
        engine.Transformer.Forward(layout, tokens, engine.Pool.Storage, rows, output);
        for (int i = 0; i < rows.Length; i++)
        {
            double value = 1 / (1 + Math.Exp(-output[i * shared.HeadRows + config.Vocab]));
            Assert.True(Math.Abs(value - scores[i]) < 1e-4, $"step {i}: engine {value:G6}, trainer {scores[i]:G6}");
        }
    }

    [Fact]
    public void FitRejectsFeaturesOfTheWrongShape() =>
        Assert.Contains("features must be (n, 4)", Assert.Throws<ArgumentException>(() =>
            ValueHeadTrainer.Fit(new float[7], new float[2], [], [], 4, 10, 0.1f, 0)).Message);

    /// <summary>
    /// The scoring cost worked by hand on one solution: separate PRM = each step's chunk on the PRM; shared head = the
    /// difference between decoding all T tokens with a vocab + 1 head and T - 1 tokens with the plain head.
    /// </summary>
    [Fact]
    public void ScoringCostMatchesTheFormulaOnOneSolution()
    {
        var task = new ArithmeticChainTask();
        var policy = new ModelConfig { Vocab = 259, DModel = 32, NLayers = 2, NHeads = 4, NKvHeads = 2, HeadDim = 8, DFf = 64, MaxPositions = 128, TiedEmbeddings = true };
        var prm = policy with { Head = HeadKind.Value, NumLabels = 1 };
        const string q = "1+2*3", s = "2*3=6\n1+6=7\nA: 7\n";
        int prompt = ByteTokenizer.Ponder.Encode(task.Prompt(q)).Length + 1; // + BOS
        var cost = ValueHeadTrainer.ScoringCost(policy, task, [(q, s)], prm);
        Assert.Equal(3, cost.Steps);
        var c = new FlopCounter(prm);
        long separate = c.Chunk(6, prompt, 1).Total + c.Chunk(6, prompt + 6, 1).Total + c.Chunk(5, prompt + 12, 1).Total;
        Assert.Equal(separate / 3.0, cost.SeparatePrm, 6);
        // Shared: 2·d per fed token (16 of the 17) for the value row, plus the 17th token's whole forward.
        long last = new FlopCounter(policy with { SharedValueHead = true }).Chunk(1, prompt + 16, 1).Total;
        Assert.Equal((16 * 2 * 32 + last) / 3.0, cost.SharedHead, 6);
    }
}
