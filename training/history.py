"""Training logs (Keras CSVLogger files, `*.history.csv`): reading, joining and writing them.

A run trained in stages (`train.py --initial-model`, each stage with its own
log) gets one log and one curve figure from its stage logs:

    python -m training.history reference/stage1.history.csv reference/stage2.history.csv \\
        reference/stage3.history.csv --output reference/reference

writes reference/reference.history.csv and reference/reference.curves.png.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from core.figures import plot_history
from core.files import atomic_path


def read_history(csv_path: str | Path) -> dict[str, list[float]]:
    """The columns of a Keras CSVLogger file, epochs counted from 1.

    `train.py` numbers epochs from 1, as its console does. Logs that Keras's
    own CSVLogger wrote count from 0; a log whose first epoch is 0 is one of
    those and is read one up, so that every figure counts from 1 (a log that
    counts from 1 never holds epoch 0, so the two cannot be confused).

    Args:
        csv_path: The `.history.csv` file.

    Returns:
        Column name to its values as floats, in file order (empty for an empty file).
    """
    with open(csv_path, newline="") as file:
        rows = list(csv.DictReader(file))
    history = {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}
    if history.get("epoch", [None])[0] == 0:
        history["epoch"] = [epoch + 1 for epoch in history["epoch"]]
    return history


def join_histories(histories: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """The logs of consecutive training stages as one log, epochs numbered on from stage to stage (from 1).

    Args:
        histories: `read_history` columns of each stage, in training order.

    Returns:
        One log with every stage's rows.

    Raises:
        ValueError: No stages, or stages that logged different columns.
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
            joined[column] += [offset + index for index in range(1, len(values) + 1)] if column == "epoch" else values
    return joined


def write_history(history: dict[str, list[float]], path: str | Path) -> Path:
    """Writes `read_history`-style columns as a CSV file (atomically), epochs as integers.

    Args:
        history: Column name to values; every column as long as the others.
        path: The `.history.csv` to write.

    Returns:
        `path` as a `Path`.
    """
    path = Path(path)
    columns = list(history)
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for row in zip(*(history[column] for column in columns)):
            writer.writerow(int(value) if column == "epoch" else value for column, value in zip(columns, row))
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.history", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("histories", nargs="+", help="the stages' .history.csv files, in training order")
    parser.add_argument("--output", required=True, help="path prefix of the joined .history.csv and .curves.png")
    parser.add_argument("--length", type=int, default=4, help="characters per label (default: %(default)s)")
    parser.add_argument("--title", default="", help="figure title")
    return parser


def main(argv=None) -> tuple[Path, Path]:
    """Joins the logs of a staged run: writes OUTPUT.history.csv and OUTPUT.curves.png.

    Returns:
        The paths of the joined log and of its curve figure.
    """
    parser = build_parser()
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
