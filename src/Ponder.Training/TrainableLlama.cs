using Ponder.Tasks;
using Ponder.Models;

namespace Ponder.Training;

/// <summary>
/// A batch of packed token rows. Each row of <see cref="SeqLen"/> positions holds one or more documents; position t
/// predicts <see cref="Targets"/>[t] from tokens up to t, only within its document (from <see cref="SegmentStart"/>[t]),
/// with RoPE position <see cref="Positions"/>[t] counted from the document's start. Only positions with Mask &gt; 0 count
/// in the loss. Value-head models read <see cref="Labels"/> (soft targets in [0, 1]) instead of Targets.
/// </summary>
public sealed record TrainingBatch(int Batch, int SeqLen, int[] Tokens, int[] Targets, float[] Mask, int[] Positions, int[] SegmentStart, float[]? Labels = null)
{
    /// <summary>Tokens in the batch (Batch * SeqLen).</summary>
    public int Count => Batch * SeqLen;
}

/// <summary>
/// A Llama-family decoder (RMSNorm, RoPE, GQA causal attention, SwiGLU, tied or untied LM head or a value head)
/// with a forward pass that keeps its activations and a hand-written backward pass, written as llm.c does:
/// <see cref="Forward"/> is a list of named layer calls, <see cref="Backward"/> the same list in reverse.
/// Not thread-safe; one instance per training loop.
/// </summary>
public sealed class TrainableLlama
{
    sealed class LayerActivations
    {
        public float[] Ln1 = [], Rstd1 = [], Q = [], K = [], V = [], Att = [], AttY = [], Keep1 = [], Resid2 = [];
        public float[] Ln2 = [], Rstd2 = [], G = [], U = [], H = [], Keep2 = [];
    }

    readonly ModelConfig config;
    readonly float[] ropeCos, ropeSin;
    LayerActivations[] acts = [];
    float[][] resid = [];                // nLayers + 1 of (N, dModel): the residual stream entering each layer, and the last layer's output
    float[] lnF = [], rstdF = [], logits = [], dLogits = [];
    float[] dResid = [], dLn = [], dQ = [], dK = [], dV = [], dAttY = [], dBranch = [], dG = [], dU = [], dH = [], tmp = [];
    TrainingBatch? last;
    int allocatedN = -1, allocatedB = -1, allocatedT = -1;

    /// <summary>The parameters (values, gradients, AdamW moments).</summary>
    public ParameterSet Parameters { get; }

    /// <summary>Dropout probability on the two residual branches of every layer (0 = off, the default).</summary>
    public float Dropout { get; set; }

    /// <summary>Wraps <paramref name="parameters"/>; positions up to config.MaxPositions are supported.</summary>
    public TrainableLlama(ParameterSet parameters)
    {
        Parameters = parameters;
        config = parameters.Config;
        if (config.RopeScaling is not null) throw new NotSupportedException("the trainer does not support rope_scaling");
        if (config.QkNorm) throw new NotSupportedException("the trainer has no backward pass for Qwen3's per-head q/k norms (ModelConfig.QkNorm)");
        if (config.Head == HeadKind.ProcessReward) throw new NotSupportedException("the trainer has no two-layer process reward head (score.0 / ReLU / score.2); it trains value heads (score.weight)");
        if (config.SharedValueHead) throw new NotSupportedException("the trainer runs a causal LM without its shared value row (ModelConfig.SharedValueHead); load the policy part (config with SharedValueHead = false)");
        (ropeCos, ropeSin) = Layers.RopeTables(config.MaxPositions, config.HeadDim, config.RopeTheta);
    }

    /// <summary>The RoPE cos/sin tables (maxPositions, headDim/2), shared with the sampler.</summary>
    internal (float[] Cos, float[] Sin) Rope => (ropeCos, ropeSin);

    void Allocate(int batch, int seqLen)
    {
        int n = batch * seqLen;
        if (n == allocatedN && batch == allocatedB && seqLen == allocatedT) return;
        int d = config.DModel, qd = config.QDim, kvd = config.KvDim, f = config.DFf, h = config.NHeads;
        acts = new LayerActivations[config.NLayers];
        for (int l = 0; l < config.NLayers; l++)
            acts[l] = new LayerActivations
            {
                Ln1 = new float[n * d], Rstd1 = new float[n], Q = new float[n * qd], K = new float[n * kvd], V = new float[n * kvd],
                Att = new float[(long)batch * h * seqLen * seqLen], AttY = new float[n * qd], Keep1 = new float[n * d], Resid2 = new float[n * d],
                Ln2 = new float[n * d], Rstd2 = new float[n], G = new float[n * f], U = new float[n * f], H = new float[n * f], Keep2 = new float[n * d],
            };
        resid = new float[config.NLayers + 1][];
        for (int l = 0; l <= config.NLayers; l++) resid[l] = new float[n * d];
        lnF = new float[n * d]; rstdF = new float[n];
        logits = new float[n * config.HeadRows]; dLogits = new float[n * config.HeadRows];
        dResid = new float[n * d]; dLn = new float[n * d]; dQ = new float[n * qd]; dK = new float[n * kvd]; dV = new float[n * kvd];
        dAttY = new float[n * qd]; dBranch = new float[n * d]; dG = new float[n * f]; dU = new float[n * f]; dH = new float[n * f];
        tmp = new float[n * Math.Max(d, qd)];
        (allocatedN, allocatedB, allocatedT) = (n, batch, seqLen);
    }

    float[] W(string name) => Parameters[name].Data;
    float[] Gw(string name) => Parameters[name].Grad;
    ReadOnlySpan<float> Bias(string name) => config.QkvBias ? Parameters[name].Data : default;
    Span<float> GBias(string name) => config.QkvBias ? Parameters[name].Grad : default;
    string HeadName => config.Head == HeadKind.Value ? TensorNames.ValueHead : config.TiedEmbeddings ? TensorNames.Embedding : TensorNames.LmHead;

    /// <summary>
    /// Runs the model on <paramref name="batch"/>, keeps every activation for <see cref="Backward"/>, and returns the
    /// masked mean loss (cross-entropy for a language model, binary cross-entropy for a value head). With
    /// <paramref name="dropoutRng"/> null, dropout is off (evaluation).
    /// </summary>
    public double Forward(TrainingBatch batch, DeterministicRandom? dropoutRng = null)
    {
        Validate(batch);
        Allocate(batch.Batch, batch.SeqLen);
        int B = batch.Batch, T = batch.SeqLen, n = batch.Count;
        int d = config.DModel, qd = config.QDim, kvd = config.KvDim, f = config.DFf;
        int nH = config.NHeads, nKv = config.NKvHeads, hd = config.HeadDim;
        float p = dropoutRng is null ? 0 : Dropout;
        var sn = tmp.AsSpan(0, n * d);

        Layers.EmbeddingForward(resid[0], batch.Tokens, W(TensorNames.Embedding), d);                              // (N, d)
        for (int l = 0; l < config.NLayers; l++)
        {
            var a = acts[l];
            float[] x = resid[l], xOut = resid[l + 1];
            Layers.RmsNormForward(a.Ln1, a.Rstd1, x, W(TensorNames.AttnNorm(l)), n, d, config.RmsNormEps);          // (N, d)
            Layers.LinearForward(a.Q, a.Ln1, W(TensorNames.Q(l)), Bias(TensorNames.QBias(l)), n, d, qd);          // (N, nH*hd)
            Layers.LinearForward(a.K, a.Ln1, W(TensorNames.K(l)), Bias(TensorNames.KBias(l)), n, d, kvd);         // (N, nKv*hd)
            Layers.LinearForward(a.V, a.Ln1, W(TensorNames.V(l)), Bias(TensorNames.VBias(l)), n, d, kvd);         // (N, nKv*hd)
            Layers.RopeForward(a.Q, batch.Positions, nH, hd, ropeCos, ropeSin);                                    // (N, nH*hd) in place
            Layers.RopeForward(a.K, batch.Positions, nKv, hd, ropeCos, ropeSin);                                   // (N, nKv*hd) in place
            Layers.AttentionForward(a.AttY, a.Att, a.Q, a.K, a.V, batch.SegmentStart, B, T, nH, nKv, hd);           // (N, nH*hd), att (B, nH, T, T)
            Layers.LinearForward(sn, a.AttY, W(TensorNames.O(l)), default, n, qd, d);                               // (N, d)
            Layers.DropoutForward(sn, a.Keep1, p, dropoutRng!);                                                      // (N, d)
            System.Numerics.Tensors.TensorPrimitives.Add(x, sn, a.Resid2);                                           // residual: (N, d)
            Layers.RmsNormForward(a.Ln2, a.Rstd2, a.Resid2, W(TensorNames.FfnNorm(l)), n, d, config.RmsNormEps);    // (N, d)
            Layers.LinearForward(a.G, a.Ln2, W(TensorNames.Gate(l)), default, n, d, f);                             // (N, dFf)
            Layers.LinearForward(a.U, a.Ln2, W(TensorNames.Up(l)), default, n, d, f);                               // (N, dFf)
            Layers.SwiGluForward(a.H, a.G, a.U);                                                                     // (N, dFf)
            Layers.LinearForward(sn, a.H, W(TensorNames.Down(l)), default, n, f, d);                                // (N, d)
            Layers.DropoutForward(sn, a.Keep2, p, dropoutRng!);                                                      // (N, d)
            System.Numerics.Tensors.TensorPrimitives.Add(a.Resid2, sn, xOut);                                        // residual: (N, d)
        }
        Layers.RmsNormForward(lnF, rstdF, resid[config.NLayers], W(TensorNames.FinalNorm), n, d, config.RmsNormEps); // (N, d)
        int rows = config.HeadRows;
        Layers.LinearForward(logits, lnF, W(HeadName), default, n, d, rows);                                       // (N, vocab) or (N, 1)
        float count = 0;
        foreach (float m in batch.Mask) count += m;
        float scale = count > 0 ? 1f / count : 0f;
        double loss = config.Head == HeadKind.Value
            ? Layers.BinaryCrossEntropy(dLogits, logits, batch.Labels!, batch.Mask, scale)                          // (N) -> scalar
            : Layers.CrossEntropy(dLogits, logits, batch.Targets, batch.Mask, rows, scale);                        // (N, vocab) -> scalar
        last = batch;
        return loss;
    }

    /// <summary>The logits (or value-head scores) of the last <see cref="Forward"/>: (N, vocab) or (N, numLabels).</summary>
    public ReadOnlySpan<float> Logits => logits.AsSpan(0, allocatedN * config.HeadRows);

    /// <summary>The final normed hidden states of the last <see cref="Forward"/> (N, dModel): what the head reads.</summary>
    public ReadOnlySpan<float> FinalHidden => lnF.AsSpan(0, allocatedN * config.DModel);

    /// <summary>
    /// Gradients of the last <see cref="Forward"/>'s loss, ADDED to every parameter's Grad (call
    /// <see cref="ParameterSet.ZeroGrad"/> first). The forward list in reverse.
    /// </summary>
    public void Backward()
    {
        var batch = last ?? throw new InvalidOperationException("Backward called before Forward");
        int B = batch.Batch, T = batch.SeqLen, n = batch.Count;
        int d = config.DModel, qd = config.QDim, kvd = config.KvDim, f = config.DFf;
        int nH = config.NHeads, nKv = config.NKvHeads, hd = config.HeadDim;
        int rows = config.HeadRows;
        var dBr = dBranch.AsSpan(0, n * d);

        // loss -> head: dlogits came from the fused loss. logits = lnF W^T: dlnF = dlogits W, dW += dlogits^T lnF.
        Array.Clear(dLn);
        Layers.LinearBackward(dLn, Gw(HeadName), default, dLogits, lnF, W(HeadName), n, d, rows);
        Array.Clear(dResid);
        Layers.RmsNormBackward(dResid, Gw(TensorNames.FinalNorm), dLn, resid[config.NLayers], W(TensorNames.FinalNorm), rstdF, n, d);

        // dResid holds dL/dresid[l+1]. A residual add passes its gradient unchanged to both inputs, so each branch's
        // backward just ADDS its input gradient into dResid, which then holds dL/dresid2, then dL/dresid[l].
        for (int l = config.NLayers - 1; l >= 0; l--)
        {
            var a = acts[l];
            // MLP branch: xOut = resid2 + dropout(down(swiglu(gate(ln2), up(ln2))))
            dResid.AsSpan(0, n * d).CopyTo(dBr);
            Layers.DropoutBackward(dBr, a.Keep2);
            Array.Clear(dH);
            Layers.LinearBackward(dH, Gw(TensorNames.Down(l)), default, dBr, a.H, W(TensorNames.Down(l)), n, f, d);
            Array.Clear(dG); Array.Clear(dU);
            Layers.SwiGluBackward(dG, dU, dH, a.G, a.U);
            Array.Clear(dLn);
            Layers.LinearBackward(dLn, Gw(TensorNames.Up(l)), default, dU, a.Ln2, W(TensorNames.Up(l)), n, d, f);
            Layers.LinearBackward(dLn, Gw(TensorNames.Gate(l)), default, dG, a.Ln2, W(TensorNames.Gate(l)), n, d, f);
            Layers.RmsNormBackward(dResid, Gw(TensorNames.FfnNorm(l)), dLn, a.Resid2, W(TensorNames.FfnNorm(l)), a.Rstd2, n, d);

            // attention branch: resid2 = x + dropout(o(attention(rope(q(ln1)), rope(k(ln1)), v(ln1))))
            dResid.AsSpan(0, n * d).CopyTo(dBr);
            Layers.DropoutBackward(dBr, a.Keep1);
            Array.Clear(dAttY);
            Layers.LinearBackward(dAttY, Gw(TensorNames.O(l)), default, dBr, a.AttY, W(TensorNames.O(l)), n, qd, d);
            Array.Clear(dQ); Array.Clear(dK); Array.Clear(dV);
            Layers.AttentionBackward(dQ, dK, dV, dAttY, a.Att, a.Q, a.K, a.V, batch.SegmentStart, B, T, nH, nKv, hd);
            Layers.RopeBackward(dQ, batch.Positions, nH, hd, ropeCos, ropeSin);
            Layers.RopeBackward(dK, batch.Positions, nKv, hd, ropeCos, ropeSin);
            Array.Clear(dLn);
            Layers.LinearBackward(dLn, Gw(TensorNames.V(l)), GBias(TensorNames.VBias(l)), dV, a.Ln1, W(TensorNames.V(l)), n, d, kvd);
            Layers.LinearBackward(dLn, Gw(TensorNames.K(l)), GBias(TensorNames.KBias(l)), dK, a.Ln1, W(TensorNames.K(l)), n, d, kvd);
            Layers.LinearBackward(dLn, Gw(TensorNames.Q(l)), GBias(TensorNames.QBias(l)), dQ, a.Ln1, W(TensorNames.Q(l)), n, d, qd);
            Layers.RmsNormBackward(dResid, Gw(TensorNames.AttnNorm(l)), dLn, resid[l], W(TensorNames.AttnNorm(l)), a.Rstd1, n, d);
        }
        Layers.EmbeddingBackward(Gw(TensorNames.Embedding), dResid, batch.Tokens, d);
    }

    void Validate(TrainingBatch b)
    {
        int n = b.Count;
        if (b.Batch <= 0 || b.SeqLen <= 0) throw new ArgumentException($"batch shape ({b.Batch}, {b.SeqLen}) must be positive", nameof(b));
        if (b.SeqLen > config.MaxPositions) throw new ArgumentException($"seqLen {b.SeqLen} exceeds max_position_embeddings {config.MaxPositions}", nameof(b));
        if (b.Tokens.Length != n || b.Targets.Length != n || b.Mask.Length != n || b.Positions.Length != n || b.SegmentStart.Length != n)
            throw new ArgumentException($"batch arrays must each hold {n} = {b.Batch}x{b.SeqLen} entries", nameof(b));
        if (config.Head == HeadKind.Value && b.Labels?.Length != n) throw new ArgumentException($"a value-head batch needs {n} labels", nameof(b));
        for (int i = 0; i < n; i++)
        {
            if ((uint)b.Tokens[i] >= (uint)config.Vocab) throw new ArgumentException($"token {b.Tokens[i]} at {i} is outside the vocabulary (0..{config.Vocab - 1})", nameof(b));
            if (config.Head == HeadKind.LanguageModel && b.Mask[i] != 0 && (uint)b.Targets[i] >= (uint)config.Vocab)
                throw new ArgumentException($"target {b.Targets[i]} at {i} is outside the vocabulary", nameof(b));
            int t = i % b.SeqLen, s0 = b.SegmentStart[i];
            if (s0 < 0 || s0 > t) throw new ArgumentException($"segment start {s0} at row position {t} must be in [0, {t}]", nameof(b));
            if ((uint)b.Positions[i] >= (uint)config.MaxPositions) throw new ArgumentException($"position {b.Positions[i]} at {i} is out of range", nameof(b));
        }
    }
}
