using System.Globalization;
using System.Text;
using Ponder.Models.Gguf;
using Ponder.Models.Safetensors;
using Ponder.Tensors;
using Ponder.Tokenization;

namespace Ponder.Training;

/// <summary>Writes a trained policy's weights (safetensors folder and GGUF, f32) and its model card.</summary>
public static class ModelExport
{
    /// <summary>Loads the run's checkpoint and writes <c>config.json</c>, <c>model.safetensors</c>, <c>model.gguf</c> and <c>README.md</c> into config.WeightsDir.</summary>
    public static void Write(TrainingConfig config, PolicyTrainingResult result, string? command = null)
    {
        string dir = config.WeightsDir ?? throw new ArgumentException("the config has no weightsDir", nameof(config));
        var (parameters, state) = Checkpoint.Load(result.CheckpointPath);
        WriteWeights(dir, parameters, TrainedChatTemplates.Policy);
        foreach (string f in new[] { "loss.csv", "loss.png", "test.jsonl", "validation.jsonl", "pass_at_1.json" })
        {
            string src = Path.Combine(config.OutputDir, f);
            if (File.Exists(src)) File.Copy(src, Path.Combine(dir, f), overwrite: true);
        }
        File.WriteAllText(Path.Combine(dir, "README.md"), ModelCard(config, parameters, state, result, command));
    }

    /// <summary>
    /// Writes <c>config.json</c> + <c>model.safetensors</c>, <c>tokenizer.json</c> and <c>model.gguf</c> (f32, with the
    /// byte-level tokenizer) into <paramref name="dir"/>, and <c>tokenizer_config.json</c> with <paramref name="chatTemplate"/> when given.
    /// </summary>
    public static void WriteWeights(string dir, ParameterSet parameters, string? chatTemplate = null)
    {
        var tensors = parameters.Tensors;
        SafetensorsWriter.WriteFolder(dir, parameters.Config, tensors, DType.F32);
        string tokenizerJson = Path.Combine(dir, "tokenizer.json");
        TokenizerFiles.WriteByteLevel(tokenizerJson, ByteTokenizer.PonderSpecials.OrderBy(kv => kv.Value).Select(kv => kv.Key).ToList());
        GgufWriter.Write(Path.Combine(dir, "model.gguf"), parameters.Config, tensors, DType.F32, TokenizerFiles.ToGgufMetadata(tokenizerJson));
        if (chatTemplate is not null) TrainedChatTemplates.Write(dir, chatTemplate);
    }

    static string ModelCard(TrainingConfig c, ParameterSet p, TrainingState state, PolicyTrainingResult r, string? command)
    {
        var m = p.Config;
        var inv = CultureInfo.InvariantCulture;
        var card = new ModelCard(c.Name);
        card.Text("Ponder's policy for the arithmetic-chain task (docs/method.md, \"The reference task\"), trained from scratch with");
        card.Text("Ponder's pure C# trainer (`src/Ponder.Training`, hand-written backward pass).");
        card.Blank();
        card.Text("## Architecture");
        card.Line($"LlamaForCausalLM: dModel {m.DModel}, nLayers {m.NLayers}, nHeads {m.NHeads}, nKvHeads {m.NKvHeads} (GQA), headDim {m.HeadDim}, dFf {m.DFf} (SwiGLU),");
        card.Line($"RMSNorm (eps {m.RmsNormEps}), RoPE rotate-half (theta {m.RopeTheta}), context {m.MaxPositions}, tied embeddings: {m.TiedEmbeddings}.");
        card.Line($"Byte-level vocabulary of {m.Vocab}: ids 0..255 bytes, 256 `<|bos|>`, 257 `<|eos|>`, 258 `<|pad|>`.");
        card.Line($"Parameters: {m.TotalParameters:N0} total, {m.NonEmbeddingParameters:N0} non-embedding.");
        card.Blank();
        card.Text("Files: `config.json` + `model.safetensors` (f32), `model.gguf` (f32, with the byte-level tokenizer as GGUF \"gpt2\" metadata), `tokenizer.json`, `tokenizer_config.json` (chat template: the training prompt), `loss.csv`, `loss.png`,");
        card.Text("`test.jsonl` / `validation.jsonl` (the fixed splits), `pass_at_1.json` (per-question pass@1).");
        card.Blank();
        card.Text("## Training");
        card.Line($"- Command: `{command ?? $"ponder train policy --config configs/{c.Name}.json"}` (resumes from `{c.OutputDir}/checkpoint.bin` when present).");
        card.Line($"- Data: {c.TrainQuestions:N0} generated questions (seed {c.Seed}, level = u^{c.LevelPower}, u uniform; levels map to 1-8 ops, 1-3 digit operands, parentheses from level 0.3).");
        card.Line($"  Prompt `Q: <expr>\\n` (not trained on), solution lines + `A: n\\n` + EOS (trained on), packed {c.BatchSize} rows x {c.BlockSize} tokens per step with per-document attention.");
        card.Line($"- Steps: {state.Step} ({state.DataCursor:N0} examples seen), tokens seen D_pretrain = {(long)state.Step * c.BatchSize * c.BlockSize:N0} positions (incl. padding), {r.TrainTokens:N0} example tokens.");
        card.Line($"- AdamW lr {c.LearningRate} (warmup {c.WarmupSteps}, cosine to {c.MinLearningRateFraction}x), betas ({c.Beta1}, {c.Beta2}), weight decay {c.WeightDecay} (matrices only), clip {c.GradClip}, dropout {c.Dropout}.");
        card.Line($"- Final losses (nats per solution token): train {r.FinalTrainLoss:F4}, validation {r.FinalValidationLoss:F4}.");
        card.Line($"- Throughput {r.TokensPerSecond:F0} tokens/s; wall time of the last (possibly resumed) session {r.WallTime:hh\\:mm\\:ss} on a shared 2-core CPU.");
        card.Blank();
        card.Text("## pass@1 on the test split (500 questions along the difficulty ladder; fifth 1 easiest)");
        card.Text("| sampling | overall | fifth 1 | fifth 2 | fifth 3 | fifth 4 | fifth 5 |");
        card.Text("|---|---|---|---|---|---|---|");
        foreach (var rep in new[] { r.Greedy, r.Sampled })
            if (rep is not null)
                card.Line($"| {(rep.Temperature == 0 ? "greedy" : $"T={rep.Temperature}, {rep.SamplesPerQuestion} samples")} | {rep.Overall:P1} | {string.Join(" | ", rep.Fifths.Select(f => f.ToString("P1", inv)))} |");
        card.Blank();
        card.Text("Fifths are by position on the ladder: fifth 1 = 1-2 ops on single digits; fifth 5 = 7-8 ops, up to 3-digit operands, parentheses.");
        return card.ToString();
    }
}
