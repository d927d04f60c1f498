#!/usr/bin/env bash
# Coverage-guided fuzzing of Ponder's loaders and request parser: SharpFuzz instruments the engine's assemblies,
# AFL++ drives one harness of bench/Ponder.Fuzz in persistent mode.
#
#   bench/fuzz.sh <harness> [seconds | -runs=N]     harness: gguf safetensors config tokenizer tokenizer-gguf tokenizer-model template request
#   bench/fuzz.sh replay <harness> <file|dir>...    runs inputs through the (uninstrumented) harness, names each outcome
#
# Needs AFL++ (Debian: apt-get install afl++) and the SharpFuzz.CommandLine tool (.config/dotnet-tools.json;
# `dotnet tool restore` installs it). Default: 60 seconds. Output in out/fuzz/<harness>/: the seeds (in/), AFL's
# queue, crashes/ and hangs/ (findings/default/), and a summary line from fuzzer_stats. Every crash or hang is
# replayed and printed; a crash is an exception other than the parser's named domain error (see FuzzTargets).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
harnesses="gguf safetensors config tokenizer tokenizer-gguf tokenizer-model template request"
usage() { echo "usage: bench/fuzz.sh <$(echo $harnesses | tr ' ' '|')> [seconds|-runs=N] | replay <harness> <file|dir>..." >&2; exit 2; }
[ $# -ge 1 ] || usage

plain="$root/bench/Ponder.Fuzz/bin/Release/net10.0/Ponder.Fuzz.dll"
if [ "$1" = replay ]; then
  shift
  dotnet build bench/Ponder.Fuzz -c Release -v q -nologo >/dev/null
  exec dotnet "$plain" replay "$@"
fi

harness="$1"; limit="${2:-60}"
case " $harnesses " in *" $harness "*) ;; *) usage ;; esac
case "$limit" in
  -runs=*) stop=(-E "${limit#-runs=}") ;;
  *[!0-9]*|"") usage ;;
  *) stop=(-V "$limit") ;;
esac
command -v afl-fuzz >/dev/null || { echo "afl-fuzz not found: apt-get install afl++" >&2; exit 1; }

# An instrumented copy of the harness, apart from the normal build (instrumentation rewrites the assemblies in place).
bin="$root/out/fuzz/bin"
stamp="$bin/.instrumented"
if [ ! -f "$stamp" ] || [ -n "$(find src/Ponder src/Ponder.Server bench/Ponder.Fuzz -name '*.cs' -newer "$stamp" -print -quit)" ]; then
  dotnet tool restore >/dev/null
  rm -rf "$bin"
  dotnet publish bench/Ponder.Fuzz -c Release -o "$bin" -v q -nologo >/dev/null
  # Only the engine and the server: the framework and the harness itself stay uninstrumented.
  for dll in Ponder.dll Ponder.Server.dll; do dotnet tool run sharpfuzz "$bin/$dll" >/dev/null; done
  touch "$stamp"
fi

work="$root/out/fuzz/$harness"
mkdir -p "$work"
# Seeds come from the plain build: instrumented code runs only under AFL (it writes to AFL's shared coverage map).
dotnet build bench/Ponder.Fuzz -c Release -v q -nologo >/dev/null
[ -n "$(ls -A "$work/in" 2>/dev/null)" ] || dotnet "$plain" seeds "$harness" "$work/in"

# AFL++ sees `dotnet` as the target: it has no AFL instrumentation of its own (SharpFuzz reports the coverage).
export AFL_SKIP_BIN_CHECK=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
export DOTNET_TieredPGO=0
# Resume an earlier run's queue when there is one.
input="$work/in"; ls "$work/findings/default/queue" 2>/dev/null | grep -q "^id" && input=-
start=$(date +%s)
afl-fuzz -i "$input" -o "$work/findings" -t 10000 -m none "${stop[@]}" -- dotnet "$bin/Ponder.Fuzz.dll" "$harness" > "$work/afl.log" 2>&1 || { tail -30 "$work/afl.log"; exit 1; }
stats="$work/findings/default/fuzzer_stats"
get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
echo "$harness: $(get execs_done) inputs in $(( $(date +%s) - start )) s ($(get execs_per_sec) /s), edges $(get edges_found) of $(get total_edges), corpus $(get corpus_count), crashes $(get saved_crashes), hangs $(get saved_hangs)" | tee -a "$work/summary.txt"
for kind in crashes hangs; do
  dir="$work/findings/default/$kind"
  if [ -n "$(ls -A "$dir" 2>/dev/null | grep -v README)" ]; then
    echo "== $kind (replayed):"
    for f in "$dir"/id*; do timeout 60 dotnet "$plain" replay "$harness" "$f" || true; done
  fi
done
