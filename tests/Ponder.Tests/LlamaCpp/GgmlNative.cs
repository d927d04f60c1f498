using System.Runtime.InteropServices;
using LLama;
using LLama.Native;
using Ponder.Tensors;

namespace Ponder.Tests.LlamaCpp;

/// <summary>
/// llama.cpp's own quantizer and ggml's own block (de)quantizers, called in the native library LLamaSharp loads: the
/// independent reference for Ponder's quantized types. ggml-base exports <c>dequantize_row_*</c> (the plain C
/// dequantizers every ggml backend agrees with) and <c>quantize_row_q8_*_ref</c> (how the CPU backend quantizes
/// activations before a quantized dot product).
/// </summary>
static unsafe class GgmlNative
{
    static readonly Lazy<nint> Library = new(() =>
    {
        // Loads libllama (and, through its RUNPATH, ggml-base) from the runtime LLamaSharp picked for this CPU; the
        // already-loaded ggml-base is then found by its soname.
        NativeApi.llama_empty_call();
        foreach (string name in new[] { "libggml-base.so", "ggml-base.dll", "libggml-base.dylib" })
            if (NativeLibrary.TryLoad(name, out nint handle)) return handle;
        throw new InvalidOperationException("ggml-base is not loaded after llama_empty_call");
    });

    static nint Export(string name) => NativeLibrary.GetExport(Library.Value, name);

    /// <summary>Quantizes an f32 GGUF with llama.cpp's llama-quantize logic (<paramref name="ftype"/>: "Q4_K_M", "Q4_0", ...).</summary>
    public static void Quantize(string srcF32Gguf, string dst, string ftype)
    {
        _ = Library.Value;
        if (!LLamaQuantizer.Quantize(srcF32Gguf, dst, ftype, nthread: 2, allowRequantize: false, quantizeOutputTensor: true))
            throw new InvalidOperationException($"llama.cpp could not quantize {srcF32Gguf} to {ftype}");
    }

    /// <summary>ggml's dequantize_row_&lt;type&gt;: <paramref name="count"/> values from blocks of <paramref name="type"/>.</summary>
    public static float[] Dequantize(DType type, ReadOnlySpan<byte> blocks, int count)
    {
        var fn = (delegate* unmanaged[Cdecl]<byte*, float*, long, void>)Export("dequantize_row_q" + type.ToString()[1..]);
        var y = new float[count];
        fixed (byte* x = blocks)
        fixed (float* py = y)
            fn(x, py, count);
        return y;
    }

    /// <summary>
    /// What the CPU backend multiplies a quantized weight of <paramref name="weightType"/> with: the activation row
    /// quantized to the weight's vec_dot type (q8_K for the K types, q8_1 for Q4_1/Q5_1, q8_0 otherwise) by ggml's
    /// reference quantizer, and decoded back to f32. The row's length must be a multiple of the block (256 for q8_K).
    /// </summary>
    public static float[] QuantizeActivations(DType weightType, ReadOnlySpan<float> x)
    {
        var (name, blockValues, blockBytes) = weightType switch
        {
            DType.Q4_K or DType.Q5_K or DType.Q6_K => ("q8_K", 256, 4 + 256 + 2 * 16),
            DType.Q4_1 or DType.Q5_1 => ("q8_1", 32, 4 + 32),
            _ => ("q8_0", 32, 2 + 32),
        };
        if (x.Length % blockValues != 0) throw new ArgumentException($"{x.Length} activations are not whole {name} blocks of {blockValues}");
        var quantize = (delegate* unmanaged[Cdecl]<float*, byte*, long, void>)Export($"quantize_row_{name}_ref");
        var blocks = new byte[x.Length / blockValues * blockBytes];
        var y = new float[x.Length];
        fixed (float* px = x, py = y)
        fixed (byte* pb = blocks)
        {
            quantize(px, pb, x.Length);
            if (name == "q8_1")
            {
                // block_q8_1 is {f16 d, f16 s, int8 qs[32]}; ggml has no dequantize_row_q8_1, and s only enters the dot
                // product's offset term: the values are d·q.
                for (int b = 0; b < x.Length / 32; b++)
                {
                    float d = (float)BitConverter.UInt16BitsToHalf(*(ushort*)(pb + b * blockBytes));
                    for (int i = 0; i < 32; i++) py[b * 32 + i] = d * ((sbyte*)pb)[b * blockBytes + 4 + i];
                }
            }
            else
            {
                var dequantize = (delegate* unmanaged[Cdecl]<byte*, float*, long, void>)Export($"dequantize_row_{name}");
                dequantize(pb, py, x.Length);
            }
        }
        return y;
    }
}
