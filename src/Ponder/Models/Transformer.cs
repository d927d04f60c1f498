using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Tensors;

namespace Ponder.Models;

/// <summary>
/// The Llama-family forward pass, written once against <see cref="IBackend"/>. One call runs a batch of sequences,
/// each with its own new tokens (a prefill chunk or one decode token) and its own paged KV cache blocks, and returns
/// the head's outputs (logits, or value-head scores) only at the rows asked for.
/// </summary>
public sealed class Transformer : IDisposable
{
    readonly IBackend _backend;
    readonly LayerWeights[] _layers;
    readonly DeviceTensor _embedding;   // (vocab, dModel)
    readonly DeviceTensor _finalNorm;   // (dModel)
    readonly DeviceWeight _head;        // (headRows, dModel): lm_head or the tied embedding (+ the shared value row), score, or score.2
    readonly DeviceTensor? _headBias;   // (headRows), value and process-reward heads only
    readonly DeviceWeight? _prmHidden;  // (dModel, dModel): a process reward head's score.0, before the ReLU
    readonly DeviceTensor? _prmHiddenBias; // (dModel)
    DeviceTensor _rope;                 // (ropePositions, headDim): cos | sin
    Workspace? _ws;

    sealed record LayerWeights(
        DeviceTensor AttnNorm, DeviceWeight Q, DeviceWeight K, DeviceWeight V, DeviceTensor? QBias, DeviceTensor? KBias,
        DeviceTensor? VBias, DeviceTensor? QNorm, DeviceTensor? KNorm, DeviceWeight O, DeviceTensor FfnNorm, DeviceWeight Gate, DeviceWeight Up, DeviceWeight Down)
    {
        // Projections that share their input, multiplied in one call (IBackend.MatMul over several weights).
        public DeviceWeight[] Qkv { get; } = [Q, K, V];
        public DeviceWeight[] GateUp { get; } = [Gate, Up];
    }

    /// <summary>Loads every weight of <paramref name="source"/> onto <paramref name="backend"/>, checking names and shapes first.</summary>
    public Transformer(IBackend backend, ITensorSource source, IProgress<float>? progress = null, CancellationToken cancellationToken = default)
    {
        _backend = backend;
        Config = source.Config;
        TensorNames.CheckComplete(source);
        var expected = TensorNames.Expected(Config).ToList();
        int loaded = 0;
        float[] scratch = [];
        byte[] rawScratch = [];
        var disposables = new List<IDisposable>();
        try
        {
            Span<float> Read(string name)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var info = source.Tensors[name];
                int count = checked((int)info.ElementCount);
                if (scratch.Length < count) scratch = new float[count];
                var span = scratch.AsSpan(0, count);
                source.ReadF32(name, span);
                progress?.Report(Math.Min(1f, (float)++loaded / expected.Count)); // reads can outnumber the expected tensors: never past 100%
                return span;
            }
            T Keep<T>(T d) where T : IDisposable { disposables.Add(d); return d; }
            DeviceTensor Vector(string name) { var s = Read(name); return Keep(backend.Upload(s, 1, s.Length)); }
            DeviceWeight Matrix(string name)
            {
                var info = source.Tensors[name];
                int rows = (int)info.Shape[0], cols = (int)info.Shape[1];
                // A 16-bit or quantized weight stays in its format where the backend multiplies it directly: decode then
                // streams 2x to 3.6x fewer bytes. The stored bytes are taken as they are where the source offers them;
                // otherwise 16-bit and Q8_0 weights are re-encoded from their decoded values, which is exact (16-bit
                // always; Q8_0 for blocks whose largest quant is ±127, as llama.cpp quantizes). Other quantized types have
                // no exact re-encoding: without their bytes they are multiplied as f32.
                if (info.Type != DType.F32 && backend is ITypedWeightUpload typed && typed.CanKeep(info.Type, rows, cols))
                {
                    long size = DTypes.ByteSize(info.Type, info.ElementCount);
                    if (rawScratch.Length < size) rawScratch = new byte[size];
                    var raw = rawScratch.AsSpan(0, (int)size);
                    cancellationToken.ThrowIfCancellationRequested();
                    if (source.TryReadRaw(name, raw))
                    {
                        progress?.Report(Math.Min(1f, (float)++loaded / expected.Count)); // reads can outnumber the expected tensors: never past 100%
                        return Keep(typed.UploadWeight(raw, info.Type, rows, cols));
                    }
                    if (!DTypes.IsQuantized(info.Type) || info.Type == DType.Q8_0)
                        return Keep(typed.UploadWeight(DTypes.FromF32(info.Type, Read(name)), info.Type, rows, cols));
                }
                return Keep(backend.UploadWeight(Read(name), rows, cols));
            }

            int d = Config.DModel;
            _embedding = Keep(backend.Upload(Read(TensorNames.Embedding), Config.Vocab, d));
            _layers = new LayerWeights[Config.NLayers];
            for (int l = 0; l < Config.NLayers; l++)
            {
                bool bias = Config.QkvBias, qkNorm = Config.QkNorm;
                _layers[l] = new LayerWeights(
                    Vector(TensorNames.AttnNorm(l)), Matrix(TensorNames.Q(l)), Matrix(TensorNames.K(l)), Matrix(TensorNames.V(l)),
                    bias ? Vector(TensorNames.QBias(l)) : null, bias ? Vector(TensorNames.KBias(l)) : null, bias ? Vector(TensorNames.VBias(l)) : null,
                    qkNorm ? Vector(TensorNames.QNorm(l)) : null, qkNorm ? Vector(TensorNames.KNorm(l)) : null,
                    Matrix(TensorNames.O(l)), Vector(TensorNames.FfnNorm(l)),
                    Matrix(TensorNames.Gate(l)), Matrix(TensorNames.Up(l)), Matrix(TensorNames.Down(l)));
            }
            _finalNorm = Vector(TensorNames.FinalNorm);
            if (Config.Head == HeadKind.Value)
            {
                _head = Matrix(TensorNames.ValueHead);
                if (source.Tensors.ContainsKey(TensorNames.ValueHeadBias)) _headBias = Vector(TensorNames.ValueHeadBias);
            }
            else if (Config.Head == HeadKind.ProcessReward)
            {
                _prmHidden = Matrix(TensorNames.PrmHidden);
                _prmHiddenBias = Vector(TensorNames.PrmHiddenBias);
                _head = Matrix(TensorNames.PrmOutput);
                _headBias = Vector(TensorNames.PrmOutputBias);
            }
            else if (Config.SharedValueHead)
            {
                // The value row rides as one more row of the LM head (index vocab): the same GEMM returns the logits
                // and the step score, for 2·dModel FLOPs per output row. Kept in f32 (a tied model gets its own copy).
                var rows = new float[(long)(Config.Vocab + 1) * d];
                Read(Config.TiedEmbeddings ? TensorNames.Embedding : TensorNames.LmHead).CopyTo(rows);
                Read(TensorNames.SharedValueHead).CopyTo(rows.AsSpan(Config.Vocab * d));
                _head = Keep(backend.UploadWeight(rows, Config.Vocab + 1, d));
            }
            else
            {
                _head = Matrix(Config.TiedEmbeddings ? TensorNames.Embedding : TensorNames.LmHead);
            }
            _rope = Keep(RopeTable.Upload(backend, Config, Math.Min(Config.MaxPositions, 4096)));
        }
        catch
        {
            foreach (var x in disposables) x.Dispose();
            throw;
        }
    }

    /// <summary>The model's shape and architecture.</summary>
    public ModelConfig Config { get; }
    /// <summary>The backend holding the weights and running the forward.</summary>
    public IBackend Backend => _backend;
    /// <summary>
    /// Whether the head adds a bias to its outputs (a value head's optional <c>score.bias</c>; a process reward head's
    /// <c>score.2.bias</c>, always): its add is element-wise work the FLOP count includes.
    /// </summary>
    public bool HasHeadBias => _headBias is not null;

    /// <summary>Bytes of weights on the backend.</summary>
    public long WeightBytes =>
        _layers.Sum(l => l.Q.Bytes + l.K.Bytes + l.V.Bytes + l.O.Bytes + l.Gate.Bytes + l.Up.Bytes + l.Down.Bytes) + _head.Bytes + (_prmHidden?.Bytes ?? 0)
        + _embedding.Length * sizeof(float);

    /// <summary>
    /// Runs the batch: writes every new token's K/V into its cache slot, and the head's outputs for
    /// <paramref name="outputRows"/> (batch rows, ascending or not) into <paramref name="output"/> [outputRows.Length, HeadRows].
    /// </summary>
    /// <param name="batch">Sequences, positions and block tables (<see cref="BatchLayout"/>).</param>
    /// <param name="tokens">One token id per batch row.</param>
    /// <param name="kv">The cache the batch's block tables point into.</param>
    public void Forward(BatchLayout batch, ReadOnlySpan<int> tokens, KvStorage kv, ReadOnlySpan<int> outputRows, Span<float> output)
    {
        int n = batch.TokenCount, m = outputRows.Length;
        if (tokens.Length != n) throw new ArgumentException($"{tokens.Length} tokens for a batch of {n} rows", nameof(tokens));
        if (output.Length != (long)m * Config.HeadRows) throw new ArgumentException($"output holds {output.Length} values, expected {m} x {Config.HeadRows}", nameof(output));
        if (kv.Layout.NLayers != Config.NLayers || kv.Layout.KvDim != Config.KvDim || kv.Layout.BlockSize != batch.BlockSize)
            throw new ArgumentException($"KV storage layout {kv.Layout} does not fit this model (nLayers {Config.NLayers}, kvDim {Config.KvDim}) and batch block size {batch.BlockSize}", nameof(kv));
        foreach (int r in outputRows)
            if ((uint)r >= (uint)n) throw new ArgumentOutOfRangeException(nameof(outputRows), $"output row {r} is outside the batch (0..{n - 1})");
        if (batch.MaxContext > Config.MaxPositions)
            throw new ArgumentException($"a sequence reaches {batch.MaxContext} tokens, past the model's {Config.MaxPositions} positions", nameof(batch));
        if (n == 0) return;
        if (batch.MaxContext > _rope.Rows) GrowRope(batch.MaxContext);
        var ws = EnsureWorkspace(n, Math.Max(m, 1));
        var b = _backend;
        float eps = Config.RmsNormEps;

        b.Embed(_embedding, tokens, ws.X);                                  // x (n, d)
        for (int l = 0; l < _layers.Length; l++)
        {
            var w = _layers[l];
            b.RmsNorm(ws.X, w.AttnNorm, eps, ws.H, n);                      // h = norm(x)          (n, d)
            b.MatMul(ws.H, w.Qkv, ws.Qkv, n, FlopCategory.Projection);       // q = h Wqᵀ            (n, nHeads*headDim)
                                                                            // k = h Wkᵀ, v = h Wvᵀ (n, kvDim)
            if (w.QBias is not null)
            {
                b.AddBias(ws.Q, w.QBias, n); b.AddBias(ws.K, w.KBias!, n); b.AddBias(ws.V, w.VBias!, n);
            }
            if (w.QNorm is not null)
            {
                b.RmsNormHeads(ws.Q, w.QNorm, eps, Config.HeadDim, n);       // per-head norms (Qwen3)
                b.RmsNormHeads(ws.K, w.KNorm!, eps, Config.HeadDim, n);
            }
            b.Rope(ws.Q, Config.NHeads, Config.HeadDim, _rope, batch);      // rotate q, k at their positions
            b.Rope(ws.K, Config.NKvHeads, Config.HeadDim, _rope, batch);
            b.StoreKv(kv, l, ws.K, ws.V, batch);                            // cache k, v in their slots
            b.Attention(ws.Q, kv, l, Config.NHeads, batch, ws.Att);         // att = softmax(q kᵀ/√e) v   (n, nHeads*headDim)
            b.MatMul(ws.Att, w.O, ws.H, n, FlopCategory.Projection);        // o = att Woᵀ          (n, d)
            b.Add(ws.X, ws.H, n);                                           // x += o
            b.RmsNorm(ws.X, w.FfnNorm, eps, ws.H, n);                       // h = norm(x)
            b.MatMul(ws.H, w.GateUp, ws.GateUp, n, FlopCategory.Projection); // g = h Wgᵀ, u = h Wuᵀ (n, dFf)
            b.SwiGlu(ws.Gate, ws.Up, n);                                    // g = silu(g) * u
            b.MatMul(ws.Gate, w.Down, ws.H, n, FlopCategory.Projection);    // o = g Wdᵀ            (n, d)
            b.Add(ws.X, ws.H, n);                                           // x += o
        }
        if (m == 0) return;
        b.GatherRows(ws.X, outputRows, ws.Selected);                        // rows whose outputs are wanted (m, d)
        b.RmsNorm(ws.Selected, _finalNorm, eps, ws.SelectedNorm, m);
        var category = Config.Head == HeadKind.LanguageModel ? FlopCategory.LmHead : FlopCategory.PrmHead;
        var headInput = ws.SelectedNorm;
        if (_prmHidden is not null)
        {
            // A process reward head's first layer, at the output rows only (Selected is free again after the norm).
            b.MatMul(ws.SelectedNorm, _prmHidden, ws.Selected, m, category); // z = h W0ᵀ + b0       (m, d)
            b.AddBias(ws.Selected, _prmHiddenBias!, m);
            b.Relu(ws.Selected, m);                                         // z = max(z, 0)
            headInput = ws.Selected;
        }
        b.MatMul(headInput, _head, ws.Out, m, category);                    // out = h Wheadᵀ       (m, headRows)
        if (_headBias is not null) b.AddBias(ws.Out, _headBias, m);
        b.Download(ws.Out, output);
    }

    void GrowRope(int positions)
    {
        int target = Math.Min(Config.MaxPositions, Math.Max(positions, _rope.Rows * 2));
        var next = RopeTable.Upload(_backend, Config, target);
        _rope.Dispose();
        _rope = next;
    }

    Workspace EnsureWorkspace(int n, int m)
    {
        if (_ws is { } w && w.Tokens >= n && w.Outputs >= m) return w;
        int tokens = Math.Max(n, _ws?.Tokens ?? 0), outputs = Math.Max(m, _ws?.Outputs ?? 0);
        _ws?.Dispose();
        _ws = new Workspace(_backend, Config, tokens, outputs);
        return _ws;
    }

    /// <summary>Frees the weights and the workspace on the backend.</summary>
    public void Dispose()
    {
        _ws?.Dispose();
        foreach (var l in _layers)
            foreach (var d in new IDisposable?[] { l.AttnNorm, l.Q, l.K, l.V, l.QBias, l.KBias, l.VBias, l.QNorm, l.KNorm, l.O, l.FfnNorm, l.Gate, l.Up, l.Down })
                d?.Dispose();
        _embedding.Dispose(); _finalNorm.Dispose(); _head.Dispose(); _headBias?.Dispose(); _prmHidden?.Dispose(); _prmHiddenBias?.Dispose(); _rope.Dispose();
    }

    /// <summary>Activation buffers sized for <see cref="Tokens"/> batch rows and <see cref="Outputs"/> output rows.</summary>
    sealed class Workspace(IBackend b, ModelConfig c, int tokens, int outputs) : IDisposable
    {
        public int Tokens { get; } = tokens;
        public int Outputs { get; } = outputs;
        public DeviceTensor X { get; } = b.Allocate(tokens, c.DModel);
        public DeviceTensor H { get; } = b.Allocate(tokens, c.DModel);
        public DeviceTensor Q { get; } = b.Allocate(tokens, c.QDim);
        public DeviceTensor K { get; } = b.Allocate(tokens, c.KvDim);
        public DeviceTensor V { get; } = b.Allocate(tokens, c.KvDim);
        public DeviceTensor Att { get; } = b.Allocate(tokens, c.QDim);
        public DeviceTensor Gate { get; } = b.Allocate(tokens, c.DFf);
        public DeviceTensor Up { get; } = b.Allocate(tokens, c.DFf);
        public DeviceTensor Selected { get; } = b.Allocate(outputs, c.DModel);
        public DeviceTensor SelectedNorm { get; } = b.Allocate(outputs, c.DModel);
        public DeviceTensor Out { get; } = b.Allocate(outputs, c.HeadRows);
        /// <summary>The outputs of the shared-input projections: Q, K, V and Gate, Up.</summary>
        public DeviceTensor[] Qkv => _qkv ??= [Q, K, V];
        public DeviceTensor[] GateUp => _gateUp ??= [Gate, Up];
        DeviceTensor[]? _qkv, _gateUp;

        public void Dispose()
        {
            foreach (var t in new[] { X, H, Q, K, V, Att, Gate, Up, Selected, SelectedNorm, Out }) t.Dispose();
        }
    }
}
