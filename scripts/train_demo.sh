#!/usr/bin/env bash
# Retrain a demo model (hyperinverter/pretrained/<DEMO>) from nothing, with the project's own commands:
# portrait pairs -> StyleGAN2 taught by the renderer -> W encoder (phase I) -> hypernetworks (phase II)
# -> directions -> float16 export into the package.
#
#   bash scripts/train_demo.sh                 # every stage
#   bash scripts/train_demo.sh w hyper pack    # some stages (data gan w hyper refine tune diff smile pack;
#                                              # refine, tune, diff and smile: faces64)
#   DEMO=faces64 bash scripts/train_demo.sh    # which model (portraits64: head and shoulders; faces64: the
#                                              # face fills the frame, aligned); presets <stage>_<DEMO>.yaml
#
# Each training stage resumes from its checkpoint when there is one, so running the script again
# continues where it stopped. Wall-time budgets per stage (minutes, 0 = the preset's step count):
#   GAN_MINUTES, W_MINUTES, HYPER_MINUTES, REFINE_MINUTES, TUNE_MINUTES, DIFF_MINUTES, SMILE_MINUTES.  Extra
#   key=value overrides: GAN_ARGS, W_ARGS, HYPER_ARGS, REFINE_ARGS, TUNE_ARGS, DIFF_ARGS, SMILE_ARGS.
# Step counts of the shipped model (README "The demo model" says what they took on which machine):
#   GAN_STEPS, GAN2_STEPS (faces64's second GAN stage: smiles), W_CODE_STEPS (phase I on codes only),
#   W_STEPS (in all), HYPER_STEPS, REFINE_STEPS (faces64's refinement pass), TUNE_STEPS (faces64's fine-tune of
#   E2 and both passes on the squared error), DIFF_STEPS (faces64's E2 widened to read the input's difference from
#   each image, then trained on), SMILE_STEPS, SMILE2_STEPS (faces64's fine-tunes with the attribute term on the
#   smile alone, at weight 1 then 2).
#   GAN2_MINUTES: the second GAN stage's budget.
# On a GPU leave the budgets at 0 and raise the step counts (scripts/gpu_demo.sh: the whole recipe in one
# call of the device tool). PAIRS_COUNT: (z, image) pairs to render (40000); WORKERS: rendering processes (2).
set -euo pipefail
cd "$(dirname "$0")/.."
HI="${HI:-.venv/bin/hyperinverter}"
DEMO="${DEMO:-portraits64}"
case "$DEMO" in
  portraits64) FRAMING=portrait; PAIRS=data/pairs64; HELD=data/portraits64; GAN=gan_teacher_demo64
               W=w_encoder_demo64; HYPER=hypernet_demo64 ;;
  faces64) FRAMING=aligned; PAIRS=data/alignpairs64; HELD=data/aligned64; GAN=gan_teacher_faces64
           W=w_encoder_faces64; HYPER=hypernet_faces64
           # stage 2 of the GAN (mouths and smiles): the same pairs plus smile sweeps, a mouth-box weight
           SWEEP_PAIRS=data/alignpairs64_smile; GAN2=gan_teacher_faces64_smile ;;
  *) echo "DEMO must be portraits64 or faces64, got $DEMO" >&2; exit 2 ;;
esac
GAN_STEPS="${GAN_STEPS:-6035}"
GAN2_STEPS="${GAN2_STEPS:-3822}"
W_CODE_STEPS="${W_CODE_STEPS:-3000}"
W_STEPS="${W_STEPS:-3500}"
HYPER_STEPS="${HYPER_STEPS:-10000}"
REFINE_STEPS="${REFINE_STEPS:-9000}"
TUNE_STEPS="${TUNE_STEPS:-3500}"
DIFF_STEPS="${DIFF_STEPS:-8500}"
SMILE_STEPS="${SMILE_STEPS:-5000}"; SMILE2_STEPS="${SMILE2_STEPS:-2500}"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(data gan w hyper refine tune diff smile pack)
MODEL=runs/$HYPER/model  # what pack exports: faces64's is the smile stage's (refinement pass, fine-tune, difference,
[ "$DEMO" = faces64 ] && MODEL=runs/${HYPER}_smile2/average  # smile term, averaged)
has() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
resume() { [ -f "$1/checkpoints/latest.pt" ] && echo --resume || true; }
step_of() { [ -f "$1/log.txt" ] && tail -1 "$1/log.txt" | sed -n 's/^step=\([0-9]*\).*/\1/p' || echo 0; }

if has data; then
  # 40k (z, image) pairs: portrait i is the render of attributes_from_latent(latents[i]) (numpy seed 7).
  F=(--framing "$FRAMING")
  [ -f $PAIRS/labels.csv ] || $HI data portraits --count "${PAIRS_COUNT:-40000}" --latents 64 --start 7 "${F[@]}" \
    -o $PAIRS --workers "${WORKERS:-2}" --quiet --overwrite
  # the same pairs (same z, same renders), then 5000 z each drawn at four smiles (numpy seed 8)
  [ -z "${SWEEP_PAIRS:-}" ] || [ -f $SWEEP_PAIRS/labels.csv ] || $HI data portraits --count "${PAIRS_COUNT:-40000}" \
    --latents 64 --start 7 "${F[@]}" --sweep smile=-1.6,-0.6,0.6,1.6 --sweep-bases "${SWEEP_BASES:-5000}" \
    -o $SWEEP_PAIRS --workers "${WORKERS:-2}" --quiet --overwrite
  [ -f $HELD/val/labels.csv ] || $HI data portraits --count 500 --split val "${F[@]}" -o $HELD/val --workers "${WORKERS:-2}" --quiet --overwrite
  [ -f $HELD/test/labels.csv ] || $HI data portraits --count 200 --split test "${F[@]}" -o $HELD/test --workers "${WORKERS:-2}" --quiet --overwrite
fi
if has gan; then
  $HI train gan-teacher -c $GAN $(resume runs/$GAN) \
    run.steps="$GAN_STEPS" run.max_minutes="${GAN_MINUTES:-0}" ${GAN_ARGS:-}
  if [ -n "${GAN2:-}" ]; then
    $HI train gan-teacher -c $GAN2 $(resume runs/$GAN2) \
      run.steps="$GAN2_STEPS" run.max_minutes="${GAN2_MINUTES:-0}" ${GAN_ARGS:-}
  fi
fi
if has w; then
  # Phase I, part 1: codes only (no synthesis, ~10x faster per step); part 2: codes + image losses.
  if [ "$(step_of runs/$W)" -lt "$W_CODE_STEPS" ] 2>/dev/null; then
    $HI train w-encoder -c $W $(resume runs/$W) \
      run.steps="$W_CODE_STEPS" losses.l2=0 losses.grad=0 run.val_every=0 run.image_every=0 ${W_ARGS:-}
  fi
  $HI train w-encoder -c $W --resume run.steps="$W_STEPS" \
    run.max_minutes="${W_MINUTES:-0}" ${W_ARGS:-}
fi
loss_regressor() {
  # the attribute regressor of the hypernetworks' attr loss (preset hypernet_faces64, smile stage): trained on the
  # training pairs with its own seed and widths, so the benchmark's regressor (runs/attributes_pa64) stays independent
  [ -f runs/attributes_loss64/model.safetensors ] || $HI train-attributes --data $SWEEP_PAIRS --count 20000 \
    --widths 32,48,96,128 --steps 2500 --seed 1 --quiet -o runs/attributes_loss64
}
if has hyper; then
  [ "$DEMO" = faces64 ] && loss_regressor
  $HI train hypernet -c $HYPER $(resume runs/$HYPER) run.steps="$HYPER_STEPS" \
    run.max_minutes="${HYPER_MINUTES:-0}" ${HYPER_ARGS:-}
fi
if has refine && [ "$DEMO" = faces64 ]; then
  # a second hypernetwork pass (README "A refinement pass"): it reads E2's codes of the first pass's image and of
  # the input and adds its residual. It starts at zero (the model is the hyper stage's) and trains alone: E2 and
  # the first pass stay as they are (training them too, at 3e-4, first set the model back by 0.3 dB)
  $HI train hypernet -c $HYPER $(resume runs/${HYPER}_refine) run.out_dir=runs/${HYPER}_refine \
    init=runs/$HYPER/model refinement_passes=1 train_first_pass=false run.steps="$REFINE_STEPS" lr=0.0005 \
    "lr_schedule=[[5000, 0.00015], [7500, 0.00005]]" run.val_images=64 run.max_minutes="${REFINE_MINUTES:-0}" \
    ${REFINE_ARGS:-}
fi
# the settings the tune, diff and smile stages share: one refinement pass, E2 and the first pass at half the rate on
# E2's running BatchNorm statistics, no edge term, 64 validation images
FINE_TUNE=(refinement_passes=1 first_pass_lr_scale=0.5 e2_batchnorm=running losses.grad=0 run.val_images=64)
if has tune && [ "$DEMO" = faces64 ]; then
  # everything but E1 and the generator fine-tuned together on the squared error alone (README "Fine-tuning on
  # the squared error"): E2 and the first pass at half the rate of the refinement pass, E2's BatchNorm on its
  # running statistics (a few images per process make noisy batch statistics)
  $HI train hypernet -c $HYPER $(resume runs/${HYPER}_tune) run.out_dir=runs/${HYPER}_tune \
    init=runs/${HYPER}_refine/model "${FINE_TUNE[@]}" losses.attr=0 lr=0.0001 "lr_schedule=[[2600, 0.00003]]" \
    run.steps="$TUNE_STEPS" run.max_minutes="${TUNE_MINUTES:-0}" ${TUNE_ARGS:-}
fi
# the diff and smile stages: the tune stage's settings, and E2 reads the difference (6 channels)
DIFF_MODEL=("${FINE_TUNE[@]}" layer_encoder.backbone.in_channels=6)
if has diff && [ "$DEMO" = faces64 ]; then
  # E2 reads every image next to the input's difference from it (layer_encoder.backbone.in_channels=6, README "E2
  # reads the difference"): init widens the tune stage's E2 with zero weights for the difference, so the run starts
  # at that model; then the tune stage's settings. The schedule is the shipped model's as run: 4000 steps with the
  # lower rate from step 3300, then (fifteenth session, resumed) the full rate again to step 7000 and the lower after
  $HI train hypernet -c $HYPER $(resume runs/${HYPER}_diff) run.out_dir=runs/${HYPER}_diff \
    init=runs/${HYPER}_tune/model "${DIFF_MODEL[@]}" losses.attr=0 lr=0.0001 \
    "lr_schedule=[[3300, 0.00003], [4000, 0.0001], [7000, 0.00003]]" \
    run.steps="$DIFF_STEPS" run.max_minutes="${DIFF_MINUTES:-0}" ${DIFF_ARGS:-}
fi
if has smile && [ "$DEMO" = faces64 ]; then
  loss_regressor
  # the attribute term back on, on the smile alone (README "The smile term"): the diff stage's model fine-tuned at its
  # lowest rate, with the loss regressor's smile reads of the reconstruction and of the input compared (the squared
  # error weighs a frown by its few pixels); E2's settings as in the diff stage. Each run keeps its model every 250
  # steps (run.keep_models_every) and its result is the average of the kept models over its last steps: the reads of
  # single checkpoints wander by about 0.01 in R² at a constant rate, the averages' sit at the top. Two runs: the
  # term at weight 1 for SMILE_STEPS (the models of its last 3000 steps averaged), then from that average at weight
  # 2 for SMILE2_STEPS (its last 1000 averaged). Which averages: chosen on val-split portraits (README)
  smile_run() {  # OUT INIT WEIGHT STEPS AVERAGED_STEPS
    $HI train hypernet -c $HYPER $(resume $1) run.out_dir=$1 init=$2 "${DIFF_MODEL[@]}" losses.attr=$3 \
      "losses.attr_attributes=[smile]" lr=0.00003 "lr_schedule=[]" run.keep_models_every=250 run.steps="$4" \
      run.max_minutes="${SMILE_MINUTES:-0}" ${SMILE_ARGS:-}
    # a wall-time budget can stop the run short: run the script again to go on
    [ "$(step_of $1)" = "$4" ] || { echo "$1 stopped before step $4; run the script again" >&2; exit 1; }
    local kept=(); for s in $(seq $(($4 - $5)) 250 "$4"); do kept+=("$1/snapshots/step_$s/model"); done
    rm -rf "$1/average"
    "${PY:-.venv/bin/python}" scripts/average_models.py "$1/average" "${kept[@]}"
  }
  smile_run runs/${HYPER}_smile runs/${HYPER}_diff/model 1 "$SMILE_STEPS" 3000
  smile_run runs/${HYPER}_smile2 runs/${HYPER}_smile/average 2 "$SMILE2_STEPS" 1000
fi
if has pack; then
  # float16 export with domain.json: the framing and the typical phase-I PSNR on validation portraits
  # (out-of-domain warnings); then the directions, fitted on codes of portraits in the model's framing
  $HI export $MODEL -o src/hyperinverter/pretrained/$DEMO --dtype float16 --overwrite \
    --validation $HELD/val --domain-kind "procedural portraits" --framing "$FRAMING"
  # a direction W does not hold (held-out accuracy below 0.85) is not shipped; faces64's are conditional
  # (orthogonal to the read-outs of the other attributes: less entangled, README "The faces64 model")
  COND=(); [ "$DEMO" = faces64 ] && COND=(--conditional)
  $HI directions fit-portraits --model src/hyperinverter/pretrained/$DEMO --count 2000 --overwrite \
    --min-accuracy 0.85 "${COND[@]}"
  if [ "$DEMO" = faces64 ]; then
    # the smile on the generator's own codes mapping(z) of renderer latents (labelled exactly): it moves the
    # mouth of an inversion more than one fitted on E1's codes (target change 0.28 against 0.20) and more
    # pixels than a conditional one (README "The faces64 model")
    # Its default strength is four standard deviations of the codes along it, not two: the mouth is a few
    # pixels, and at two the −/+ edits differed by about the reconstruction error (README "The faces64 model")
    $HI directions fit-portraits --model src/hyperinverter/pretrained/$DEMO --codes generator --count 2000 \
      --attributes smile --overwrite --min-accuracy 0.85 --strength-sigmas 4
    # the five directions on E1's codes refined on 512 inversions of other training portraits, residuals kept
    # (README "Directions refined through the residuals"): guided by a regressor of every rendered attribute,
    # trained on the training pairs with its own seed; the benchmark's regressor judges the result
    [ -f runs/attributes_all64/model.safetensors ] || $HI train-attributes --data $SWEEP_PAIRS --count 20000 \
      --widths 32,48,96,128 --steps 2500 --seed 2 --attributes all --quiet -o runs/attributes_all64
    # (each keeps its own target change and lowers the entanglement; glasses, a probability, is asked to reach
    # 0.49 of its 0.5 maximum: its start changed it by 0.19, and removed glasses only faintly)
    REFINED=runs/directions_refined_$DEMO
    refine() { $HI directions refine --model src/hyperinverter/pretrained/$DEMO --regressor runs/attributes_all64 \
      -o $REFINED --overwrite "$@"; }
    refine --attributes skin_tone tilt hair_lightness
    refine --attributes yaw --count 768 --steps 400 --lr 0.001  # more images, smaller steps: its steps are noisy
    refine --attributes glasses --target-change 0.49
    # glasses again, with only the face's attributes as entanglement (the guide also reads background and clothes,
    # which dilute it), at 2, 2.2, 2.5 then 2.8 standard deviations: more pixels moved for the same side effects
    FACE=(smile yaw tilt glasses hair_lightness skin_tone eye_size eyebrow_angle face_width jaw_roundness)
    for sig in 2 2.2 2.5 2.8; do
      mkdir -p $REFINED/from; cp $REFINED/glasses.* $REFINED/from/
      refine --attributes glasses --target-change 0.49 --entangled "${FACE[@]}" --directions $REFINED/from \
        --strength-sigmas $sig
    done
    cp $REFINED/*.safetensors $REFINED/*.json src/hyperinverter/pretrained/$DEMO/directions/
  fi
fi
