#!/usr/bin/env bash
# The demo model's whole recipe in one call on a lent GPU (the `device` tool), about 9.5 minutes on one H200:
# scripts/train_demo.sh (DEMO=faces64 by default) with GPU-sized batches and a wall-time budget per stage.
# What it made comes back under $OUT, split into parts of at most 15 MB (the device tool's file limit):
#   model.tgz.part-*   the exported model folder (src/hyperinverter/pretrained/$DEMO, float16, directions)
#   runs.tgz.part-*    the GAN's generator (float32: a warm start, `init=`) and every stage's log.txt and
#                      image grids (the rest is in the export; the checkpoints would not fit the 64 MB)
#   train.log          the stages' output
# Reassemble here:  cat model.tgz.part-* | tar -xzf - -C src/hyperinverter/pretrained
# Usage on the device machine (its python3 holds torch; nothing is installed):  bash scripts/gpu_demo.sh
# A CPU dry run of the plumbing:  DEVICE=cpu PAIRS_COUNT=64 GAN_MINUTES=0.1 ... bash scripts/gpu_demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_demo}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export HI="${PYTHON:-python3} -m hyperinverter"
export DEMO=${DEMO:-faces64} WORKERS=${WORKERS:-16} DEVICE=${DEVICE:-cuda}
export GAN_MINUTES=${GAN_MINUTES:-2} GAN2_MINUTES=${GAN2_MINUTES:-1} W_MINUTES=${W_MINUTES:-1} HYPER_MINUTES=${HYPER_MINUTES:-1}
# faces64's refinement pass, fine-tune and difference stages (not yet run on a GPU)
export REFINE_MINUTES=${REFINE_MINUTES:-0.5} TUNE_MINUTES=${TUNE_MINUTES:-0.5} DIFF_MINUTES=${DIFF_MINUTES:-0.5}
export GAN_STEPS=${GAN_STEPS:-1000000} GAN2_STEPS=${GAN2_STEPS:-1000000} W_CODE_STEPS=${W_CODE_STEPS:-3000} W_STEPS=${W_STEPS:-1000000}
export HYPER_STEPS=${HYPER_STEPS:-1000000} REFINE_STEPS=${REFINE_STEPS:-1000000} TUNE_STEPS=${TUNE_STEPS:-1000000}
export DIFF_STEPS=${DIFF_STEPS:-1000000}
BATCH=${BATCH:-64}
common="run.device=$DEVICE run.workers=${LOADERS:-6}"
export GAN_ARGS="$common run.batch_size=$BATCH run.image_every=2000 ${GAN_ARGS:-}"
export W_ARGS="$common run.batch_size=$BATCH ${W_ARGS:-}"
export HYPER_ARGS="$common run.batch_size=$((BATCH / 2)) ${HYPER_ARGS:-}"
export REFINE_ARGS="$common run.batch_size=$((BATCH / 2)) ${REFINE_ARGS:-}"
export TUNE_ARGS="$common run.batch_size=$((BATCH / 2)) ${TUNE_ARGS:-}"
export DIFF_ARGS="$common run.batch_size=$((BATCH / 2)) ${DIFF_ARGS:-}"
start=$(date +%s)
status=0
bash scripts/train_demo.sh "$@" 2>&1 | tee "$OUT/train.log" || status=$?
case "$DEMO" in faces64) runs="gan_teacher_faces64 gan_teacher_faces64_smile w_encoder_faces64 hypernet_faces64
                               hypernet_faces64_refine hypernet_faces64_tune hypernet_faces64_diff" ;;
                *) runs="gan_teacher_demo64 w_encoder_demo64 hypernet_demo64" ;; esac
files=()
for r in $runs; do
  for f in runs/$r/generator runs/$r/log.txt runs/$r/images; do
    [ -e "$f" ] && files+=("$f")
  done
done
[ ${#files[@]} -gt 0 ] && tar -czf - "${files[@]}" | split -b 15m - "$OUT/runs.tgz.part-"
[ -d "src/hyperinverter/pretrained/$DEMO" ] && \
  tar -czf - -C src/hyperinverter/pretrained "$DEMO" | split -b 15m - "$OUT/model.tgz.part-"
echo "gpu_demo: $(( $(date +%s) - start )) s, status $status; $(ls "$OUT" | tr '\n' ' ')"
exit $status
