#!/usr/bin/env bash
# The GPU checks of issue 13, in under 8 minutes on one GPU (H100/H200 class):
#   1. CUDA against CPU numerics (TF32 off: <= 1e-4 relative; bf16 / fp16: PSNR >= 40 dB), churches and faces;
#   2. the CUDA CPU-parity tests of the test suite;
#   3. the side-by-side table of bench_vs_baseline.py on CUDA (official algorithm vs ours in fp32, TF32,
#      bf16, bf16 + torch.compile): churches at batch 1, 8, 32, faces at 1, 8; peak CUDA memory at batch 8.
# Figures go to $OUT (default out/gpu_suite): numerics.json, vs_baseline_<domain>.{json,md,log}.
# Usage: bash benchmarks/gpu_suite.sh            (PYTHON=... to pick the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-out/gpu_suite}
mkdir -p "$OUT"
status=0
start=$(date +%s)
"$PY" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda); \
sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "no CUDA device: the GPU suite needs one"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== 1. CUDA vs CPU numerics"
timeout 150 "$PY" benchmarks/gpu_numerics.py --domains churches,faces --json "$OUT/numerics.json" || status=1

echo "== 2. CUDA parity tests"
timeout 60 "$PY" -m pytest -q -x tests/test_generator.py -k cuda || status=1

echo "== 3. official algorithm vs ours on CUDA (ms/image, images/s, GFLOP/s, peak CUDA memory)"
for spec in "churches 1,8,32" "faces 1,8"; do
    set -- $spec
    timeout 150 "$PY" benchmarks/bench_vs_baseline.py --devices cuda --domains "$1" --batch-sizes "$2" --reps 3 \
        --memory-batches 8 --memory-variants official,ours,ours-bf16 --json "$OUT/vs_baseline_$1.json" \
        2> "$OUT/vs_baseline_$1.log" | tee "$OUT/vs_baseline_$1.md" || status=1
done

echo "gpu suite: $(( $(date +%s) - start )) s, status $status; figures in $OUT"
exit $status
