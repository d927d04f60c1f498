return await Ponder.Cli.PonderCli.RunAsync(args);
