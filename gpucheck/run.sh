#!/usr/bin/env bash
# make gpu-check: the one-shot check of every GPU path on a machine with one GPU (sized for about 8 minutes, not yet timed):
#   1. build pyfacex._C for this GPU's architecture (make install);
#   2. every cuda-marked test with compiled Triton (TRITON_INTERPRET=0), every dtype the op specs list;
#   3. python -m gpucheck: production-shape parity, grid-stride and > 2^31 sizes, determinism, a side
#      stream, torch.compile and CUDA-graph capture, benchmarks with their ratios;
#   4. the int64-offset probe, alone in its own process (an out-of-bounds read can poison the context).
# Logs and report.md go to $OUT (runs/gpu-check). DRY_RUN=1: step 3 only, on the CPU at tiny sizes
# with Triton's interpreter (what CI runs, so that the check's own logic cannot rot).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=$VENV/bin/python
OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
start=$(date +%s)
stamp() { echo "== $* (+$(( $(date +%s) - start )) s)"; }

if [ "${DRY_RUN:-0}" = 1 ]; then
  make install VENV="$VENV" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  stamp "gpucheck dry run (CPU, Triton interpreter, tiny sizes)"
  TRITON_INTERPRET=1 "$PY" -m gpucheck --dry-run --report "$OUT/report.md"
  stamp done
  exit
fi

arch=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
stamp "build for sm_${arch/./} (log: $OUT/build.log)"
make install VENV="$VENV" TORCH_CUDA_ARCH_LIST="$arch" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
"$PY" -c 'from pyfacex import _ext; assert _ext.native.cuda_kernels, _ext.native'

export TRITON_INTERPRET=0
status=0
stamp "cuda-marked tests with compiled Triton (log: $OUT/pytest.log)"
timeout 240 "$VENV/bin/pytest" tests -m cuda -q -rfE > "$OUT/pytest.log" 2>&1 || status=1
tail -5 "$OUT/pytest.log"

# Each step's exit status is kept before its log is filtered (a pipeline would report the filter's).
stamp "checks and benchmarks (log: $OUT/check.log)"
timeout 240 "$PY" -m gpucheck --report "$OUT/report.md" > "$OUT/check.log" 2>&1 || status=1
grep -v '^PASS' "$OUT/check.log" || true

stamp "int64-offset probe (log: $OUT/probe.log)"
timeout 60 "$PY" -m gpucheck --sections probe > "$OUT/probe.log" 2>&1 || status=1
tail -2 "$OUT/probe.log"
cat "$OUT/probe.log" >> "$OUT/report.md"
stamp "done: $OUT/report.md"
exit $status
