#!/usr/bin/env bash
# Retrain the shipped demo model (hyperinverter/pretrained/portraits64) from nothing, with the project's
# own commands: portraits -> StyleGAN2 -> W encoder (phase I) -> hypernetworks (phase II) -> directions
# -> float16 export into the package.
#
#   bash scripts/train_demo.sh                 # every stage
#   bash scripts/train_demo.sh w hyper pack    # some stages (data gan w hyper pack)
#
# Each training stage resumes from its checkpoint when there is one, so running the script again
# continues where it stopped. Wall-time budgets per stage (minutes, 0 = the preset's step count):
#   GAN_MINUTES, W_MINUTES, HYPER_MINUTES.  Extra key=value overrides: GAN_ARGS, W_ARGS, HYPER_ARGS.
# The shipped model was made on a 2-core CPU in about two hours (GAN 3732 steps over two resumed runs,
# W encoder 3194 steps in 20 minutes, hypernetworks 1964 steps in 35 minutes, all at batch 16); the same
# step counts from scratch:
#   GAN_ARGS=run.steps=3732 W_ARGS=run.steps=3194 HYPER_ARGS=run.steps=1964 bash scripts/train_demo.sh
# On a GPU leave the budgets at 0 to run the presets' full step counts (5000 / 10000 / 10000).
set -euo pipefail
cd "$(dirname "$0")/.."
HI="${HI:-.venv/bin/hyperinverter}"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(data gan w hyper pack)
has() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
resume() { [ -f "$1/checkpoints/latest.pt" ] && echo --resume || true; }

if has data; then
  [ -f data/portraits64/train/labels.csv ] || $HI data portraits --count 20000 --split train -o data/portraits64/train --workers 2 --quiet
  [ -f data/portraits64/val/labels.csv ] || $HI data portraits --count 1000 --split val -o data/portraits64/val --workers 2 --quiet
  [ -f data/portraits64/test/labels.csv ] || $HI data portraits --count 200 --split test -o data/portraits64/test --quiet
fi
if has gan; then
  $HI train gan -c configs/gan_demo64.yaml $(resume runs/gan_demo64) run.max_minutes="${GAN_MINUTES:-0}" ${GAN_ARGS:-}
fi
if has w; then
  $HI train w-encoder -c configs/w_encoder_demo64.yaml $(resume runs/w_encoder_demo64) run.max_minutes="${W_MINUTES:-0}" ${W_ARGS:-}
fi
if has hyper; then
  $HI train hypernet -c configs/hypernet_demo64.yaml $(resume runs/hypernet_demo64) run.max_minutes="${HYPER_MINUTES:-0}" ${HYPER_ARGS:-}
fi
if has pack; then
  $HI directions fit-portraits --model runs/hypernet_demo64/model --count 2000
  $HI export runs/hypernet_demo64/model -o src/hyperinverter/pretrained/portraits64 --dtype float16
fi
