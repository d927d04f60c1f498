#!/usr/bin/env bash
# GPU check for the ILGPU backend, for an NVIDIA machine. One call, under 10 minutes:
#   1. build (Release);
#   2. kernel tests against CUDA (CudaKernelTests: every op, cuBLAS and our own GEMM, the forward vs the CPU backend);
#   3. benches through `ponder profile` on random:smollm2-135m: prefill GEMM throughput, single-sequence decode
#      (tok/s, GB/s), batched decode (batch 8 and 32), each against the device's ceilings measured by nvidia-smi
#      (clocks) and a device-to-device copy (bandwidth);
#   4. a summary table, last.
# Usage: bench/gpu-check.sh [output-dir]   (default: bench/out/gpu-check-<date>)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/out/gpu-check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
SECONDS=0
log() { echo "[gpu-check ${SECONDS}s] $*" | tee -a "$OUT/log.txt"; }

command -v nvidia-smi >/dev/null || { echo "gpu-check: nvidia-smi not found: this script needs an NVIDIA GPU" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
GPU_NAME=$(head -1 "$OUT/gpu.txt" | cut -d, -f1 | xargs)

log "build"
timeout 240 dotnet build Engine.sln -c Release -v minimal 2>&1 | tail -3 | tee -a "$OUT/log.txt"

log "kernel tests on CUDA"
set +e
timeout 180 dotnet test tests/Ponder.Kernels.Tests/Ponder.Kernels.Tests.csproj -c Release --no-build \
  --filter "FullyQualifiedName~CudaKernelTests" --logger "trx;LogFileName=cuda.trx" --results-directory "$OUT" \
  >"$OUT/cuda-tests.txt" 2>&1
TEST_RC=$?
set -e
TEST_LINE=$(grep -E "Passed!|Failed!" "$OUT/cuda-tests.txt" | tail -1 || echo "no result line (rc $TEST_RC)")
SKIPPED=$(grep -c "\[SKIP\]" "$OUT/cuda-tests.txt" || true)
log "tests: $TEST_LINE (skipped $SKIPPED: a skip here means CUDA was not found)"

# The CLI project is named `ponder`; run its dll through dotnet.
PONDER="dotnet src/Ponder.Cli/bin/Release/net10.0/ponder.dll"

# Ceilings. Compute: FP32 peak = SMs x 128 FP32 lanes x 2 x max SM clock (Ampere/Hopper: 128 FP32 cores per SM).
SMS=$(nvidia-smi --query-gpu=multiprocessor_count --format=csv,noheader 2>/dev/null | head -1 | xargs || true)
CLOCK=$(nvidia-smi --query-gpu=clocks.max.sm --format=csv,noheader,nounits | head -1 | xargs)
if [[ -z "${SMS:-}" || "$SMS" == *"N/A"* || "$SMS" == *"Field"* ]]; then SMS=132; fi   # H100/H200 SXM
PEAK_GFLOPS=$(awk -v s="$SMS" -v c="$CLOCK" 'BEGIN { printf "%.0f", s * 128 * 2 * c / 1000 }')
# Bandwidth: the largest achieved GB/s of a device copy op in a profile is a lower bound; use the HBM spec
# from the name when known, else 2000 GB/s, and report achieved vs it.
case "$GPU_NAME" in
  *H200*) PEAK_GBPS=4800 ;; *H100*) PEAK_GBPS=3350 ;; *A100*) PEAK_GBPS=2039 ;; *L40*) PEAK_GBPS=864 ;; *) PEAK_GBPS=2000 ;;
esac
log "roofline: ${PEAK_GFLOPS} GFLOP/s FP32 (${SMS} SMs x ${CLOCK} MHz), ${PEAK_GBPS} GB/s"

run_profile() { # name, then ponder profile arguments
  local name=$1; shift
  log "profile $name: $*"
  timeout 150 $PONDER profile --model random:smollm2-135m --backend ilgpu --peak-gflops "$PEAK_GFLOPS" --peak-gbps "$PEAK_GBPS" \
    --trace "$OUT/$name.trace.json" "$@" >"$OUT/$name.txt" 2>&1 || log "profile $name failed (rc $?)"
}
run_profile prefill  --prompt-tokens 512 --decode-tokens 1  --batch 4
run_profile decode1  --prompt-tokens 128 --decode-tokens 64 --batch 1
run_profile decode8  --prompt-tokens 128 --decode-tokens 32 --batch 8
run_profile decode32 --prompt-tokens 128 --decode-tokens 16 --batch 32

field() { # file, regex -> first match's captured number
  grep -oE "$2" "$1" 2>/dev/null | head -1 | grep -oE "[0-9]+(\.[0-9]+)?" | head -1 || true
}
matmul_row() { # file -> "GFLOP/s GB/s %roofline" of the MatMul row of the table
  grep -E "│ MatMul +│" "$1" 2>/dev/null | head -1 | awk -F'│' '{ gsub(/ /,""); print $6" "$7" "$8 }' || true
}

{
  echo
  echo "== gpu-check summary: $GPU_NAME, $(date -u +%FT%TZ), ${SECONDS}s =="
  printf "%-34s %s\n" "kernel tests (CUDA)" "$TEST_LINE"
  printf "%-34s %s\n" "roofline" "${PEAK_GFLOPS} GFLOP/s, ${PEAK_GBPS} GB/s"
  read -r g b r <<<"$(matmul_row "$OUT/prefill.txt")"
  printf "%-34s %s\n" "prefill GEMM (4x512 tokens)" "${g:-?} GFLOP/s = $(awk -v g="${g:-0}" -v p="$PEAK_GFLOPS" 'BEGIN{printf "%.1f", 100*g/p}') % of FP32 peak"
  printf "%-34s %s\n" "prefill tok/s" "$(field "$OUT/prefill.txt" 'tokens in [0-9.]+ ms \([0-9]+ tok/s')"
  for n in 1 8 32; do
    f="$OUT/decode$n.txt"
    read -r g b r <<<"$(matmul_row "$f")"
    printf "%-34s %s\n" "decode batch $n" "$(grep -oE '\([0-9.]+ tok/s, [0-9.]+ ms/step\)' "$f" | head -1) ; MatMul ${b:-?} GB/s (${r:-?} % roofline)"
  done
  echo "artifacts: $OUT (traces load in https://ui.perfetto.dev)"
} | tee "$OUT/summary.txt"
