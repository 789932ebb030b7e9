"""Pictures of training runs and predictions, saved as PNG.

A run trained in stages (`train.py --initial-model`, each stage with its
own log) gets one history and one curve figure from its stage logs:

    python -m models.plots reference/stage1.history.csv reference/stage2.history.csv --output reference/reference
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Files only; no screen needed.
import matplotlib.pyplot as plt  # noqa: E402

from core.files import atomic_path  # noqa: E402


def read_history(csv_path: str | Path) -> dict[str, list[float]]:
    """Columns of a Keras CSVLogger file as lists of floats."""
    with open(csv_path, newline="") as file:
        rows = list(csv.DictReader(file))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def join_histories(histories: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """The logs of consecutive training stages as one log, epochs numbered on from stage to stage.

    Raises:
        ValueError: Stages that logged different columns.
    """
    if not histories:
        raise ValueError("Expected at least one history. Received none")
    columns = list(histories[0])
    joined = {column: [] for column in columns}
    for stage, history in enumerate(histories, 1):
        if sorted(history) != sorted(columns):
            raise ValueError(
                f"Stage {stage} logged other columns than stage 1. "
                f"Received: {sorted(history)}; expected {sorted(columns)}"
            )
        offset = len(joined["epoch"])
        for column in columns:
            values = history[column]
            joined[column] += [offset + index for index in range(len(values))] if column == "epoch" else values
    return joined


def write_history(history: dict[str, list[float]], path: str | Path) -> Path:
    """Writes `read_history`-style columns as a CSV file (atomically), epochs as integers."""
    path = Path(path)
    columns = list(history)
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for row in zip(*(history[column] for column in columns)):
            writer.writerow(int(value) if column == "epoch" else value for column, value in zip(columns, row))
    return path


def plot_history(history: dict[str, list[float]], path: str | Path, length: int, title: str = "") -> Path:
    """Accuracy of each character position against epoch (like the assignment's Figure 2.2).

    Left: validation (solid) and training (dashed) accuracy of digits 0..length-1.
    Right: whole-CAPTCHA accuracy and the loss.
    """
    epochs = [int(epoch) + 1 for epoch in history["epoch"]]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for position in range(length):
        color = f"C{position}"
        key = f"digit_{position}_accuracy"
        left.plot(epochs, history[f"val_{key}"], "-o", color=color, markersize=3, label=f"digit {position} (val)")
        left.plot(epochs, history[key], "--", color=color, alpha=0.6, label=f"digit {position} (train)")
    left.set(xlabel="epoch", ylabel="accuracy", title="Per-digit accuracy", ylim=(0, 1.01))
    left.grid(alpha=0.3)
    left.legend(fontsize=7, ncol=2, loc="lower right")
    right.plot(epochs, history["val_whole_accuracy"], "-o", color="black", markersize=3, label="whole (val)")
    right.plot(epochs, history["whole_accuracy"], "--", color="black", alpha=0.6, label="whole (train)")
    if "val_teacher_whole_accuracy" in history:  # A Mean Teacher run: its EMA teacher too.
        right.plot(
            epochs, history["val_teacher_whole_accuracy"], "-s", color="C4", markersize=3, label="whole (val, teacher)"
        )
    right.set(xlabel="epoch", ylabel="whole-CAPTCHA accuracy", title="Whole CAPTCHA and loss", ylim=(0, 1.01))
    right.grid(alpha=0.3)
    loss_axis = right.twinx()
    loss_axis.plot(epochs, history["loss"], ":", color="C3", label="loss (train)")
    loss_axis.plot(epochs, history["val_loss"], "-.", color="C3", label="loss (val)")
    loss_axis.set_ylabel("loss", color="C3")
    handles = right.get_legend_handles_labels()[0] + loss_axis.get_legend_handles_labels()[0]
    right.legend(handles, [handle.get_label() for handle in handles], fontsize=7, loc="center right")
    for axis in (left, right):
        axis.xaxis.get_major_locator().set_params(integer=True)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_samples(images, labels, path: str | Path, predictions=None, columns: int = 4, title: str = "") -> Path:
    """A grid of images titled with their label (and prediction: green right, red wrong)."""
    rows = (len(images) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.1 * rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= len(images):
            continue
        axis.imshow(images[index])
        if predictions is None:
            axis.set_title(labels[index], fontsize=11, family="monospace")
        else:
            right = predictions[index] == labels[index]
            axis.set_title(
                f"true {labels[index]}  read {predictions[index]}",
                fontsize=10,
                family="monospace",
                color="green" if right else "red",
            )
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return save_figure(figure, path)


def save_figure(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)
    return path


def plot_confusion(true_codes, predicted_codes, characters: str, path: str | Path, title: str = "") -> Path:
    """Confusion matrix of single characters (all positions together), with counts in the cells.

    Positions a CTC model left unread (code -1) have no column and are not counted.
    """
    import numpy as np

    from models.metrics import confusion_counts

    classes = len(characters)
    counts = confusion_counts(true_codes, predicted_codes, classes)
    size = max(4.5, 0.45 * classes + 1.5)
    figure, axis = plt.subplots(figsize=(size, size * 0.9))
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if classes <= 20:
        for row in range(classes):
            for column in range(classes):
                if counts[row, column]:
                    color = "white" if rates[row, column] > 0.5 else "black"
                    axis.text(column, row, counts[row, column], ha="center", va="center", fontsize=7, color=color)
    axis.set_xticks(range(classes), list(characters))
    axis.set_yticks(range(classes), list(characters))
    axis.set(xlabel="read as", ylabel="true character", title=title or "Character confusions")
    figure.tight_layout()
    return save_figure(figure, path)


def plot_comparison(
    histories: dict[str, dict[str, list[float]]], path: str | Path, length: int, title: str = ""
) -> Path:
    """Validation accuracy against epoch for several models on one plot.

    Solid: whole-CAPTCHA accuracy; dashed, same colour: mean per-position accuracy.

    Args:
        histories: Model name to its `read_history` columns.
        path: PNG to write.
        length: Characters per label (for the per-position columns).
    """
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for index, (name, history) in enumerate(histories.items()):
        epochs = [int(epoch) + 1 for epoch in history["epoch"]]
        mean = [
            sum(history[f"val_digit_{position}_accuracy"][row] for position in range(length)) / length
            for row in range(len(epochs))
        ]
        axis.plot(epochs, history["val_whole_accuracy"], "-o", color=f"C{index}", markersize=3, label=f"{name} whole")
        axis.plot(epochs, mean, "--", color=f"C{index}", alpha=0.7, label=f"{name} per position")
    axis.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1.01), title=title or "Validation accuracy")
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, ncol=2, loc="lower right")
    figure.tight_layout()
    return save_figure(figure, path)


def main(argv=None) -> tuple[Path, Path]:
    """Joins the logs of a staged run: writes OUTPUT.history.csv and OUTPUT.curves.png."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("histories", nargs="+", help="the stages' .history.csv files, in training order")
    parser.add_argument("--output", required=True, help="path prefix of the joined .history.csv and .curves.png")
    parser.add_argument("--length", type=int, default=4, help="characters per label (default: %(default)s)")
    parser.add_argument("--title", default="", help="figure title")
    args = parser.parse_args(argv)
    for name in args.histories:
        if not Path(name).is_file():
            parser.error(f"history file {name} does not exist")
    joined = join_histories([read_history(name) for name in args.histories])
    csv_path = write_history(joined, f"{args.output}.history.csv")
    png_path = plot_history(joined, f"{args.output}.curves.png", args.length, args.title)
    print(f"{len(joined['epoch'])} epochs from {len(args.histories)} stages: {csv_path}, {png_path}")
    return csv_path, png_path


if __name__ == "__main__":
    main()
