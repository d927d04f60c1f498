namespace Ponder.Backends;

/// <summary>
/// The op set the forward pass needs. <see cref="Models.Transformer"/> is written once against it; backends differ
/// only in kernels (<see cref="Cpu.CpuBackend"/>, the ILGPU backend in Ponder.Kernels).
/// </summary>
/// <remarks>
/// Activations are f32 row-major matrices (<see cref="DeviceTensor"/>): one row per token of the batch. Tensors are
/// allocated at a capacity and ops take the number of active rows <c>n</c>, so one workspace serves batches of any
/// size without reallocation. Every op adds the FLOPs it performed to <see cref="Flops"/> (formulas in <see cref="OpFlops"/>).
/// A backend is used from one thread at a time; it parallelizes inside ops.
/// </remarks>
public interface IBackend : IDisposable
{
    /// <summary>Short name for reports ("cpu", "ilgpu-cuda", ...).</summary>
    string Name { get; }

    /// <summary>FLOPs performed by this backend's ops, by category, since creation or the last reset.</summary>
    FlopLedger Flops { get; }

    /// <summary>Allocates an uninitialized f32 tensor [rows, cols].</summary>
    DeviceTensor Allocate(int rows, int cols);
    /// <summary>Allocates a tensor [rows, cols] holding <paramref name="data"/> (row-major).</summary>
    DeviceTensor Upload(ReadOnlySpan<float> data, int rows, int cols);
    /// <summary>Copies the first <c>destination.Length / tensor.Cols</c> rows of a tensor to the host.</summary>
    void Download(DeviceTensor tensor, Span<float> destination);

    /// <summary>Prepares a projection weight W [rows = out, cols = in] (row-major f32) in the backend's preferred layout.</summary>
    DeviceWeight UploadWeight(ReadOnlySpan<float> data, int rows, int cols);

    /// <summary>Allocates a paged KV cache of <paramref name="blockCount"/> blocks laid out as <paramref name="layout"/> says.</summary>
    KvStorage AllocateKv(KvLayout layout, int blockCount);
    /// <summary>Copies every layer's K and V of block <paramref name="source"/> into block <paramref name="destination"/> (copy-on-write).</summary>
    void CopyKvBlock(KvStorage kv, int source, int destination);

    /// <summary>x[i, :] = table[tokens[i], :] for the batch's tokens. FLOPs: 0.</summary>
    void Embed(DeviceTensor table, ReadOnlySpan<int> tokens, DeviceTensor x);

    /// <summary>y[i] = x[i] / sqrt(mean(x[i]^2) + eps) * weight, for n rows. FLOPs (elementwise): <see cref="OpFlops.RmsNorm"/>.</summary>
    void RmsNorm(DeviceTensor x, DeviceTensor weight, float eps, DeviceTensor y, int n);

    /// <summary>
    /// RMSNorm of every head in place: each of the x.Cols / <paramref name="headDim"/> heads of each of n rows becomes
    /// head / sqrt(mean(head^2) + eps) * weight, with one weight of headDim shared by all heads (Qwen3's q_norm and
    /// k_norm). FLOPs (elementwise): <see cref="OpFlops.RmsNorm"/> over n·heads rows of headDim, i.e. 4 · n · x.Cols.
    /// </summary>
    void RmsNormHeads(DeviceTensor x, DeviceTensor weight, float eps, int headDim, int n);

    /// <summary>y[n, w.Rows] = x[n, w.Cols] · Wᵀ. FLOPs: 2 * n * rows * cols, charged to <paramref name="category"/>.</summary>
    void MatMul(DeviceTensor x, DeviceWeight w, DeviceTensor y, int n, FlopCategory category);

    /// <summary>
    /// y_i[n, W_i.Rows] = x[n, cols] · W_iᵀ for weights that share their input (a layer's Q, K and V; gate and up). A
    /// backend may run them as one dispatch (the CPU does for one token: one hand-off to its workers instead of three);
    /// each output is what <see cref="MatMul(DeviceTensor, DeviceWeight, DeviceTensor, int, FlopCategory)"/> computes (on the
    /// CPU bit for bit, so a token's projections do not depend on how they were dispatched).
    /// FLOPs: the sum of the single MatMuls. The default runs them one by one.
    /// </summary>
    void MatMul(DeviceTensor x, ReadOnlySpan<DeviceWeight> weights, ReadOnlySpan<DeviceTensor> outputs, int n, FlopCategory category)
    {
        if (weights.Length != outputs.Length) throw new ArgumentException($"{weights.Length} weights but {outputs.Length} outputs", nameof(outputs));
        for (int i = 0; i < weights.Length; i++) MatMul(x, weights[i], outputs[i], n, category);
    }

    /// <summary>y[i, :] += bias for n rows. FLOPs (elementwise): n * cols.</summary>
    void AddBias(DeviceTensor y, DeviceTensor bias, int n);

    /// <summary>
    /// Rotates heads of x [n, nHeads * headDim] in place (Hugging Face rotate-half convention) at each token's
    /// position in <paramref name="batch"/>. <paramref name="rope"/> is [maxPositions, headDim] holding cos in the
    /// first half and sin in the second of each row. FLOPs (elementwise): <see cref="OpFlops.Rope"/>.
    /// </summary>
    void Rope(DeviceTensor x, int nHeads, int headDim, DeviceTensor rope, BatchLayout batch);

    /// <summary>Writes the batch's new K and V rows ([n, kvDim] each) of <paramref name="layer"/> into their cache slots. FLOPs: 0.</summary>
    void StoreKv(KvStorage kv, int layer, DeviceTensor k, DeviceTensor v, BatchLayout batch);

    /// <summary>
    /// Causal grouped-query attention over the paged cache: for every new token of every sequence, its query heads
    /// attend to keys 0..position of that sequence only, read through the sequence's block table.
    /// q and output are [n, nHeads * headDim]. FLOPs: attention 4 * nHeads * headDim * K, elementwise
    /// <see cref="OpFlops.Softmax"/>, with K the batch's exact causal key count.
    /// </summary>
    void Attention(DeviceTensor q, KvStorage kv, int layer, int nHeads, BatchLayout batch, DeviceTensor output);

    /// <summary>gate[i] = silu(gate[i]) * up[i] for n rows, in place. FLOPs (elementwise): <see cref="OpFlops.SwiGlu"/>.</summary>
    void SwiGlu(DeviceTensor gate, DeviceTensor up, int n);

    /// <summary>
    /// x = max(x, 0) for n rows, in place (the ReLU between a process reward model's two head layers).
    /// FLOPs (elementwise): <see cref="OpFlops.Relu"/>.
    /// </summary>
    void Relu(DeviceTensor x, int n);

    /// <summary>x += y for n rows (residual). FLOPs (elementwise): n * cols.</summary>
    void Add(DeviceTensor x, DeviceTensor y, int n);

    /// <summary>y[j, :] = x[rows[j], :] (selects the positions whose outputs are needed). FLOPs: 0.</summary>
    void GatherRows(DeviceTensor x, ReadOnlySpan<int> rows, DeviceTensor y);
}

/// <summary>An f32 activation matrix [Rows, Cols] (row-major) owned by a backend. Rows is the capacity.</summary>
public abstract class DeviceTensor : IDisposable
{
    /// <summary>A tensor of <paramref name="rows"/> x <paramref name="cols"/> (the backend allocates the memory).</summary>
    protected DeviceTensor(int rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        Rows = rows; Cols = cols;
    }
    /// <summary>Rows the tensor holds (its capacity; an op may use fewer).</summary>
    public int Rows { get; }
    /// <summary>Values per row.</summary>
    public int Cols { get; }
    /// <summary>Rows x Cols.</summary>
    public long Length => (long)Rows * Cols;
    /// <summary>Frees the device memory.</summary>
    public abstract void Dispose();
}

/// <summary>A projection weight W [Rows = out, Cols = in] in a backend's layout.</summary>
public abstract class DeviceWeight : IDisposable
{
    /// <summary>A weight of <paramref name="rows"/> outputs by <paramref name="cols"/> inputs.</summary>
    protected DeviceWeight(int rows, int cols) { Rows = rows; Cols = cols; }
    /// <summary>Outputs (rows of W).</summary>
    public int Rows { get; }
    /// <summary>Inputs (columns of W).</summary>
    public int Cols { get; }
    /// <summary>Bytes the weight occupies on its device (after any packing or conversion).</summary>
    public abstract long Bytes { get; }
    /// <summary>Frees the device memory.</summary>
    public abstract void Dispose();
}
