using System.Runtime.InteropServices;

namespace Ponder.Backends.Cpu;

/// <summary>An f32 tensor in native, 64-byte aligned host memory (outside the GC heap, so large caches do not burden it).</summary>
public sealed unsafe class CpuTensor : DeviceTensor
{
    float* _data;

    internal CpuTensor(int rows, int cols) : base(rows, cols)
    {
        _data = (float*)NativeMemory.AlignedAlloc((nuint)Math.Max(1, Length) * sizeof(float), 64);
    }

    internal float* Pointer => _data != null ? _data : throw new ObjectDisposedException(nameof(CpuTensor));

    /// <summary>All Rows x Cols values.</summary>
    public Span<float> Span => new(Pointer, checked((int)Length));

    /// <summary>The first <paramref name="n"/> rows.</summary>
    public Span<float> RowsSpan(int n) => new(Pointer, checked(n * Cols));

    /// <summary>Row <paramref name="i"/> (Cols values).</summary>
    public Span<float> Row(int i) => new(Pointer + (long)i * Cols, Cols);

    /// <inheritdoc/>
    public override void Dispose()
    {
        if (_data != null) { NativeMemory.AlignedFree(_data); _data = null; }
    }
}

/// <summary>A projection weight for the CPU backend (see <see cref="CpuWeight"/>).</summary>
public sealed class CpuDeviceWeight(CpuWeight weight) : DeviceWeight(weight.Rows, weight.Cols)
{
    /// <summary>The packed weight the GEMMs read.</summary>
    public CpuWeight Weight { get; } = weight;
    /// <inheritdoc/>
    public override long Bytes => Weight.Bytes;
    /// <inheritdoc/>
    public override void Dispose() { }
}

/// <summary>KV blocks in native host memory.</summary>
internal sealed unsafe class CpuKvStorage : KvStorage
{
    float* _data;

    internal CpuKvStorage(KvLayout layout, int blockCount) : base(layout, blockCount)
    {
        // Slack past the last block: the attention kernels read up to 8 rows past a tile and 8 floats past a head
        // (results they discard), so those reads must stay inside the allocation.
        long slack = 8L * layout.KvDim + 8;
        _data = (float*)NativeMemory.AlignedAlloc((nuint)(layout.FloatsPerBlock * blockCount + slack) * sizeof(float), 64);
    }

    internal float* Pointer => _data != null ? _data : throw new ObjectDisposedException(nameof(CpuKvStorage));

    /// <summary>One layer's K (kOrV = 0) or V (1) rows of a block: [blockSize, kvDim].</summary>
    public Span<float> Plane(int block, int layer, int kOrV) =>
        new(Pointer + Layout.PlaneOffset(block, layer, kOrV), checked((int)Layout.FloatsPerPlane));

    /// <inheritdoc/>
    public override void Dispose()
    {
        if (_data != null) { NativeMemory.AlignedFree(_data); _data = null; }
    }
}
