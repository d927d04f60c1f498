using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Ponder.Backends.Cpu.Gemm;

/// <summary>
/// Which register-blocked micro-kernel a GEMM uses. The packed layouts depend on it (MR, NR), so a weight packed for one
/// ISA must be multiplied by the same ISA.
/// </summary>
internal enum GemmIsa
{
    /// <summary>Plain loops, MR = 4, NR = 16: runs anywhere.</summary>
    Scalar,
    /// <summary>AVX2 + FMA, 6 x 16 tile: 12 ymm accumulators + 2 B vectors + 1 broadcast = 15 of 16 registers.</summary>
    Vector256,
    /// <summary>AVX-512, 12 x 32 tile: 24 zmm accumulators + 2 B vectors + 1 broadcast = 27 of 32 registers.</summary>
    Vector512,
}

/// <summary>Tile sizes of a micro-kernel and the cache blocking that feeds it.</summary>
internal readonly record struct GemmShape(GemmIsa Isa, int MR, int NR, int KC, int MC, int NC)
{
    /// <summary>The widest kernel this machine accelerates.</summary>
    public static GemmShape Best { get; } = For(
        System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? GemmIsa.Vector512
        : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? GemmIsa.Vector256
        : GemmIsa.Scalar);

    // KC (k values per block, a target: blocks are balanced, see GemmDriver.BalancedDepth). Textbook sizing keeps the
    //    KC x NR B micro-panel in L1, but on the 2-core Zen 3 (AVX2) build machine, one thread, CPU time, KC = 640
    //    (B micro-panel 640 * 16 * 4 B = 40 KiB, served from L2) beat 320 (20 KiB, in L1) by 3-10%: L2 keeps up with
    //    6 x 16 tiles, and fewer depth blocks mean fewer passes over C (which hurts most for a 49152-wide C).
    //    AVX-512: 256 * 32 * 4 B = 32 KiB + 12 KiB of a 48 KiB L1 (not measured: no AVX-512 machine at hand).
    // MC (rows of A per block): the MC x KC packed A block stays in L2 (120 * 640 * 4 B = 300 KiB of 512 KiB; 240 KiB).
    // NC (columns of B per block): the KC x NC packed B block stays in L3 (640 * 2048 * 4 B = 5 MiB per thread of 32 MiB).
    // MC 60..240 and NC 1024..2048 made no difference beyond noise.
    public static GemmShape For(GemmIsa isa) => isa switch
    {
        GemmIsa.Vector512 => new(isa, MR: 12, NR: 32, KC: 256, MC: 240, NC: 2048),
        GemmIsa.Vector256 => new(isa, MR: 6, NR: 16, KC: 640, MC: 120, NC: 2048),
        _ => new(isa, MR: 4, NR: 16, KC: 256, MC: 64, NC: 1024),
    };
}

/// <summary>Compile-time row count of a micro-kernel call; the JIT specializes each struct, so untaken rows vanish.</summary>
internal interface IRows { static abstract int Count { get; } }
internal struct R1 : IRows { public static int Count => 1; }
internal struct R2 : IRows { public static int Count => 2; }
internal struct R3 : IRows { public static int Count => 3; }
internal struct R4 : IRows { public static int Count => 4; }
internal struct R5 : IRows { public static int Count => 5; }
internal struct R6 : IRows { public static int Count => 6; }
internal struct R7 : IRows { public static int Count => 7; }
internal struct R8 : IRows { public static int Count => 8; }
internal struct R9 : IRows { public static int Count => 9; }
internal struct R10 : IRows { public static int Count => 10; }
internal struct R11 : IRows { public static int Count => 11; }
internal struct R12 : IRows { public static int Count => 12; }

/// <summary>
/// Micro-kernels: C[rows, cols] = alpha * Apanel · Bpanel + beta * C (beta == 0 never reads C, so NaN in C is dropped as BLAS does).
/// Apanel is kc x MR with MR consecutive values per k step; Bpanel is kc x NR with NR consecutive values per k step.
/// rows &lt;= MR and cols &lt;= NR; padding rows of A are never read, padding columns of B are computed and not stored.
/// </summary>
internal static unsafe class GemmKernels
{
    /// <summary>
    /// Runs the kernel of <paramref name="isa"/> on one tile. <paramref name="tile"/> is MR x NR floats of scratch: the
    /// kernels spill their accumulators there once and <see cref="Update"/> merges them into C, because a call while the
    /// accumulators are live makes the JIT store them to the stack on every k step (all vector registers are volatile).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Tile(GemmIsa isa, int rows, int cols, int kc, float* pa, float* pb, float* tile, float* c, nint ldc, float alpha, float beta)
    {
        // A tile that spans all NR columns with alpha = 1 and beta 0 or 1 goes straight from the accumulators to C:
        // C = acc or C = acc + C, the same roundings as Update's alpha * tile + beta * C (the products by 1 are exact),
        // without the spill to the tile buffer and a second pass over it.
        if (isa == GemmIsa.Vector512 && cols == 32 && alpha == 1f && (beta == 0f || beta == 1f))
        {
            Tile512(rows, kc, pa, pb, c, ldc, beta == 0f ? TileOut.StoreC : TileOut.AddC);
            return;
        }
        int nr;
        switch (isa)
        {
            case GemmIsa.Vector512: Tile512(rows, kc, pa, pb, tile, 32, TileOut.Spill); nr = 32; break;
            case GemmIsa.Vector256: Tile256(rows, kc, pa, pb, tile); nr = 16; break;
            default: TileScalar(rows, kc, pa, pb, tile); nr = 16; break;
        }
        Update(c, ldc, tile, nr, rows, cols, alpha, beta);
    }

    /// <summary>Where a 512-bit kernel puts its accumulators: the tile buffer, or C directly (stored, or added to C).</summary>
    enum TileOut { Spill, StoreC, AddC }

    static void Tile512(int rows, int kc, float* pa, float* pb, float* t, nint ldt, TileOut mode)
    {
        switch (rows)
        {
            case 1: Kernel512<R1>(kc, pa, pb, t, ldt, mode); break;
            case 2: Kernel512<R2>(kc, pa, pb, t, ldt, mode); break;
            case 3: Kernel512<R3>(kc, pa, pb, t, ldt, mode); break;
            case 4: Kernel512<R4>(kc, pa, pb, t, ldt, mode); break;
            case 5: Kernel512<R5>(kc, pa, pb, t, ldt, mode); break;
            case 6: Kernel512<R6>(kc, pa, pb, t, ldt, mode); break;
            case 7: Kernel512<R7>(kc, pa, pb, t, ldt, mode); break;
            case 8: Kernel512<R8>(kc, pa, pb, t, ldt, mode); break;
            case 9: Kernel512<R9>(kc, pa, pb, t, ldt, mode); break;
            case 10: Kernel512<R10>(kc, pa, pb, t, ldt, mode); break;
            case 11: Kernel512<R11>(kc, pa, pb, t, ldt, mode); break;
            default: Kernel512<R12>(kc, pa, pb, t, ldt, mode); break;
        }
    }

    /// <summary>One row of a 512-bit tile (two vectors) to <paramref name="dst"/>: stored, or added to what is there (<see cref="TileOut.AddC"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Out512(Vector512<float> lo, Vector512<float> hi, float* dst, TileOut mode)
    {
        if (mode == TileOut.AddC) { lo += Vector512.Load(dst); hi += Vector512.Load(dst + 16); }
        lo.Store(dst); hi.Store(dst + 16);
    }

    static void Tile256(int rows, int kc, float* pa, float* pb, float* t)
    {
        switch (rows)
        {
            case 1: Kernel256<R1>(kc, pa, pb, t); break;
            case 2: Kernel256<R2>(kc, pa, pb, t); break;
            case 3: Kernel256<R3>(kc, pa, pb, t); break;
            case 4: Kernel256<R4>(kc, pa, pb, t); break;
            case 5: Kernel256<R5>(kc, pa, pb, t); break;
            default: Kernel256<R6>(kc, pa, pb, t); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel512<TR>(int kc, float* pa, float* pb, float* t, nint ldt, TileOut mode) where TR : struct, IRows
    {
        const int mr = 12, nr = 32;
        // t: the tile buffer (row stride NR) or C (row stride ldc); mode says which and whether C is added to.
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default, c80 = default, c81 = default;
        Vector512<float> c90 = default, c91 = default, cA0 = default, cA1 = default, cB0 = default, cB1 = default;
        for (int p = 0; p < kc; p++, pa += mr, pb += nr)
        {
            var b0 = Vector512.Load(pb);
            var b1 = Vector512.Load(pb + 16);
            Vector512<float> a = Vector512.Create(pa[0]);
            c00 = Vector512.FusedMultiplyAdd(a, b0, c00); c01 = Vector512.FusedMultiplyAdd(a, b1, c01);
            if (TR.Count > 1) { a = Vector512.Create(pa[1]); c10 = Vector512.FusedMultiplyAdd(a, b0, c10); c11 = Vector512.FusedMultiplyAdd(a, b1, c11); }
            if (TR.Count > 2) { a = Vector512.Create(pa[2]); c20 = Vector512.FusedMultiplyAdd(a, b0, c20); c21 = Vector512.FusedMultiplyAdd(a, b1, c21); }
            if (TR.Count > 3) { a = Vector512.Create(pa[3]); c30 = Vector512.FusedMultiplyAdd(a, b0, c30); c31 = Vector512.FusedMultiplyAdd(a, b1, c31); }
            if (TR.Count > 4) { a = Vector512.Create(pa[4]); c40 = Vector512.FusedMultiplyAdd(a, b0, c40); c41 = Vector512.FusedMultiplyAdd(a, b1, c41); }
            if (TR.Count > 5) { a = Vector512.Create(pa[5]); c50 = Vector512.FusedMultiplyAdd(a, b0, c50); c51 = Vector512.FusedMultiplyAdd(a, b1, c51); }
            if (TR.Count > 6) { a = Vector512.Create(pa[6]); c60 = Vector512.FusedMultiplyAdd(a, b0, c60); c61 = Vector512.FusedMultiplyAdd(a, b1, c61); }
            if (TR.Count > 7) { a = Vector512.Create(pa[7]); c70 = Vector512.FusedMultiplyAdd(a, b0, c70); c71 = Vector512.FusedMultiplyAdd(a, b1, c71); }
            if (TR.Count > 8) { a = Vector512.Create(pa[8]); c80 = Vector512.FusedMultiplyAdd(a, b0, c80); c81 = Vector512.FusedMultiplyAdd(a, b1, c81); }
            if (TR.Count > 9) { a = Vector512.Create(pa[9]); c90 = Vector512.FusedMultiplyAdd(a, b0, c90); c91 = Vector512.FusedMultiplyAdd(a, b1, c91); }
            if (TR.Count > 10) { a = Vector512.Create(pa[10]); cA0 = Vector512.FusedMultiplyAdd(a, b0, cA0); cA1 = Vector512.FusedMultiplyAdd(a, b1, cA1); }
            if (TR.Count > 11) { a = Vector512.Create(pa[11]); cB0 = Vector512.FusedMultiplyAdd(a, b0, cB0); cB1 = Vector512.FusedMultiplyAdd(a, b1, cB1); }
        }
        Out512(c00, c01, t, mode);
        if (TR.Count > 1) Out512(c10, c11, t + 1 * ldt, mode);
        if (TR.Count > 2) Out512(c20, c21, t + 2 * ldt, mode);
        if (TR.Count > 3) Out512(c30, c31, t + 3 * ldt, mode);
        if (TR.Count > 4) Out512(c40, c41, t + 4 * ldt, mode);
        if (TR.Count > 5) Out512(c50, c51, t + 5 * ldt, mode);
        if (TR.Count > 6) Out512(c60, c61, t + 6 * ldt, mode);
        if (TR.Count > 7) Out512(c70, c71, t + 7 * ldt, mode);
        if (TR.Count > 8) Out512(c80, c81, t + 8 * ldt, mode);
        if (TR.Count > 9) Out512(c90, c91, t + 9 * ldt, mode);
        if (TR.Count > 10) Out512(cA0, cA1, t + 10 * ldt, mode);
        if (TR.Count > 11) Out512(cB0, cB1, t + 11 * ldt, mode);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel256<TR>(int kc, float* pa, float* pb, float* t) where TR : struct, IRows
    {
        const int mr = 6, nr = 16;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++, pa += mr, pb += nr)
        {
            var b0 = Vector256.Load(pb);
            var b1 = Vector256.Load(pb + 8);
            Vector256<float> a = Vector256.Create(pa[0]);
            c00 = Vector256.FusedMultiplyAdd(a, b0, c00); c01 = Vector256.FusedMultiplyAdd(a, b1, c01);
            if (TR.Count > 1) { a = Vector256.Create(pa[1]); c10 = Vector256.FusedMultiplyAdd(a, b0, c10); c11 = Vector256.FusedMultiplyAdd(a, b1, c11); }
            if (TR.Count > 2) { a = Vector256.Create(pa[2]); c20 = Vector256.FusedMultiplyAdd(a, b0, c20); c21 = Vector256.FusedMultiplyAdd(a, b1, c21); }
            if (TR.Count > 3) { a = Vector256.Create(pa[3]); c30 = Vector256.FusedMultiplyAdd(a, b0, c30); c31 = Vector256.FusedMultiplyAdd(a, b1, c31); }
            if (TR.Count > 4) { a = Vector256.Create(pa[4]); c40 = Vector256.FusedMultiplyAdd(a, b0, c40); c41 = Vector256.FusedMultiplyAdd(a, b1, c41); }
            if (TR.Count > 5) { a = Vector256.Create(pa[5]); c50 = Vector256.FusedMultiplyAdd(a, b0, c50); c51 = Vector256.FusedMultiplyAdd(a, b1, c51); }
        }
        { c00.Store(t + 0 * nr); c01.Store(t + 0 * nr + 8); }
        if (TR.Count > 1) { c10.Store(t + 1 * nr); c11.Store(t + 1 * nr + 8); }
        if (TR.Count > 2) { c20.Store(t + 2 * nr); c21.Store(t + 2 * nr + 8); }
        if (TR.Count > 3) { c30.Store(t + 3 * nr); c31.Store(t + 3 * nr + 8); }
        if (TR.Count > 4) { c40.Store(t + 4 * nr); c41.Store(t + 4 * nr + 8); }
        if (TR.Count > 5) { c50.Store(t + 5 * nr); c51.Store(t + 5 * nr + 8); }
    }

    /// <summary>Portable tile: MR = 4, NR = 16, accumulating in the tile buffer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void TileScalar(int rows, int kc, float* pa, float* pb, float* t)
    {
        const int mr = 4, nr = 16;
        new Span<float>(t, mr * nr).Clear();
        for (int p = 0; p < kc; p++, pa += mr, pb += nr)
            for (int r = 0; r < rows; r++)
            {
                float a = pa[r];
                float* row = t + r * nr;
                for (int j = 0; j < nr; j++) row[j] += a * pb[j];
            }
    }

    /// <summary>C[rows, cols] = alpha * tile + beta * C; beta == 0 does not read C.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Update(float* c, nint ldc, float* tile, int nr, int rows, int cols, float alpha, float beta)
    {
        var va = Vector256.Create(alpha);
        var vb = Vector256.Create(beta);
        for (int r = 0; r < rows; r++, c += ldc, tile += nr)
        {
            int j = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                if (beta == 0)
                    for (; j + 8 <= cols; j += 8) (va * Vector256.Load(tile + j)).Store(c + j);
                else
                    for (; j + 8 <= cols; j += 8) Vector256.FusedMultiplyAdd(va, Vector256.Load(tile + j), vb * Vector256.Load(c + j)).Store(c + j);
            }
            if (beta == 0) for (; j < cols; j++) c[j] = alpha * tile[j];
            else for (; j < cols; j++) c[j] = alpha * tile[j] + beta * c[j];
        }
    }
}
