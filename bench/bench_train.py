"""Benchmark: the default `python train.py` from a clean state, timed and scored.

    python -m bench.bench_train                   # default model, default data
    python -m bench.bench_train --model shawon    # the Kaggle baseline on the same data

Runs what a student runs on a fresh machine, `python train.py`, as a
subprocess in an empty scratch folder: it generates `capts_val/` (timed
inside it as data preparation), then trains on new CAPTCHAs every epoch.
With `--train-args "--train-dir capts_train"` the bench first runs
`python -m data.generate` (timed apart), for the fixed-folder recipe.
Records the wall times, training images per second and the per-epoch
per-digit and whole validation accuracies in
`bench/results/train_<model>.json` (or `--name`), and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.machine import machine
from core.files import write_json
from training.history import read_history

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "bench" / "results"


def run(command: list[str], cwd: Path) -> float:
    """Runs `command`, streaming its output; returns its wall time in seconds."""
    print("$", " ".join(command), flush=True)
    started = time.time()
    subprocess.run(command, cwd=cwd, check=True, env={**os.environ, "PYTHONPATH": str(REPOSITORY)})
    return time.time() - started


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="registered model (default: train.py's default)")
    parser.add_argument("--work-dir", default="/tmp/captcha-kit-bench", help="scratch folder, emptied first")
    parser.add_argument(
        "--reuse-data",
        action="store_true",
        help="keep the generated folders of an earlier run (generation is then not timed)",
    )
    parser.add_argument("--train-args", default="", help="extra arguments for train.py, e.g. '--epochs 3'")
    parser.add_argument("--name", default=None, help="results file name (default: train_<model>)")
    args = parser.parse_args(argv)

    work = Path(args.work_dir)
    if not args.reuse_data and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.glob("model*"):
        stale.unlink()

    generate_seconds = None
    fixed_folder = "--train-dir" in args.train_args
    if fixed_folder and (not args.reuse_data or not (work / "capts_train").exists()):
        generate_seconds = run([sys.executable, "-m", "data.generate"], cwd=work)
    command = [sys.executable, str(REPOSITORY / "train.py"), "--output", "model.keras", "--quiet"]
    if args.model:
        command += ["--model", args.model]
    command += shlex.split(args.train_args)
    train_seconds = run(command, cwd=work)

    summary = json.loads((work / "model.json").read_text())
    history = read_history(work / "model.history.csv")  # Epochs counted from 1.
    epochs = [dict(zip(history, row)) for row in zip(*history.values())]
    model = summary["options"]["model"]
    result = {
        "benchmark": "default training from a clean state",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "command": " ".join(["python train.py", *command[4:]]),
        "model": model,
        "parameters": summary["parameters"],
        "train_images": summary["train_images"],
        "fresh_images_per_epoch": summary.get("fresh_images_per_epoch"),
        "val_images": summary["val_images"],
        "generate_seconds": None if generate_seconds is None else round(generate_seconds, 1),
        "train_command_seconds": round(train_seconds, 1),
        "data_load_seconds": summary["data_seconds"],
        "fit_seconds": summary["train_seconds"],
        "total_wall_seconds": round((generate_seconds or 0) + train_seconds, 1),
        "train_images_per_second": summary["train_images_per_second"],
        "time_limit_seconds": summary.get("time_limit_seconds"),
        "stopped_by_time_limit": summary.get("stopped_by_time_limit"),
        "best_epoch": summary["best_epoch"],
        "final_validation": summary["validation"],
        "epochs": [
            {
                "epoch": int(row["epoch"]),
                "loss": round(row["loss"], 4),
                "val_digit_accuracies": [round(row[f"val_digit_{p}_accuracy"], 4) for p in range(4)],
                "val_whole_accuracy": round(row["val_whole_accuracy"], 4),
                "train_digit_accuracies": [round(row[f"digit_{p}_accuracy"], 4) for p in range(4)],
            }
            for row in epochs
        ],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = args.name or f"train_{model}"
    path = RESULTS / f"{name}.json"
    write_json(path, result)
    shutil.copy(work / "model.curves.png", RESULTS / f"{name}.curves.png")
    print_table(result)
    print(f"\nWritten: {path}")
    return result


def print_table(result: dict) -> None:
    print(
        f"\n{result['model']}: {result['parameters']:,} parameters, {result['train_images']} training images"
        f"{' (new every epoch)' if result.get('fresh_images_per_epoch') else ''}, "
        f"{result['val_images']} validation images"
    )
    print(
        f"wall: generation {result['generate_seconds']}s, train.py {result['train_command_seconds']}s "
        f"(load {result['data_load_seconds']}s, fit {result['fit_seconds']}s), "
        f"total {result['total_wall_seconds'] / 60:.1f} min; {result['train_images_per_second']} training images/s"
    )
    print("| epoch | loss | val digit 0 | digit 1 | digit 2 | digit 3 | val whole |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in result["epochs"]:
        digits = " | ".join(f"{value:.4f}" for value in row["val_digit_accuracies"])
        print(f"| {row['epoch']} | {row['loss']:.4f} | {digits} | {row['val_whole_accuracy']:.4f} |")
    final = result["final_validation"]
    print(
        f"best epoch {result['best_epoch']}: digits "
        + " ".join(f"{value:.4f}" for value in final["position_accuracies"])
        + f", whole {final['whole_accuracy']:.4f}"
    )


if __name__ == "__main__":
    main()
