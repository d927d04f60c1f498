using Ponder.Tensors;

namespace Ponder.Models;

/// <summary>One tensor in a model file: its canonical (Hugging Face) name, storage type and shape (outermost first).</summary>
public sealed record TensorInfo(string Name, DType Type, long[] Shape)
{
    /// <summary>Number of elements (the product of the shape).</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => checked(a * b));
    /// <summary>The shape as text, e.g. <c>[576, 576]</c>, for messages.</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// Read access to the tensors of a model file (a safetensors folder or a GGUF file), by canonical Hugging Face
/// name (<see cref="TensorNames"/>). Implementations memory-map the file and convert on read, so no tensor is
/// copied twice. GGUF readers undo llama.cpp's Q/K row permutation, so every source returns HF row order.
/// </summary>
public interface ITensorSource : IDisposable
{
    /// <summary>Where the tensors come from (a path), for error messages.</summary>
    string Location { get; }
    /// <summary>The model's configuration as stored beside (safetensors) or inside (GGUF) the tensors.</summary>
    ModelConfig Config { get; }
    /// <summary>Every tensor, by canonical name.</summary>
    IReadOnlyDictionary<string, TensorInfo> Tensors { get; }
    /// <summary>Converts a tensor to f32 row-major into <paramref name="destination"/> (exactly ElementCount long).</summary>
    void ReadF32(string name, Span<float> destination);

    /// <summary>
    /// Copies a tensor's stored bytes (its <see cref="TensorInfo.Type"/>, row-major, HF row order) into
    /// <paramref name="destination"/> (exactly its byte size) and returns true, or returns false when the source cannot
    /// (then <see cref="ReadF32"/> is the way). Quantized weights are kept in their format through this.
    /// </summary>
    bool TryReadRaw(string name, Span<byte> destination) => false;
}

/// <summary>An f32 tensor in host memory, row-major. What writers take and random-model builders produce.</summary>
public sealed record HostTensor(float[] Data, int[] Shape)
{
    /// <summary>A zero tensor of <paramref name="shape"/>.</summary>
    public HostTensor(int[] shape) : this(new float[shape.Aggregate(1, (a, b) => checked(a * b))], shape) { }
    /// <summary>The outermost dimension.</summary>
    public int Rows => Shape[0];
    /// <summary>The second dimension (1 for a vector).</summary>
    public int Cols => Shape.Length > 1 ? Shape[1] : 1;
}

/// <summary>Canonical tensor names (Hugging Face transformers' Llama naming).</summary>
public static class TensorNames
{
    /// <summary>Token embedding, [vocab, dModel].</summary>
    public const string Embedding = "model.embed_tokens.weight";
    /// <summary>RMSNorm weight after the last layer, [dModel].</summary>
    public const string FinalNorm = "model.norm.weight";
    /// <summary>Language-model head, [vocab, dModel] (absent when embeddings are tied).</summary>
    public const string LmHead = "lm_head.weight";
    /// <summary>A PRM's value head (<c>*ForTokenClassification</c>), [numLabels, dModel].</summary>
    public const string ValueHead = "score.weight";
    /// <summary>The value head's bias, [numLabels], when present.</summary>
    public const string ValueHeadBias = "score.bias";
    /// <summary>A process reward head's first layer (<see cref="HeadKind.ProcessReward"/>), [dModel, dModel]: <c>score</c> is an nn.Sequential whose index 1 is the ReLU.</summary>
    public const string PrmHidden = "score.0.weight";
    /// <summary>The first layer's bias, [dModel].</summary>
    public const string PrmHiddenBias = "score.0.bias";
    /// <summary>A process reward head's output layer, [numLabels = 2, dModel].</summary>
    public const string PrmOutput = "score.2.weight";
    /// <summary>The output layer's bias, [numLabels].</summary>
    public const string PrmOutputBias = "score.2.bias";
    /// <summary>The value row a causal LM with <see cref="ModelConfig.SharedValueHead"/> carries beside its LM head.</summary>
    public const string SharedValueHead = "value_head.weight";

    /// <summary>RMSNorm weight before attention, [dModel].</summary>
    public static string AttnNorm(int layer) => $"model.layers.{layer}.input_layernorm.weight";
    /// <summary>RMSNorm weight before the feed-forward, [dModel].</summary>
    public static string FfnNorm(int layer) => $"model.layers.{layer}.post_attention_layernorm.weight";
    /// <summary>Query projection, [nHeads*headDim, dModel].</summary>
    public static string Q(int layer) => $"model.layers.{layer}.self_attn.q_proj.weight";
    /// <summary>Key projection, [nKvHeads*headDim, dModel].</summary>
    public static string K(int layer) => $"model.layers.{layer}.self_attn.k_proj.weight";
    /// <summary>Value projection, [nKvHeads*headDim, dModel].</summary>
    public static string V(int layer) => $"model.layers.{layer}.self_attn.v_proj.weight";
    /// <summary>Query projection bias (Qwen2), [nHeads*headDim].</summary>
    public static string QBias(int layer) => $"model.layers.{layer}.self_attn.q_proj.bias";
    /// <summary>Key projection bias (Qwen2), [nKvHeads*headDim].</summary>
    public static string KBias(int layer) => $"model.layers.{layer}.self_attn.k_proj.bias";
    /// <summary>Value projection bias (Qwen2), [nKvHeads*headDim].</summary>
    public static string VBias(int layer) => $"model.layers.{layer}.self_attn.v_proj.bias";
    /// <summary>Attention output projection, [dModel, nHeads*headDim].</summary>
    public static string O(int layer) => $"model.layers.{layer}.self_attn.o_proj.weight";
    /// <summary>Qwen3's per-head RMSNorm weight on queries, [headDim].</summary>
    public static string QNorm(int layer) => $"model.layers.{layer}.self_attn.q_norm.weight";
    /// <summary>Qwen3's per-head RMSNorm weight on keys, [headDim].</summary>
    public static string KNorm(int layer) => $"model.layers.{layer}.self_attn.k_norm.weight";
    /// <summary>Phi-3's fused Q, K and V projection, [nHeads*headDim + 2*nKvHeads*headDim, dModel] (split at load).</summary>
    public static string FusedQkv(int layer) => $"model.layers.{layer}.self_attn.qkv_proj.weight";
    /// <summary>Phi-3's fused gate and up projection, [2*dFf, dModel], gate rows first (split at load).</summary>
    public static string FusedGateUp(int layer) => $"model.layers.{layer}.mlp.gate_up_proj.weight";
    /// <summary>Feed-forward gate projection (the SiLU branch), [dFf, dModel].</summary>
    public static string Gate(int layer) => $"model.layers.{layer}.mlp.gate_proj.weight";
    /// <summary>Feed-forward up projection, [dFf, dModel].</summary>
    public static string Up(int layer) => $"model.layers.{layer}.mlp.up_proj.weight";
    /// <summary>Feed-forward down projection, [dModel, dFf].</summary>
    public static string Down(int layer) => $"model.layers.{layer}.mlp.down_proj.weight";

    /// <summary>
    /// The fused projections a Phi-3 checkpoint stores per layer, each with the tensors its rows hold, in order:
    /// <c>qkv_proj</c> = q | k | v, <c>gate_up_proj</c> = gate | up. Empty for other architectures.
    /// </summary>
    public static IEnumerable<(string Fused, (string Name, int Rows)[] Parts, string Meaning)> Fused(ModelConfig config)
    {
        if (config.Architecture != Architecture.Phi3) yield break;
        for (int l = 0; l < config.NLayers; l++)
        {
            yield return (FusedQkv(l), [(Q(l), config.QDim), (K(l), config.KvDim), (V(l), config.KvDim)], "(nHeads*headDim + 2*nKvHeads*headDim, dModel)");
            yield return (FusedGateUp(l), [(Gate(l), config.DFf), (Up(l), config.DFf)], "(2*dFf, dModel)");
        }
    }

    /// <summary>Every tensor a model with <paramref name="config"/> must have, with its expected shape and what the shape means.</summary>
    public static IEnumerable<(string Name, long[] Shape, string Meaning)> Expected(ModelConfig config)
    {
        int d = config.DModel, q = config.QDim, kv = config.KvDim, f = config.DFf;
        yield return (Embedding, [config.Vocab, d], "(vocab, dModel)");
        for (int l = 0; l < config.NLayers; l++)
        {
            yield return (AttnNorm(l), [d], "(dModel)");
            yield return (Q(l), [q, d], "(nHeads*headDim, dModel)");
            yield return (K(l), [kv, d], "(nKvHeads*headDim, dModel)");
            yield return (V(l), [kv, d], "(nKvHeads*headDim, dModel)");
            if (config.QkvBias)
            {
                yield return (QBias(l), [q], "(nHeads*headDim)");
                yield return (KBias(l), [kv], "(nKvHeads*headDim)");
                yield return (VBias(l), [kv], "(nKvHeads*headDim)");
            }
            if (config.QkNorm)
            {
                yield return (QNorm(l), [config.HeadDim], "(headDim)");
                yield return (KNorm(l), [config.HeadDim], "(headDim)");
            }
            yield return (O(l), [d, q], "(dModel, nHeads*headDim)");
            yield return (FfnNorm(l), [d], "(dModel)");
            yield return (Gate(l), [f, d], "(dFf, dModel)");
            yield return (Up(l), [f, d], "(dFf, dModel)");
            yield return (Down(l), [d, f], "(dModel, dFf)");
        }
        yield return (FinalNorm, [d], "(dModel)");
        if (config.Head == HeadKind.Value) yield return (ValueHead, [config.NumLabels, d], "(numLabels, dModel)");
        else if (config.Head == HeadKind.ProcessReward)
        {
            yield return (PrmHidden, [d, d], "(dModel, dModel)");
            yield return (PrmHiddenBias, [d], "(dModel)");
            yield return (PrmOutput, [config.NumLabels, d], "(numLabels, dModel)");
            yield return (PrmOutputBias, [config.NumLabels], "(numLabels)");
        }
        else if (!config.TiedEmbeddings) yield return (LmHead, [config.Vocab, d], "(vocab, dModel)");
        if (config.SharedValueHead) yield return (SharedValueHead, [1, d], "(1, dModel)");
    }

    /// <summary>
    /// Checks that <paramref name="source"/> has every expected tensor with the expected shape, and no tensor the forward
    /// pass would leave unused (an o_proj or MLP bias, a norm of another architecture): either throws naming the tensor.
    /// An LM head beside tied embeddings (some checkpoints save both) or beside a process reward head (a reward model
    /// fine-tuned from a causal LM may keep it; transformers' and vLLM's reward models never read it), and RoPE's inv_freq
    /// buffers are allowed.
    /// </summary>
    public static void CheckComplete(ITensorSource source)
    {
        var expected = Expected(source.Config).Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        foreach (string name in source.Tensors.Keys)
            if (!expected.Contains(name) && !(name == ValueHeadBias && source.Config.Head == HeadKind.Value) && !name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)
                && !(name == LmHead && (source.Config.TiedEmbeddings || source.Config.Head == HeadKind.ProcessReward)))
                throw new NotSupportedException($"{source.Location}: tensor '{name}' is not part of a {source.Config.Architecture} model as Ponder computes it; loading would ignore it");
        foreach (var (name, shape, meaning) in Expected(source.Config))
        {
            if (!source.Tensors.TryGetValue(name, out var info))
                throw new InvalidDataException($"{source.Location}: tensor '{name}' is missing (expected shape [{string.Join(", ", shape)}] {meaning})");
            if (!info.Shape.SequenceEqual(shape))
                throw new InvalidDataException($"{source.Location}: tensor '{name}' has shape {info.ShapeText}, expected [{string.Join(", ", shape)}] {meaning}");
        }
    }
}
