#!/usr/bin/env bash
# Ponder build entry point.
#   ./build.sh          restore and build everything (Release)
#   ./build.sh test     build and run the whole test suite
#   ./build.sh demo     run the main demo
#   ./build.sh bench [args]    run the BenchmarkDotNet suites (e.g. --filter '*Gemm*')
#   ./build.sh ponder ARGS     run the ponder CLI (e.g. ./build.sh ponder info -m weights/policy-small)
#   ./build.sh pack [DIR] [ARGS]  pack the Ponder, Ponder.Kernels and Ponder.Extensions.DependencyInjection NuGet packages
#                                 (with .snupkg symbols) into DIR (default artifacts/packages); e.g. ARGS -p:Version=1.2.3
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
cmd="${1:-build}"
shift || true
build() { dotnet build Engine.sln -c Release -nologo -v minimal "$@"; }
case "$cmd" in
  build) build ;;
  test)
    build
    dotnet test Engine.sln -c Release --no-build -nologo -v minimal --logger "console;verbosity=minimal" "$@"
    ;;
  demo)
    build
    dotnet src/Ponder.Cli/bin/Release/net10.0/Ponder.Cli.dll demo "$@"
    ;;
  ponder)
    [ -f src/Ponder.Cli/bin/Release/net10.0/Ponder.Cli.dll ] || build >&2
    dotnet src/Ponder.Cli/bin/Release/net10.0/Ponder.Cli.dll "$@"
    ;;
  pack)
    out="${1:-artifacts/packages}"
    shift || true
    for p in src/Ponder/Ponder.csproj kernels/Ponder.Kernels/Ponder.Kernels.csproj src/Ponder.Extensions.DependencyInjection/Ponder.Extensions.DependencyInjection.csproj; do
      dotnet pack "$p" -c Release -nologo -v minimal -o "$out" -p:EnableSourceLink=true "$@"
    done
    ls -1 "$out"/*.nupkg "$out"/*.snupkg
    ;;
  bench)
    dotnet run -c Release --project bench/Ponder.Bench -- "$@"
    ;;
  *) echo "usage: ./build.sh [build|test|demo|bench|pack [DIR]|ponder ARGS]" >&2; exit 2 ;;
esac
