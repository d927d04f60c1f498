#!/usr/bin/env bash
# Ponder build entry point.
#   ./build.sh          restore and build everything (Release)
#   ./build.sh test     build and run the whole test suite
#   ./build.sh demo     run the main demo
#   ./build.sh bench [filter]  run the BenchmarkDotNet suites
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
    dotnet src/Ponder.Cli/bin/Release/net10.0/ponder.dll demo "$@"
    ;;
  bench)
    dotnet run -c Release --project bench/Ponder.Bench -- "$@"
    ;;
  *) echo "usage: ./build.sh [build|test|demo|bench]" >&2; exit 2 ;;
esac
