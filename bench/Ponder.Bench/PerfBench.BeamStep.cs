using Ponder.Backends;
using Ponder.Backends.Cpu;
using Ponder.Cache;
using Ponder.Models;
using Ponder.Scheduling;
using Ponder.Tensors;

namespace Ponder.Bench;

public static partial class PerfBench
{
    /// <summary>Tokens of one search step: what the policy decodes per beam before the PRM scores the step.</summary>
    const int BeamStepTokens = 16;

    /// <summary>
    /// Exact FLOPs of one beam-search step by Ponder's counter: the policy decodes <see cref="BeamStepTokens"/> tokens for
    /// each of <paramref name="n"/> beams (one batched forward per token, logits for every beam), then the value-head PRM
    /// prefills each beam's new step after its own copy of the prompt (one forward, one score per beam).
    /// </summary>
    static FlopCounts BeamStepFlops(ModelConfig policy, ModelConfig prm, int n, int prompt)
    {
        var policyCounter = new FlopCounter(policy);
        var total = FlopCounts.Zero;
        // Beam i's pending first token sits at position prompt (forked from the computed prompt): step j decodes at prompt + j.
        for (int j = 0; j < BeamStepTokens; j++) total += Times(policyCounter.Chunk(1, prompt + j, 1), n);
        return total + Times(new FlopCounter(prm).Chunk(BeamStepTokens, prompt, 1), n);
    }

    static FlopCounts Times(FlopCounts c, int n) =>
        new(c.Projection * n, c.Attention * n, c.LmHead * n, c.PrmHead * n, c.Elementwise * n);

    /// <summary>The PRM of the beam-step rows: the policy's trunk shape with a one-label value head (random weights, seed 2).</summary>
    static ModelConfig PrmConfig(ModelConfig policy) => policy with { Head = HeadKind.Value, NumLabels = 1, TiedEmbeddings = false };

    static (Transformer Model, BlockPool Pool)? s_prm;

    /// <summary>The value-head PRM on its own CPU backend and block pool, made once.</summary>
    static (Transformer Model, BlockPool Pool) Prm(ModelConfig policy)
    {
        if (s_prm is { } m) return m;
        var config = PrmConfig(policy);
        var backend = new CpuBackend(Threads);
        var model = new Transformer(backend, new HostTensorSource(config, RandomModels.Create(config, 2), "random:prm"));
        s_prm = (model, BlockPool.ForTokens(backend, config.ToKvLayout(), 64 * (BeamStepTokens + 16) + 2048));
        return s_prm.Value;
    }

    /// <summary>
    /// One beam-search step on Ponder: <paramref name="n"/> beams forked from a shared 128-token prompt decode
    /// <see cref="BeamStepTokens"/> tokens in batched forwards, then the PRM (its own prompt copy shared the same way)
    /// scores every beam's new step in one forward. Each run checks both backends' FLOP ledgers against the counter.
    /// </summary>
    sealed class PonderBeamStep((Transformer Model, BlockPool Pool) policy, (Transformer Model, BlockPool Pool) prm, int n, int prompt) : ISide
    {
        readonly int _vocab = policy.Model.Config.Vocab;
        readonly List<Sequence> _beams = [], _scored = [];
        readonly SequenceBatch _batch = new(policy.Pool.BlockSize), _prmBatch = new(prm.Pool.BlockSize);
        readonly float[] _logits = new float[n * policy.Model.Config.HeadRows];
        readonly float[] _scores = new float[n * prm.Model.Config.HeadRows];
        readonly FlopCounts _expected = BeamStepFlops(policy.Model.Config, prm.Model.Config, n, prompt);
        readonly int[] _step = new int[BeamStepTokens];
        Sequence? _prompt, _prmPrompt;
        public int Tokens => n * BeamStepTokens;
        public void Prepare()
        {
            foreach (var b in _beams) b.Dispose();
            foreach (var b in _scored) b.Dispose();
            _beams.Clear(); _scored.Clear();
            if (_prompt == null)
            {
                int[] tokens = PerfBench.Tokens(prompt, _vocab, 3);
                _prompt = new Sequence(policy.Pool); _prompt.Append(tokens);
                _prmPrompt = new Sequence(prm.Pool); _prmPrompt.Append(tokens);
                _batch.Clear(); _batch.Add(_prompt); Forward(policy.Model, policy.Pool, _batch, _logits); 
                _prmBatch.Clear(); _prmBatch.Add(_prmPrompt); Forward(prm.Model, prm.Pool, _prmBatch, _scores);
            }
            for (int i = 0; i < n; i++) { var b = _prompt.Fork(); b.Append(BeamToken(i, 0, _vocab)); _beams.Add(b); }
        }

        public void Run()
        {
            var policyFlops = policy.Model.Backend.Flops.Snapshot();
            var prmFlops = prm.Model.Backend.Flops.Snapshot();
            for (int s = 0; s < BeamStepTokens; s++)
            {
                _batch.Clear();
                foreach (var b in _beams) _batch.Add(b);
                Forward(policy.Model, policy.Pool, _batch, _logits);
                if (s + 1 < BeamStepTokens) for (int i = 0; i < n; i++) _beams[i].Append(BeamToken(i, s + 1, _vocab));
            }
            _prmBatch.Clear();
            for (int i = 0; i < n; i++)
            {
                var scored = _prmPrompt!.Fork();
                for (int s = 0; s < BeamStepTokens; s++) _step[s] = BeamToken(i, s, _vocab);
                scored.Append(_step);
                _scored.Add(scored);
                _prmBatch.Add(scored);
            }
            Forward(prm.Model, prm.Pool, _prmBatch, _scores);
            var measured = FlopCounts.From(policy.Model.Backend.Flops.Since(policyFlops)) + FlopCounts.From(prm.Model.Backend.Flops.Since(prmFlops));
            if (measured != _expected) throw new InvalidOperationException($"beam step FLOPs: ledgers {measured}, counter {_expected}");
        }

        static void Forward(Transformer model, BlockPool pool, SequenceBatch batch, float[] output)
        {
            model.Forward(batch.Layout, batch.Tokens, pool.Storage, batch.OutputRows, output.AsSpan(0, batch.OutputRows.Length * model.Config.HeadRows));
            batch.MarkComputed();
        }
    }

    /// <summary>Beam <paramref name="beam"/>'s token at <paramref name="position"/> of its step (the same on both engines; sampling is not timed).</summary>
    static int BeamToken(int beam, int position, int vocab) => (beam * 31 + position * 17 + 7) % vocab;

    /// <summary>
    /// The same step on llama.cpp: the policy context holds the prompt once, shared with every beam by
    /// <c>seq_cp</c>, and decodes one token per beam per batch; a second context on a trunk of the same shape holds the
    /// prompt the same way and scores all beams' steps in batches of whole steps, one output row per beam. llama.cpp's
    /// LLaMA graph has no one-row value head, so that output row goes through the 49152-row LM head: 2·d·vocab more
    /// FLOPs per beam (~1.7% of the PRM's share), charged to llama.cpp's time. Its embeddings mode (last-token
    /// pooling) would skip the head but marks every token an output, which measured 20-30% more CPU for the PRM call.
    /// </summary>
    sealed class LlamaBeamStep(LlamaCpp policy, LlamaCpp prm, int n, int prompt, int vocab) : ISide, IDisposable
    {
        public int Tokens => n * BeamStepTokens;
        public void Prepare()
        {
            int[] tokens = PerfBench.Tokens(prompt, vocab, 3);
            foreach (var side in new[] { policy, prm }) { side.Clear(); side.Run(tokens, 0); side.CopyPrompt(n, prompt); }
        }

        public void Run()
        {
            for (int s = 0; s < BeamStepTokens; s++) policy.DecodeStep(n, prompt + s, i => BeamToken(i, s, vocab));
            prm.ScoreSteps(n, prompt, BeamStepTokens, (i, s) => BeamToken(i, s, vocab));
        }

        public void Dispose() { policy.Dispose(); prm.Dispose(); }
    }
}
