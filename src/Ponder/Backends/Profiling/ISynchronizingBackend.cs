namespace Ponder.Backends.Profiling;

/// <summary>
/// A backend whose ops return before their work is done (GPU streams). <see cref="ProfilingBackend"/> calls
/// <see cref="Synchronize"/> after each op so the stopwatch measures the op, not its launch.
/// </summary>
public interface ISynchronizingBackend
{
    /// <summary>Blocks until every op issued so far has finished.</summary>
    void Synchronize();
}
