using System.Text.RegularExpressions;

namespace Ponder.Models.Gguf;

/// <summary>
/// Maps llama.cpp's GGUF tensor names to the canonical Hugging Face names, and converts Q/K rows between the two
/// RoPE conventions.
/// </summary>
internal static partial class GgufNames
{
    public const string RopeFreqs = "rope_freqs.weight";
    /// <summary>Where Ponder stores a value head; llama.cpp names a classifier output this way.</summary>
    public const string ValueHead = "cls.output.weight";
    public const string ValueHeadBias = "cls.output.bias";
    /// <summary>
    /// Where Ponder stores a causal LM's shared value row (<see cref="ModelConfig.SharedValueHead"/>). llama.cpp has no
    /// such tensor and refuses files with tensors it does not create, so such a GGUF is for Ponder only.
    /// </summary>
    public const string SharedValueHead = "ponder.value_head.weight";

    private static readonly (string Gguf, Func<int, string> Hf)[] LayerNames =
    [
        ("attn_norm.weight", TensorNames.AttnNorm),
        ("attn_q.weight", TensorNames.Q),
        ("attn_k.weight", TensorNames.K),
        ("attn_v.weight", TensorNames.V),
        ("attn_q.bias", TensorNames.QBias),
        ("attn_k.bias", TensorNames.KBias),
        ("attn_v.bias", TensorNames.VBias),
        ("attn_output.weight", TensorNames.O),
        ("attn_qkv.weight", TensorNames.FusedQkv),
        ("attn_q_norm.weight", TensorNames.QNorm),
        ("attn_k_norm.weight", TensorNames.KNorm),
        ("ffn_norm.weight", TensorNames.FfnNorm),
        ("ffn_gate.weight", TensorNames.Gate),
        ("ffn_up.weight", TensorNames.Up),
        ("ffn_down.weight", TensorNames.Down),
    ];

    private static readonly (string Gguf, string Hf)[] GlobalNames =
    [
        ("token_embd.weight", TensorNames.Embedding),
        ("output_norm.weight", TensorNames.FinalNorm),
        ("output.weight", TensorNames.LmHead),
        (ValueHead, TensorNames.ValueHead),
        (ValueHeadBias, TensorNames.ValueHeadBias),
        (SharedValueHead, TensorNames.SharedValueHead),
    ];

    [GeneratedRegex(@"^blk\.(\d{1,5})\.(.+)$")]
    private static partial Regex LayerPattern();

    /// <summary>
    /// The canonical name for a GGUF name, or null for tensors Ponder does not use. In a <c>phi3</c> file
    /// (<paramref name="architecture"/>), <c>ffn_up</c> is the fused gate | up projection.
    /// </summary>
    public static string? ToHf(string gguf, Architecture architecture = Architecture.Llama)
    {
        foreach (var (g, hf) in GlobalNames) if (g == gguf) return hf;
        var m = LayerPattern().Match(gguf);
        if (!m.Success) return null;
        int layer = int.Parse(m.Groups[1].Value);
        if (architecture == Architecture.Phi3 && m.Groups[2].Value == PhiGateUp) return TensorNames.FusedGateUp(layer);
        foreach (var (g, hf) in LayerNames) if (g == m.Groups[2].Value) return hf(layer);
        return null;
    }

    /// <summary>llama.cpp's name for Phi-3's fused gate | up projection (its SwiGLU splits the output in halves).</summary>
    const string PhiGateUp = "ffn_up.weight";

    /// <summary>The GGUF name for a canonical name; throws <see cref="ArgumentException"/> for names GGUF has no place for.</summary>
    public static string ToGguf(string hf, int nLayers)
    {
        foreach (var (g, h) in GlobalNames) if (h == hf) return g;
        for (int l = 0; l < nLayers; l++)
        {
            if (hf == TensorNames.FusedGateUp(l)) return $"blk.{l}.{PhiGateUp}";
            foreach (var (g, h) in LayerNames)
                if (h(l) == hf) return $"blk.{l}.{g}";
        }
        throw new ArgumentException($"tensor '{hf}' has no GGUF name", nameof(hf));
    }

    /// <summary>
    /// How many heads a tensor's rows must be permuted over, or 0 when it is not a Q/K projection. Hugging Face
    /// rotates the halves [x0..x(h/2-1) | x(h/2)..] of each head; llama.cpp's "normal" RoPE rotates adjacent pairs,
    /// so its converter stores Q and K (weights and biases) with each head's rows interleaved.
    /// </summary>
    public static int RopeHeads(string hf, ModelConfig config)
    {
        for (int l = 0; l < config.NLayers; l++)
        {
            if (hf == TensorNames.Q(l) || hf == TensorNames.QBias(l)) return config.NHeads;
            if (hf == TensorNames.K(l) || hf == TensorNames.KBias(l)) return config.NKvHeads;
        }
        return 0;
    }

    /// <summary>
    /// Row permutation between HF and GGUF order, per head of <paramref name="headDim"/> rows of <paramref name="cols"/> values:
    /// GGUF row 2i+half holds HF row half*headDim/2 + i. <paramref name="toGguf"/> picks the direction. A row is
    /// <paramref name="cols"/> elements of T (f32 values, or a quantized row's bytes).
    /// </summary>
    public static void PermuteRows<T>(ReadOnlySpan<T> src, Span<T> dst, int nHeads, int headDim, int cols, bool toGguf)
    {
        int halfDim = headDim / 2;
        for (int h = 0; h < nHeads; h++)
            for (int half = 0; half < 2; half++)
                for (int i = 0; i < halfDim; i++)
                {
                    int hfRow = h * headDim + half * halfDim + i;
                    int ggufRow = h * headDim + 2 * i + half;
                    var (from, to) = toGguf ? (hfRow, ggufRow) : (ggufRow, hfRow);
                    src.Slice(from * cols, cols).CopyTo(dst.Slice(to * cols, cols));
                }
    }
}
