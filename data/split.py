"""A fixed, recorded split of one labelled folder into training, validation and test images.

    fractions = parse_fractions("0.8,0.1,0.1")
    split = split_filenames(filenames, fractions, seed=0)   # {"train": [...], "val": [...], "test": [...]}
    write_split("runs/model.split.csv", split)               # one `filename,subset` line per image

The split depends only on the sorted file names, the fractions and the seed,
so the same folder always splits the same way; the written file records it
for evaluation (`evaluate.py --split-file ... --subset test`) and for anyone
who wants to check which images a model never saw.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from core.files import atomic_path
from data.dataset import LabelledImages

SUBSETS = ("train", "val", "test")


def parse_fractions(text: str) -> tuple[float, float, float]:
    """Reads "0.8,0.1,0.1" (train, validation, test; the test part may be left out).

    Raises:
        ValueError: Not two or three non-negative numbers summing to 1 with
            non-zero training and validation parts.
    """
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) == 2:
        values.append(0.0)
    if (
        len(values) != 3
        or any(value < 0 for value in values)
        or abs(sum(values) - 1) > 1e-6
        or not (values[0] > 0 and values[1] > 0)
    ):
        raise ValueError(
            "`split` must be 'TRAIN,VAL[,TEST]' fractions, non-negative, summing to 1, with TRAIN and VAL "
            f"above zero, e.g. '0.8,0.1,0.1'. Received: split={text!r}"
        )
    return tuple(values)


def split_filenames(filenames, fractions, seed: int = 0) -> dict[str, list[str]]:
    """Assigns each file name to train, val or test; the same arguments always give the same split.

    Args:
        filenames: The images' file names (any order; they are sorted first).
        fractions: (train, val, test) fractions from `parse_fractions`.
        seed: Seeds the shuffle.

    Returns:
        A dict from subset name to its sorted file names.
    """
    names = sorted(filenames)
    order = np.random.default_rng(seed).permutation(len(names))
    val_count = round(len(names) * fractions[1])
    test_count = round(len(names) * fractions[2])
    train_count = len(names) - val_count - test_count
    if min(train_count, val_count) < 1:
        raise ValueError(
            f"Splitting {len(names)} images by {tuple(fractions)} leaves an empty training or validation set."
        )
    bounds = {"train": (0, train_count), "val": (train_count, train_count + val_count)}
    bounds["test"] = (train_count + val_count, len(names))
    return {subset: sorted(names[index] for index in order[start:stop]) for subset, (start, stop) in bounds.items()}


def write_split(path: str | Path, split: dict[str, list[str]]) -> Path:
    """Writes `filename,subset` lines (with a header), atomically."""
    path = Path(path)
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["filename", "subset"])
        for subset in SUBSETS:
            writer.writerows([name, subset] for name in split.get(subset, []))
    return path


def read_split(path: str | Path) -> dict[str, list[str]]:
    """Reads a file written by `write_split`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Split file not found: {path}")
    split = {subset: [] for subset in SUBSETS}
    with open(path, newline="") as file:
        for line_number, row in enumerate(csv.DictReader(file), 2):
            if row.get("subset") not in split or not row.get("filename"):
                raise ValueError(f"{path}:{line_number}: expected 'FILENAME,SUBSET' with a subset of {SUBSETS}.")
            split[row["subset"]].append(row["filename"])
    return split


def select(data: LabelledImages, filenames) -> LabelledImages:
    """The images of `data` whose file names are in `filenames`, in `data`'s order; `data`'s skipped files go with
    them (they are the folder's, to be reported however it is split).

    Raises:
        ValueError: Some names are not images of `data`.
    """
    wanted = set(filenames)
    indices = [index for index, name in enumerate(data.filenames) if name in wanted]
    if len(indices) != len(wanted):
        missing = sorted(wanted - set(data.filenames))
        raise ValueError(f"{len(missing)} images of the split are not in the data (first: {missing[0]}).")
    if not indices:
        return LabelledImages(
            images=data.images[:0], labels=[], codes=data.codes[:0], filenames=[], skipped=list(data.skipped)
        )
    return LabelledImages(
        images=data.images[indices],
        labels=[data.labels[index] for index in indices],
        codes=data.codes[indices],
        filenames=[data.filenames[index] for index in indices],
        skipped=list(data.skipped),
    )


def choose_labelled(data: LabelledImages, count: int, seed: int = 0) -> tuple[LabelledImages, LabelledImages]:
    """Keeps `count` images of `data` as labelled, chosen at random; the others are returned apart.

    The choice depends only on the sorted file names, `count` and `seed`, so
    the supervised and the semi-supervised stage pick the same images.

    Returns:
        (the `count` labelled images, the rest), each in `data`'s order.
    """
    if not 0 < count <= len(data):
        raise ValueError(f"Cannot keep {count} labelled images out of {len(data)}. Received: count={count}")
    names = sorted(data.filenames)
    chosen = {names[index] for index in np.random.default_rng(seed).permutation(len(names))[:count]}
    return select(data, chosen), select(data, set(data.filenames) - chosen)
