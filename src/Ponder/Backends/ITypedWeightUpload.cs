using Ponder.Tensors;

namespace Ponder.Backends;

/// <summary>
/// A backend that multiplies F16, BF16 or block-quantized weights in their own format (converting in registers), so a
/// decode step streams 2x (16-bit) or 3.2-3.6x (quantized, kept as int8 with f32 scales) fewer bytes than an f32 copy. Optional: <see cref="Models.Transformer"/>
/// uses it where the backend offers it and falls back to <see cref="IBackend.UploadWeight"/> otherwise.
/// </summary>
public interface ITypedWeightUpload
{
    /// <summary>Whether a [rows, cols] weight of <paramref name="type"/> can be kept in that format.</summary>
    bool CanKeep(DType type, int rows, int cols);

    /// <summary>Prepares W [rows = out, cols = in] stored as <paramref name="type"/> (row-major, little-endian), kept in that format.</summary>
    DeviceWeight UploadWeight(ReadOnlySpan<byte> data, DType type, int rows, int cols);
}
