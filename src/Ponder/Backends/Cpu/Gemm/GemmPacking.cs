using System.Runtime.CompilerServices;

namespace Ponder.Backends.Cpu.Gemm;

/// <summary>
/// Copies blocks of op(A) and op(B) into the layouts the micro-kernels stream through; the copy absorbs transposes and
/// leading dimensions, so the kernels see unit-stride panels only.
/// <code>
/// A block (mc x kc) -> ceil(mc/MR) micro-panels, each kc x MR:   [p][r]  offset = panel*kc*MR + p*MR + r
/// B block (kc x nc) -> ceil(nc/NR) micro-panels, each kc x NR:   [p][j]  offset = panel*stride + p*NR + j
/// </code>
/// B padding columns are zero-filled; A padding rows are left as they are (the kernels never read them).
/// </summary>
internal static unsafe class GemmPacking
{
    /// <summary>Packs op(A)[i0 .. i0+mc, p0 .. p0+kc] where op(A)[i, p] = trans ? a[p*lda + i] : a[i*lda + p].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackA(float* a, nint lda, bool trans, int i0, int mc, int p0, int kc, int mr, float* dst)
    {
        if (trans)
        {
            // Row p of the stored A holds the block's mc values contiguously: read it once, deal it out to the panels
            // (panel by panel would revisit each row mc/MR times, at a stride of lda).
            float* src = a + p0 * lda + i0;
            for (int p = 0; p < kc; p++, src += lda)
            {
                float* d = dst + p * mr;
                for (int ir = 0; ir < mc; ir += mr, d += (nint)kc * mr)
                {
                    int rows = Math.Min(mr, mc - ir);
                    for (int r = 0; r < rows; r++) d[r] = src[ir + r];
                }
            }
            return;
        }
        // Depth outer, rows inner: the panel is written sequentially while the MR source rows are read as MR
        // sequential streams (row by row wrote every value MR floats past the last, a store per cache line touched).
        for (int ir = 0; ir < mc; ir += mr, dst += (nint)kc * mr)
        {
            int rows = Math.Min(mr, mc - ir);
            float* src = a + (i0 + ir) * lda + p0;
            float* d = dst;
            for (int p = 0; p < kc; p++, d += mr)
                for (int r = 0; r < rows; r++) d[r] = src[r * lda + p];
        }
    }

    /// <summary>
    /// Packs op(B)[p0 .. p0+kc, j0 .. j0+nc] where op(B)[p, j] = trans ? b[j*ldb + p] : b[p*ldb + j];
    /// micro-panels are <paramref name="panelStride"/> floats apart (kc*NR for a block, k*NR for a whole pre-packed weight).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackB(float* b, nint ldb, bool trans, int p0, int kc, int j0, int nc, int nr, float* dst, nint panelStride)
    {
        for (int jr = 0; jr < nc; jr += nr, dst += panelStride)
        {
            int cols = Math.Min(nr, nc - jr);
            if (trans)
            {
                // Columns of op(B) are rows of the stored B; chunks of depth keep the strided writes inside L1.
                const int chunk = 64;
                for (int pb = 0; pb < kc; pb += chunk)
                {
                    int depth = Math.Min(chunk, kc - pb);
                    for (int j = 0; j < cols; j++)
                    {
                        float* src = b + (j0 + jr + j) * ldb + p0 + pb;
                        float* d = dst + pb * nr + j;
                        for (int p = 0; p < depth; p++, d += nr) *d = src[p];
                    }
                }
            }
            else
            {
                float* src = b + p0 * ldb + j0 + jr;
                for (int p = 0; p < kc; p++, src += ldb)
                    new ReadOnlySpan<float>(src, cols).CopyTo(new Span<float>(dst + p * nr, cols));
            }
            if (cols < nr)
                for (int p = 0; p < kc; p++) new Span<float>(dst + p * nr + cols, nr - cols).Clear();
        }
    }
}
