using Ponder.Fuzz;
using SharpFuzz;

// Ponder.Fuzz <harness>                      AFL++ persistent mode (run by bench/fuzz.sh on an instrumented build)
// Ponder.Fuzz seeds <harness> <dir>          writes a small valid seed corpus
// Ponder.Fuzz replay <harness> <file|dir>... runs inputs without a fuzzer: prints each outcome, exit 1 on a finding
if (args.Length == 0)
{
    Console.Error.WriteLine($"usage: Ponder.Fuzz <{string.Join("|", FuzzTargets.Names)}> | seeds <harness> <dir> | replay <harness> <file|dir>...");
    return 2;
}
string work = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), $"ponder-fuzz-{Environment.ProcessId}");
try
{
    switch (args[0])
    {
        case "seeds":
            FuzzTargets.WriteSeeds(args[1], args[2], FindRoot());
            return 0;
        case "replay":
        {
            int findings = 0;
            // AFL puts a README.txt beside its crashes: a folder means its inputs (id:...) only.
            var files = args.Skip(2).SelectMany(a => Directory.Exists(a) ? (IEnumerable<string>)Directory.GetFiles(a).Where(f => !f.EndsWith("README.txt", StringComparison.Ordinal)).Order() : [a]);
            foreach (string file in files)
            {
                try
                {
                    var refused = FuzzTargets.Run(args[1], File.ReadAllBytes(file), work);
                    Console.WriteLine($"{file}: {(refused is null ? "accepted" : $"refused: {refused.GetType().Name}: {refused.Message}")}");
                }
                catch (FuzzFindingException f)
                {
                    findings++;
                    Console.WriteLine($"{file}: FINDING {f.InnerException}");
                }
            }
            return findings == 0 ? 0 : 1;
        }
        default:
        {
            string harness = args[0];
            // Persistent mode: one process runs input after input; anything but the domain error escapes and AFL records a crash.
            Fuzzer.Run(stream =>
            {
                using var buffer = new MemoryStream();
                stream.CopyTo(buffer);
                FuzzTargets.Run(harness, buffer.ToArray(), work);
            });
            return 0;
        }
    }
}
finally
{
    if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
}

static string FindRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) return dir.FullName;
    throw new DirectoryNotFoundException("cannot find the repository root (Engine.sln) above " + AppContext.BaseDirectory);
}
