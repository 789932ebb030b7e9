#!/usr/bin/env bash
# The practical model (cellnet) trained on one GPU machine with the JAX backend, under a time budget.
#
#   bench/gpu_reference.sh wheelhouse          # here, with the package index: the wheels the GPU machine lacks -> .whl/
#   bench/gpu_reference.sh train [SECONDS]     # there, offline and without TensorFlow: install, draw, train, score
#
# `train` installs .whl/ into /tmp/site (where the kit's packages are missing), draws capts_val/ (5,000, seed 0) and capts_test/ (10,000,
# seed 1: the reference model's test set) on every CPU core, then runs
#   KERAS_BACKEND=jax python train.py --config configs/gpu_reference.json --time-limit SECONDS
# with every CPU core but one drawing the new training images (each serving two epochs) and the cosine schedule
# sized by the time; the best model, its history, curves and summary go to $OUT (default runs/gpu/). Last, it scores
# that model and reference/reference.keras on capts_test/ and writes both to $OUT/comparison.json.
# SECONDS defaults to 420, so that the whole script ends within 9 minutes on a 16-core machine.
# Environment: PYTHON (default python3), OUT, CONFIG (default configs/gpu_reference.json), EXTRA (more train.py
# options, e.g. "--model cellnet_tiny" for a check of the script on a CPU), VAL_COUNT and TEST_COUNT (the sets' sizes).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
OUT="${OUT:-runs/gpu}"
CONFIG="${CONFIG:-configs/gpu_reference.json}"
EXTRA="${EXTRA:-}"

case "${1:-}" in
wheelhouse)
    rm -rf .whl && mkdir .whl
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl -r bench/gpu_requirements.txt
    du -sh .whl
    ;;
train)
    SECONDS_LIMIT="${2:-420}"
    if ! "$PYTHON" -c "import keras, multicolorcaptcha, captcha" 2>/dev/null && [ -d .whl ]; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
    cores="$(nproc)"
    mkdir -p "$OUT"
    for set in "val ${VAL_COUNT:-5000} 0" "test ${TEST_COUNT:-10000} 1"; do
        read -r kind count seed <<<"$set"
        if [ ! -f "$OUT/capts_$kind/.complete" ]; then
            "$PYTHON" -m data.generate --train-count 0 --val-count 0 --test-count 0 "--$kind-count" "$count" \
                "--$kind-dir" "$OUT/capts_$kind" --seed "$seed" --workers "$cores" --force
            touch "$OUT/capts_$kind/.complete"
        fi
    done
    # shellcheck disable=SC2086  # EXTRA is a list of options.
    "$PYTHON" train.py --config "$CONFIG" --val-dir "$OUT/capts_val" --time-limit "$SECONDS_LIMIT" \
        --draw-workers "$(( cores > 1 ? cores - 1 : 1 ))" --output "$OUT/gpu_reference.keras" --force --quiet $EXTRA
    for model in "$OUT/gpu_reference.keras" reference/reference.keras; do
        # Exit status 1 is a FAIL verdict, still a score.
        "$PYTHON" evaluate.py "$model" --data "$OUT/capts_test" --json > "$OUT/$(basename "$model" .keras).test.json" \
            || [ $? -eq 1 ]
    done
    "$PYTHON" - "$OUT" <<'PYTHON'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {name: json.loads((out / f"{name}.test.json").read_text()) for name in ("gpu_reference", "reference")}
summary = json.loads((out / "gpu_reference.json").read_text())
comparison = {
    "test_images": rows["reference"]["images"],
    "gpu_reference": {key: rows["gpu_reference"][key] for key in ("position_accuracies", "mean_accuracy", "whole_accuracy")},
    "reference": {key: rows["reference"][key] for key in ("position_accuracies", "mean_accuracy", "whole_accuracy")},
    "train_seconds": summary["train_seconds"], "train_images_per_second": summary["train_images_per_second"],
    "epochs_run": summary["epochs_run"], "best_epoch": summary["best_epoch"],
}
comparison["beats_reference"] = (
    comparison["gpu_reference"]["mean_accuracy"] > comparison["reference"]["mean_accuracy"]
    and comparison["gpu_reference"]["whole_accuracy"] > comparison["reference"]["whole_accuracy"]
)
(out / "comparison.json").write_text(json.dumps(comparison, indent=2) + "\n")
print(json.dumps(comparison, indent=2))
PYTHON
    ;;
*)
    echo "usage: bench/gpu_reference.sh wheelhouse | train [SECONDS]" >&2
    exit 2
    ;;
esac
