using Microsoft.Extensions.Logging;
using Ponder.Kernels.Ilgpu;

namespace Ponder.Kernels.Tests;

/// <summary>Asking for CUDA where there is none is never silent: a warning and a flag, or an error when CUDA is required.</summary>
public sealed class CudaSelectionTests
{
    [NoCudaFact]
    public void RequiringCudaWithoutADeviceThrowsAClearError()
    {
        var e = Assert.Throws<InvalidOperationException>(() => IlgpuBackend.Create(requireCuda: true));
        Assert.Contains("requireCuda", e.Message);
        Assert.Contains("no CUDA device", e.Message);
    }

    [NoCudaFact]
    public void PreferringCudaWithoutADeviceLogsTheFallbackAndSaysSo()
    {
        var log = new ListLogger();
        using var backend = IlgpuBackend.Create(preferCuda: true, logger: log);
        Assert.Equal("ilgpu-cpu", backend.Name);
        Assert.NotNull(backend.CudaFallback);
        Assert.Contains("CPU fallback", backend.Device);
        var warning = Assert.Single(log.Lines, l => l.Level == LogLevel.Warning);
        Assert.Contains("no CUDA device", warning.Text);
    }

    [Fact]
    public void AskingForTheCpuAcceleratorIsNoFallback()
    {
        var log = new ListLogger();
        using var backend = IlgpuBackend.Create(preferCuda: false, logger: log);
        Assert.Null(backend.CudaFallback);
        Assert.DoesNotContain(log.Lines, l => l.Level >= LogLevel.Warning);
    }

    sealed class ListLogger : ILogger
    {
        public List<(LogLevel Level, string Text)> Lines { get; } = [];
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Lines.Add((logLevel, formatter(state, exception)));
    }
}
