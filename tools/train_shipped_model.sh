#!/usr/bin/env bash
# Reproduces the shipped model from scratch (`make model`): renders the synthetic data sets, trains with
# config/train_synthetic.yaml (stage 1), config/train_synthetic_stage2.yaml (stage 2, from stage 1's best
# weights), config/train_synthetic_stage3.yaml (stage 3, from stage 2's best weights, adds the p2 detection
# level) and config/train_synthetic_stage4.yaml (stage 4, from stage 3's best weights on 4,000 unseen frames),
# copies stage 4's best checkpoint to models/ and evaluates it on the held-out set.
# Seeds: train 0 (stages 1-3) and 3 (stage 4), validation 1, held-out test 2 (the model card's figures come
# from the test set).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/synthetic}
RUN=${RUN:-runs/r18_synthetic}
RUN2=${RUN2:-runs/r18_synthetic_stage2}
RUN3=${RUN3:-runs/r18_synthetic_stage3}
RUN4=${RUN4:-runs/r18_synthetic_stage4}
MODEL=${MODEL:-models/panoptic_r18_synthetic.pt}
STEPS=${STEPS:-}    # overrides every stage's step counts (a quick check of the recipe, not the shipped model)

generate() {  # split seed frames
  [ -f "$DATA/$1/annotations.json" ] && return 0
  OMP_NUM_THREADS=1 "$PY" -m panoptic_ros.data.cli generate --out "$DATA/$1" --seed "$2" --frames "$3" \
    --width 384 --height 192
}
generate train 0 4000
generate val 1 100
generate test 2 300
generate train_seed3 3 4000

OMP_NUM_THREADS=2 "$PY" -m panoptic_ros.model.train --config config/train_synthetic.yaml \
  --data "$DATA/train" --val-data "$DATA/val" --out "$RUN" --device cpu ${STEPS:+--steps "$STEPS"}
OMP_NUM_THREADS=2 "$PY" -m panoptic_ros.model.train --config config/train_synthetic_stage2.yaml \
  --init "$RUN/best.pt" --data "$DATA/train" --val-data "$DATA/val" --out "$RUN2" --device cpu \
  ${STEPS:+--steps "$STEPS"}
OMP_NUM_THREADS=2 "$PY" -m panoptic_ros.model.train --config config/train_synthetic_stage3.yaml \
  --init "$RUN2/best.pt" --data "$DATA/train" --val-data "$DATA/val" --out "$RUN3" --device cpu \
  ${STEPS:+--steps "$STEPS"}
OMP_NUM_THREADS=2 "$PY" -m panoptic_ros.model.train --config config/train_synthetic_stage4.yaml \
  --init "$RUN3/best.pt" --data "$DATA/train_seed3" --val-data "$DATA/val" --out "$RUN4" --device cpu \
  ${STEPS:+--steps "$STEPS"}
cp "$RUN4/best.pt" "$MODEL"
# Inference settings (score threshold, stuff area) chosen on the validation split, stored in the checkpoint.
"$PY" tools/sweep_inference.py "$MODEL" "$DATA/val" --write
"$PY" -m panoptic_ros.evaluation.cli model "$MODEL" "$DATA/test" --backend cpu --out models/heldout_eval
