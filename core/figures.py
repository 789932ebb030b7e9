"""Figures of training runs, images and confusions, saved as PNG.

Drawn with Matplotlib's object-oriented API (`matplotlib.figure.Figure` and
its Agg canvas), never `pyplot`: importing this module does not switch the
process's Matplotlib backend, keeps no global figure registry, and needs no
screen. Each figure is written atomically (`core.files.atomic_path`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from core.files import atomic_path


def new_figure(width: float, height: float) -> Figure:
    """A figure of `width` x `height` inches with its own Agg canvas (no pyplot, no backend switch)."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Writes `figure` as a PNG at `path` (atomically; folders made as needed).

    Args:
        figure: A figure from `new_figure` (or any `matplotlib.figure.Figure`).
        path: The PNG to write.
        dpi: Pixels per inch.

    Returns:
        `path` as a `Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=dpi, format="png")
    return path


def plot_history(history: dict[str, list[float]], path: str | Path, length: int, title: str = "") -> Path:
    """Accuracy of each character position against epoch (like the assignment's Figure 2.2).

    Left: validation (solid) and training (dashed) accuracy of digits 0..length-1.
    Right: whole-CAPTCHA accuracy and the loss. Epochs are plotted as the log
    numbers them (`training.history.read_history` counts from 1); legends sit
    below the axes, where they cover no curve.

    Args:
        history: Columns as `training.history.read_history` returns them.
        path: The PNG to write.
        length: Characters per label.
        title: Figure title.

    Returns:
        `path` as a `Path`.
    """
    epochs = [int(epoch) for epoch in history["epoch"]]
    figure = new_figure(11, 4.8)
    left, right = figure.subplots(1, 2)
    for position in range(length):
        color = f"C{position}"
        key = f"digit_{position}_accuracy"
        left.plot(epochs, history[f"val_{key}"], "-o", color=color, markersize=3, label=f"digit {position} (val)")
        left.plot(epochs, history[key], "--", color=color, alpha=0.6, label=f"digit {position} (train)")
    left.set(ylabel="accuracy", title="Per-digit accuracy")
    right.plot(epochs, history["val_whole_accuracy"], "-o", color="black", markersize=3, label="whole (val)")
    right.plot(epochs, history["whole_accuracy"], "--", color="black", alpha=0.6, label="whole (train)")
    if "val_teacher_whole_accuracy" in history:  # A Mean Teacher run: its EMA teacher too.
        right.plot(
            epochs, history["val_teacher_whole_accuracy"], "-s", color="C4", markersize=3, label="whole (val, teacher)"
        )
    right.set(ylabel="whole-CAPTCHA accuracy", title="Whole CAPTCHA and loss")
    loss_axis = right.twinx()
    loss_axis.plot(epochs, history["loss"], ":", color="C3", label="loss (train)")
    loss_axis.plot(epochs, history["val_loss"], "-.", color="C3", label="loss (val)")
    loss_axis.set_ylabel("loss", color="C3")
    loss_axis.set_ylim(bottom=0)
    for axis in (left, right):
        accuracy_axes(axis, epochs)
    legend_below(left, *left.get_legend_handles_labels(), columns=length)
    handles = right.get_legend_handles_labels()[0] + loss_axis.get_legend_handles_labels()[0]
    legend_below(right, handles, [handle.get_label() for handle in handles], columns=3)
    if title:
        figure.suptitle(title)
    return save_figure(figure, path)


def accuracy_axes(axis, epochs: list[int]) -> None:
    """Accuracy from 0 to 1 against whole epochs, half an epoch of margin each side.

    Without the fixed limits a one-epoch run would show an x axis of
    0.96-1.04 and a y axis zoomed onto a single value.
    """
    axis.set(xlabel="epoch", ylim=(0, 1.02))
    if epochs:
        axis.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    # min_n_ticks=1: MaxNLocator drops `integer` when fewer integers than that are in view.
    axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1, steps=[1, 2, 5, 10]))
    axis.grid(alpha=0.3)
    if len(set(epochs)) == 1:  # A line of one point is invisible: mark every point.
        for twin in axis.get_shared_x_axes().get_siblings(axis):  # The axis itself and its twinx.
            for line in twin.get_lines():
                if line.get_marker() in ("None", "", None):
                    line.set_marker("x")


def legend_below(axis, handles, labels, columns: int) -> None:
    """A legend under `axis`, outside the plotting area (the constrained layout makes room for it)."""
    axis.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=columns, fontsize=7, frameon=False
    )


def plot_samples(
    images, labels, path: str | Path, predictions=None, columns: int = 4, title: str = "", captions=None
) -> Path:
    """A grid of images titled with their label (and prediction: green right, red wrong), or with `captions`.

    Args:
        images: Arrays (height, width, 3), uint8 or floats in [0, 1].
        labels: The true text of each image.
        path: The PNG to write.
        predictions: Optional text read from each image.
        columns: Images per row.
        title: Figure title.
        captions: Optional text of each image's title instead (several lines allowed).

    Returns:
        `path` as a `Path`.
    """
    rows = max(1, (len(images) + columns - 1) // columns)
    figure = new_figure(3.2 * columns, 2.1 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= len(images):
            continue
        axis.imshow(images[index])
        if captions is not None:
            axis.set_title(captions[index], fontsize=8, family="monospace")
        elif predictions is None:
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
    return save_figure(figure, path)


def plot_confusion(counts, characters: str, path: str | Path, title: str = "") -> Path:
    """A confusion matrix of single characters, shaded by row rate, with the counts in the cells.

    Args:
        counts: Integer array (classes, classes): true character by row, read
            character by column (`models.metrics.confusion_counts`).
        characters: The alphabet, one character per class.
        path: The PNG to write.
        title: Figure title.

    Returns:
        `path` as a `Path`.

    Raises:
        ValueError: `counts` is not square with one row per character.
    """
    counts = np.asarray(counts)
    classes = len(characters)
    if counts.shape != (classes, classes):
        raise ValueError(
            f"Expected counts of shape ({classes}, {classes}), one row and column per character. "
            f"Received: {counts.shape}"
        )
    size = max(4.5, 0.45 * classes + 1.5)
    figure = new_figure(size, size * 0.9)
    axis = figure.subplots()
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
    return save_figure(figure, path)


def plot_comparison(
    histories: dict[str, dict[str, list[float]]], path: str | Path, length: int, title: str = ""
) -> Path:
    """Validation accuracy against epoch for several models on one plot.

    Solid: whole-CAPTCHA accuracy; dashed, same colour: mean per-position accuracy.

    Args:
        histories: Model name to its `training.history.read_history` columns.
        path: The PNG to write.
        length: Characters per label (for the per-position columns).
        title: Figure title.

    Returns:
        `path` as a `Path`.
    """
    figure = new_figure(8, 5)
    axis = figure.subplots()
    all_epochs = []
    for index, (name, history) in enumerate(histories.items()):
        epochs = [int(epoch) for epoch in history["epoch"]]
        all_epochs += epochs
        mean = [
            sum(history[f"val_digit_{position}_accuracy"][row] for position in range(length)) / length
            for row in range(len(epochs))
        ]
        axis.plot(epochs, history["val_whole_accuracy"], "-o", color=f"C{index}", markersize=3, label=f"{name} whole")
        axis.plot(epochs, mean, "--", color=f"C{index}", alpha=0.7, label=f"{name} per position")
    axis.set(ylabel="validation accuracy", title=title or "Validation accuracy")
    accuracy_axes(axis, all_epochs)
    legend_below(axis, *axis.get_legend_handles_labels(), columns=min(4, 2 * max(1, len(histories))))
    return save_figure(figure, path)
