"""Trains several registered models on the same data under the same budget and compares them.

    python -m bench.compare --models fourblock,resnet18,crnn_ctc --epochs 5 --time-limit 300 \
        --output-dir bench/results/henan --data ../shared/datasets/henan-4digit/images \
        --labels ../shared/datasets/henan-4digit/labels.txt --split 0.8,0.1,0.1

Every option that `bench.compare` does not know is passed to `train.py` for
every model (data, alphabet, batch size, learning rate...), so all models
see the same images, the same split and the same optimiser settings; each
gets the same `--epochs` and `--time-limit`. Writes `comparison.md` and
`comparison.csv` (parameters, seconds per epoch, training images per second,
per-position and whole accuracy on the test split, or on validation when
there is none, and the model file size) and `comparison.png` (validation
accuracy against epoch, every model) into `--output-dir`; the models and
their logs go to `--work-dir`.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from core.figures import plot_comparison
from core.files import atomic_path
from core.quiet import load_keras
from training.history import read_history


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models",
        required=True,
        help="comma-separated registered models (python -m models lists them)",
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs for every model (default: %(default)s)")
    parser.add_argument(
        "--time-limit", type=float, default=None, help="seconds of training for every model (default: none)"
    )
    parser.add_argument(
        "--output-dir", default="bench/results/comparison", help="where the tables and plot go (default: %(default)s)"
    )
    parser.add_argument(
        "--work-dir", default="runs/compare", help="where the models and their logs go (default: %(default)s)"
    )
    parser.add_argument("--title", default="", help="title of the plot and the markdown table")
    return parser


def compare(names: list[str], train_arguments: list[str], epochs: int, time_limit, work_dir: Path) -> list[dict]:
    """Trains each model with `train.main` and collects one row of figures per model."""
    import train

    rows = []
    for name in names:
        output = work_dir / f"{name}.keras"
        arguments = [*train_arguments, "--model", name, "--epochs", str(epochs), "--output", str(output)]
        # --time-limit 0 where none is asked for: the default run's own budget must not cut one model short.
        arguments += ["--force", "--quiet", "--time-limit", str(time_limit or 0)]
        print(f"\n=== {name}: train.py {shlex.join(arguments)}", flush=True)
        summary = train.main(arguments)
        scored_on = "test" if summary["test"] else "validation"
        result = summary["test"] or summary["validation"]
        rows.append(
            {
                "model": name,
                "parameters": summary["parameters"],
                "epochs": summary["epochs_run"],
                # From throughput, so that a last epoch cut short by --time-limit does not skew it.
                "seconds_per_epoch": round(summary["train_images"] / summary["train_images_per_second"], 1),
                "images_per_second": summary["train_images_per_second"],
                "scored_on": scored_on,
                "scored_images": result["images"],
                "position_accuracies": [round(value, 4) for value in result["position_accuracies"]],
                "mean_accuracy": round(result["mean_accuracy"], 4),
                "whole_accuracy": round(result["whole_accuracy"], 4),
                "model_megabytes": round(output.stat().st_size / 1e6, 2),
                "history": read_history(summary["history_file"]),
            }
        )
    return rows


def write_tables(rows: list[dict], output_dir: Path, header: str) -> tuple[Path, Path]:
    """Writes comparison.md (with `header` above the table) and comparison.csv, atomically."""
    length = len(rows[0]["position_accuracies"])
    positions = [f"position {position}" for position in range(length)]
    columns = ["model", "parameters", "epochs", "s/epoch", "images/s", "scored on", *positions, "mean", "whole", "MB"]
    table = [
        [
            row["model"],
            f"{row['parameters']:,}",
            row["epochs"],
            row["seconds_per_epoch"],
            row["images_per_second"],
            f"{row['scored_on']} ({row['scored_images']})",
            *(f"{value:.4f}" for value in row["position_accuracies"]),
            f"{row['mean_accuracy']:.4f}",
            f"{row['whole_accuracy']:.4f}",
            row["model_megabytes"],
        ]
        for row in rows
    ]
    markdown = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    markdown += ["| " + " | ".join(str(cell) for cell in line) + " |" for line in table]
    markdown_path, csv_path = output_dir / "comparison.md", output_dir / "comparison.csv"
    with atomic_path(markdown_path) as temporary:
        temporary.write_text("\n".join(markdown) + "\n")
    with atomic_path(csv_path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        writer.writerows(
            [row["model"], row["parameters"], *line[2:5], row["scored_on"], *line[6:-1], row["model_megabytes"]]
            for row, line in zip(rows, table)
        )
    return markdown_path, csv_path


def main(argv=None) -> dict:
    parser = build_parser()
    args, train_arguments = parser.parse_known_args(argv)
    load_keras()  # After the arguments, so that --help needs no TensorFlow.
    import models
    import train

    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(names) - set(models.list_models()))
    if not names or unknown:
        parser.error(f"--models must name registered models ({', '.join(models.list_models())}). Received: {unknown}")
    train.build_parser().parse_args(train_arguments)  # Fails now, not after the first model, on a bad option.
    output_dir, work_dir = Path(args.output_dir), Path(args.work_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)

    started = time.time()
    rows = compare(names, train_arguments, args.epochs, args.time_limit, work_dir)
    command = shlex.join(["python", "-m", "bench.compare", *(argv if argv is not None else sys.argv[1:])])
    budget = f"{args.epochs} epochs" + (f" or {args.time_limit:.0f} s of training" if args.time_limit else "")
    header = "\n".join(
        [
            f"# {args.title or 'Model comparison'}",
            "",
            f"`{command}`",
            "",
            f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} CPU cores; "
            f"budget per model: {budget}; total {(time.time() - started) / 60:.1f} min. Accuracies of the best "
            "epoch (by mean validation accuracy) on the images named in `scored on`; s/epoch and images/s include "
            "validation; a time limit stops a model after the first batch past it (its last epoch may be partial).",
        ]
    )
    markdown_path, csv_path = write_tables(rows, output_dir, header)
    length = len(rows[0]["position_accuracies"])
    plot_path = plot_comparison(
        {row["model"]: row["history"] for row in rows}, output_dir / "comparison.png", length, title=args.title
    )
    print("\n" + markdown_path.read_text())
    print(f"Written: {markdown_path}, {csv_path}, {plot_path}")
    return {"rows": rows, "markdown": markdown_path, "csv": csv_path, "plot": plot_path}


if __name__ == "__main__":
    main()
