"""The figures and tables of answers/answers.md, from committed results only (no training).

    python -m answers.experiments figures

Reads answers/results/*.json (the short runs of `answers.experiments`) and
bench/results/*.json (the committed 10-epoch runs); a source that is not
there yet (e.g. reference/reference.history.csv before training ends) is
left out of its figure and named in the printed output.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.ticker import PercentFormatter

from core.figures import new_figure, save_figure
from training.history import read_history

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "answers" / "results"
FIGURES = REPOSITORY / "answers" / "figures"
BENCH_RESULTS = REPOSITORY / "bench" / "results"
REFERENCE_HISTORY = REPOSITORY / "reference" / "reference.history.csv"
FRESH_HISTORY = BENCH_RESULTS / "train_cellnet_fresh32k.history.csv"  # The default run: 32,000 new images x 10 epochs.
THRESHOLDS = (0.50, 0.60)


def read_json(path: Path) -> dict | None:
    if not path.is_file():
        print(f"  (not there yet: {path.relative_to(REPOSITORY)})")
        return None
    return json.loads(path.read_text())


def run(name: str) -> dict | None:
    return read_json(RESULTS / f"{name}.json")


def bench_epochs(result: dict) -> tuple[list, list, list]:
    """(epochs, mean validation accuracy, mean training accuracy) of a bench/results file."""
    epochs = [row["epoch"] for row in result["epochs"]]
    val = [float(np.mean(row["val_digit_accuracies"])) for row in result["epochs"]]
    train = [float(np.mean(row["train_digit_accuracies"])) for row in result["epochs"]]
    return epochs, val, train


def reference_history(path: Path = REFERENCE_HISTORY) -> dict | None:
    """A train.py per-epoch log (default: the reference model's), when it exists and has rows."""
    if not path.is_file() or not path.read_text().strip():
        print(f"  (not there yet: {path.relative_to(REPOSITORY)} is empty)")
        return None
    history = read_history(path)  # Epochs counted from 1.
    if "val_mean_accuracy" not in history:
        return None
    return {
        "epochs": [int(epoch) for epoch in history["epoch"]],
        "val": history["val_mean_accuracy"],
        "train": [float(np.mean(row)) for row in zip(*(history[f"digit_{p}_accuracy"] for p in range(4)))],
    }


def save(figure, name: str) -> Path:
    path = save_figure(figure, FIGURES / name)
    print(f"wrote {path.relative_to(REPOSITORY)}")
    return path


def legend_under(figure, axis, columns: int) -> None:
    """One legend for the figure, under its axes, where it covers no curve (the constrained layout makes room)."""
    handles, labels = axis.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=columns, fontsize=7, frameon=False)


def curves_figure(names: dict, name: str, title: str, time_axis: bool = False) -> Path | None:
    """Validation mean per-digit accuracy of short runs against images seen (and training seconds)."""
    runs = {label: run(key) for key, label in names.items()}
    runs = {label: result for label, result in runs.items() if result}
    if not runs:
        return None
    columns = 2 if time_axis else 1
    figure = new_figure(5.2 * columns, 4.2)
    axes = figure.subplots(1, columns, squeeze=False)
    for label, result in runs.items():
        curve = result["curve"]
        accuracy = [point["val_mean_accuracy"] for point in curve]
        axes[0, 0].plot([point["images_seen"] / 1000 for point in curve], accuracy, marker="o", label=label)
        if time_axis:
            axes[0, 1].plot([point["train_seconds"] / 60 for point in curve], accuracy, marker="o", label=label)
    axes[0, 0].set_xlabel("training images seen (thousands)")
    if time_axis:
        axes[0, 1].set_xlabel("training minutes (2 shared CPU cores)")
    for axis in axes[0]:
        axis.set_ylabel("validation accuracy per digit")
        axis.grid(alpha=0.3)
        axis.set_ylim(0, 1)
    legend_under(figure, axes[0, 0], columns=3)
    figure.suptitle(title, fontsize=10)
    return save(figure, name)


def training_validation_figure() -> Path:
    """Q2/Q3: training and validation accuracy per epoch of the committed 10-epoch runs."""
    figure = new_figure(6.4, 5.2)
    axis = figure.subplots()
    sources = {
        "cellnet, fixed 30,000 images": BENCH_RESULTS / "train_cellnet_fixed30k.json",
        "cellnet, 32,000 new images/epoch": FRESH_HISTORY,
        "shawon (baseline), 32,000 new images/epoch": BENCH_RESULTS / "train_shawon.json",
        "shawon, post's dropout 0.5, fixed 30,000": BENCH_RESULTS / "train_shawon_dropout05.json",
    }
    for (label, path), colour in zip(sources.items(), ("tab:blue", "tab:green", "tab:red", "tab:grey")):
        if path.suffix == ".csv":
            history = reference_history(path)
            if not history:
                continue
            epochs, val, train = history["epochs"], history["val"], history["train"]
        else:
            result = read_json(path)
            if not result:
                continue
            epochs, val, train = bench_epochs(result)
        axis.plot(epochs, train, linestyle="--", color=colour, label=f"{label}: training")
        axis.plot(epochs, val, marker="o", color=colour, label=f"{label}: validation")
    axis.set_xlabel("epoch")
    axis.set_ylabel("accuracy per digit (mean of 4)")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    legend_under(figure, axis, columns=2)
    axis.set_title("Training (running mean over the epoch, dropout on) vs validation (5,000 images)", fontsize=9)
    return save(figure, "q2_train_val.png")


def error_log_figure() -> Path:
    """Q8: the same curves as error rate per digit on a log scale (left) and as accuracy (right)."""
    figure = new_figure(10.4, 4.4)
    axes = figure.subplots(1, 2)
    curves = []
    fixed = read_json(BENCH_RESULTS / "train_cellnet_fixed30k.json")
    if fixed:
        epochs, val, train = bench_epochs(fixed)
        curves += [("fixed 30k: validation", epochs, val, "o-"), ("fixed 30k: training", epochs, train, "--")]
    fresh = reference_history(FRESH_HISTORY)
    if fresh:
        curves.append(("32k new/epoch: validation", fresh["epochs"], fresh["val"], "s-"))
    reference = reference_history()
    if reference:
        label = "reference (40k new x 12, then 48k x 16, then 48k x 24): validation"
        curves.append((label, reference["epochs"], reference["val"], "^-"))
    for label, epochs, accuracy, style in curves:
        axes[0].semilogy(epochs, 1 - np.array(accuracy), style, label=label)
        axes[1].plot(epochs, accuracy, style, label=label)
    axes[0].set_ylabel("error rate per digit (log scale)")
    axes[0].yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    axes[0].yaxis.set_minor_formatter(PercentFormatter(1.0, decimals=0))
    axes[0].tick_params(axis="y", which="both", labelsize=7)
    axes[1].set_ylabel("accuracy per digit")
    axes[1].set_ylim(0.4, 1.0)
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3, which="both")
    legend_under(figure, axes[0], columns=3)
    axes[0].set_title("error rate, log scale: training error falls by a steady factor", fontsize=9)
    axes[1].set_title("the same curves as accuracy: looks like a plateau near 1", fontsize=9)
    return save(figure, "q8_error_log.png")


def crossing(curve: list, threshold: float, key: str) -> float | None:
    """`key` (images_seen or train_seconds) at which the validation accuracy first reaches `threshold`,
    linearly interpolated between evaluations; None when it never does."""
    previous = {key: 0.0, "val_mean_accuracy": 0.1}
    for point in curve:
        if point["val_mean_accuracy"] >= threshold:
            low, high = previous["val_mean_accuracy"], point["val_mean_accuracy"]
            fraction = (threshold - low) / (high - low) if high > low else 1.0
            return previous[key] + fraction * (point[key] - previous[key])
        previous = point
    return None


def run_table(names: list[str], speed: bool = False) -> str:
    """Markdown table of short runs: final accuracies; with `speed`, images and minutes to the thresholds."""
    header = "| run | what changes | per digit | whole | training min |"
    if speed:
        header = (
            "| run | what changes | training min | "
            + " | ".join(f"k images to {t:.0%} | min to {t:.0%}" for t in THRESHOLDS)
            + " | per digit at the end |"
        )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for name in names:
        result = run(name)
        if not result:
            continue
        final = result["final"]
        cells = [f"`{name}`", result["about"].split(": ", 1)[-1]]
        minutes = f"{result['train_seconds'] / 60:.1f}"
        if not speed:
            cells += [f"{final['val_mean_accuracy']:.1%}", f"{final['val_whole_accuracy']:.1%}", minutes]
        else:
            cells.append(minutes)
            for threshold in THRESHOLDS:
                images = crossing(result["curve"], threshold, "images_seen")
                seconds = crossing(result["curve"], threshold, "train_seconds")
                cells += [
                    f"{images / 1000:.1f}" if images else "not reached",
                    f"{seconds / 60:.1f}" if seconds else "–",
                ]
            cells.append(f"{final['val_mean_accuracy']:.1%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables() -> Path:
    """answers/results/tables.md: the tables the answers quote."""
    names = ["baseline", "grayscale", "rgb", "no_dropout", "dropout_0.3", "lr_1e-3", "lr_1e-2", "batch_128"]
    names += ["downscale_4", "half_width", "seed_1"]
    parts = ["## Short runs (python -m answers.experiments NAME)", run_table(names)]
    speed_names = ["baseline", "lr_1e-3", "lr_1e-2", "batch_128", "downscale_4", "no_dropout", "half_width"]
    parts += ["## Speed (Q9)", run_table(speed_names, speed=True)]
    step_time = read_json(RESULTS / "step_time.json")
    if step_time:
        rows = ["| run | batch | ms per image | images/s |", "|---|---|---|---|"]
        for name, value in step_time["runs"].items():
            rows.append(
                f"| `{name}` | {value['batch_size']} | {value['milliseconds_per_image']} | "
                f"{value['images_per_second']} |"
            )
        parts += ["## Compute per image (step_time)", "\n".join(rows)]
    tta = read_json(RESULTS / "tta.json")
    if tta:
        rows = ["| | per digit | whole |", "|---|---|---|"]
        for key in ("single", "averaged"):
            rows.append(f"| {key} | {tta[key]['mean_accuracy']:.1%} | {tta[key]['whole_accuracy']:.1%} |")
        parts += ["## Test-time augmentation (tta)", "\n".join(rows)]
    ensemble = read_json(RESULTS / "ensemble.json")
    if ensemble:
        rows = ["| models | per digit | whole |", "|---|---|---|"]
        for group in ("members", "ensembles"):
            for key, value in ensemble[group].items():
                rows.append(f"| {key} | {value['mean_accuracy']:.1%} | {value['whole_accuracy']:.1%} |")
        parts += ["## Ensemble", "\n".join(rows)]
    path = RESULTS / "tables.md"
    path.write_text("\n\n".join(parts) + "\n")
    print(f"wrote {path.relative_to(REPOSITORY)}")
    return path


def make_all() -> list[Path]:
    paths = [
        curves_figure(
            {"baseline": "foreground map (default)", "grayscale": "grayscale", "rgb": "RGB"},
            "q1_colour.png",
            "Q1: the input of the same cellnet (8,000 new images x 3 epochs)",
        ),
        training_validation_figure(),
        curves_figure(
            {
                "baseline": "baseline (dropout 0.1, LR 3e-3)",
                "no_dropout": "dropout 0",
                "dropout_0.3": "dropout 0.3",
                "lr_1e-3": "LR 1e-3",
                "lr_1e-2": "LR 1e-2",
                "half_width": "half width",
            },
            "q4_measures.png",
            "Q4/Q7: one change at a time (8,000 new images x 3 epochs)",
        ),
        error_log_figure(),
        curves_figure(
            {
                "baseline": "baseline (LR 3e-3, batch 64, downscale 2)",
                "lr_1e-3": "LR 1e-3",
                "lr_1e-2": "LR 1e-2",
                "batch_128": "batch 128",
                "downscale_4": "downscale 4",
                "no_dropout": "no dropout",
            },
            "q9_speed.png",
            "Q9: speed of learning (8,000 new images x 3 epochs)",
            time_axis=True,
        ),
        tables(),
    ]
    return [path for path in paths if path]
