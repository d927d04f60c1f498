using System.Runtime.ExceptionServices;

namespace Ponder.Backends.Cpu.Gemm;

/// <summary>A piece of work split into parts; part i of n runs on one thread.</summary>
internal interface IParallelPart
{
    void Execute(int part, int parts);
}

/// <summary>
/// Persistent worker threads for the GEMMs: a decode matmul takes tens of microseconds, so waking thread-pool workers
/// through Parallel.For (and allocating its closure) each call costs a visible share. Workers park on an event that
/// spins briefly before it blocks, so back-to-back calls find them awake. One call at a time owns the workers; a call that
/// finds them busy (another thread, or a nested call) runs all its parts inline, which stays correct.
/// </summary>
internal sealed class GemmWorkers
{
    /// <summary>Workers for every core but the caller's.</summary>
    public static GemmWorkers Shared { get; } = new(Environment.ProcessorCount - 1);

    // Spin count for the parking events (the maximum ManualResetEventSlim allows): roughly tens of microseconds.
    const int SpinCount = 2047;

    readonly ManualResetEventSlim[] _wake;
    readonly ManualResetEventSlim _done = new(false, SpinCount);
    IParallelPart? _job;
    int _parts;
    int _pending;
    int _busy;
    ExceptionDispatchInfo? _error;

    GemmWorkers(int workers)
    {
        _wake = new ManualResetEventSlim[Math.Max(0, workers)];
        for (int w = 0; w < _wake.Length; w++)
        {
            _wake[w] = new ManualResetEventSlim(false, SpinCount);
            int index = w;
            new Thread(() => WorkerLoop(index)) { IsBackground = true, Name = $"Ponder GEMM worker {w + 1}" }.Start();
        }
    }

    /// <summary>The most parts that run at once: the workers plus the calling thread.</summary>
    public int MaxParts => _wake.Length + 1;

    /// <summary>Runs <paramref name="parts"/> parts of <paramref name="job"/> and returns when all are done.</summary>
    public void Run(IParallelPart job, int parts)
    {
        if (parts <= 1 || parts > MaxParts || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            for (int i = 0; i < parts; i++) job.Execute(i, parts);
            return;
        }
        try
        {
            _job = job;
            _parts = parts;
            _error = null;
            _done.Reset();
            Volatile.Write(ref _pending, parts - 1);
            for (int w = 0; w < parts - 1; w++) _wake[w].Set();
            try { job.Execute(0, parts); }
            finally { _done.Wait(); }
            _error?.Throw();
        }
        finally
        {
            _job = null;
            Volatile.Write(ref _busy, 0);
        }
    }

    void WorkerLoop(int w)
    {
        while (true)
        {
            _wake[w].Wait();
            _wake[w].Reset();
            try { _job!.Execute(w + 1, _parts); }
            catch (Exception e) { _error = ExceptionDispatchInfo.Capture(e); }
            if (Interlocked.Decrement(ref _pending) == 0) _done.Set();
        }
    }
}
