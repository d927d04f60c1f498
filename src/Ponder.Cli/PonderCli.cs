using System.CommandLine;
using Ponder.Cli.Commands;

namespace Ponder.Cli;

/// <summary>The <c>ponder</c> command: one subcommand per job.</summary>
public static class PonderCli
{
    public static Task<int> RunAsync(string[] args)
    {
        var root = new RootCommand("Ponder: an inference engine for test-time compute")
        {
            GenerateCommand.Create(),
            InfoCommand.Create(),
            PerplexityCommand.Create(),
            DemoCommand.Create(),
            ProfileCommand.Create(),
            TrainCommand.Create(),
            SweepCommand.Create(),
            ServeCommand.Create(),
            ClusterCommands.SiloCommand(),
        };
        return root.Parse(args).InvokeAsync();
    }
}
