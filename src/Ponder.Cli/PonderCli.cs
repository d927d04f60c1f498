namespace Ponder.Cli;

/// <summary>The <c>ponder</c> command: one subcommand per job.</summary>
public static class PonderCli
{
    public static Task<int> RunAsync(string[] args)
    {
        Console.Error.WriteLine("ponder: no commands yet");
        return Task.FromResult(1);
    }
}
