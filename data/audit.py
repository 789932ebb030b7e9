"""Finds likely label errors in a labelled folder: every image read by a model that never trained on it.

    python -m data.audit ../shared/datasets/henan-4digit/images --labels ../shared/datasets/henan-4digit/labels.txt
    python -m data.audit FOLDER --labels FILE --model fourblock --epochs 10 --folds 5

The folder is cut into `--folds` parts (by `--seed`). For each part a model
is trained as `train.py` trains (`training.run.train`; a tenth of the other
parts validates) on the other parts, and reads the part held out. Without
`--model` each fold trains with `train.py`'s automatic recipe
(`training.auto`), which sizes the batch and the epochs to the fold; a named
model trains 10 epochs of 32 unless told otherwise, which can be too few:
`crnn_ctc` read 18.5% of cloud-4digit's dotted digits after 6 epochs of a
3,000-image fold, and `fourblock` stays at chance there. An image
whose confident reading differs from its label is a likely label error, and
the most confident disagreements come first. Written to `--output-dir`:

- `candidates.csv`: filename, label, reading, confidence, fold of every
  disagreement, most confident first;
- `candidates.png`: a contact sheet of the first `--sheet` of them (image,
  label, reading, confidence), to confirm each by eye;
- `readings.csv`: every image's reading;
- `fold<k>.*`: each fold's model, split, history and readings. An
  interrupted audit run again with the same `--output-dir` keeps the folds
  it finished.

Write the confirmed errors as `FILENAME WRONG RIGHT` lines (the form of
henan-4digit's `label_errors.txt`); `--label-corrections FILE` applies them
in train.py, evaluate.py and grade.py, and here, where the audit then looks
for the errors that are left.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from core.alphabet import add_alphabet_arguments
from core.files import atomic_path

CANDIDATE_FIELDS = ("filename", "label", "reading", "confidence", "fold")


def fold_parts(filenames: list[str], folds: int, seed: int) -> list[list[str]]:
    """`filenames` dealt into `folds` parts of near-equal size in a random order that `seed` fixes."""
    order = np.random.default_rng(seed).permutation(len(filenames))
    return [sorted(filenames[index] for index in order[part::folds]) for part in range(folds)]


def fold_split(parts: list[list[str]], held_out: int, seed: int) -> dict[str, list[str]]:
    """The split of fold `held_out`: the other parts train (a tenth of them validates), that part is read."""
    rest = [name for index, part in enumerate(parts) if index != held_out for name in part]
    rest = [rest[index] for index in np.random.default_rng([seed, held_out]).permutation(len(rest))]
    validation = max(1, len(rest) // 10)
    return {"train": sorted(rest[validation:]), "val": sorted(rest[:validation]), "test": parts[held_out]}


def rank_candidates(readings: list[dict], min_confidence: float) -> list[dict]:
    """The readings that differ from their label with at least `min_confidence`, most confident first."""
    wrong = [row for row in readings if row["reading"] != row["label"] and row["confidence"] >= min_confidence]
    return sorted(wrong, key=lambda row: (-row["confidence"], row["filename"]))


def write_rows(path: Path, rows: list[dict]) -> Path:
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=CANDIDATE_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return [
            {**row, "confidence": float(row["confidence"]), "fold": int(row["fold"])} for row in csv.DictReader(file)
        ]


def audit(args, alphabet) -> dict:
    """Trains and reads every fold (keeping finished ones), ranks the disagreements, writes the files."""
    from core.figures import plot_samples
    from data.dataset import load_labelled_folder
    from data.split import select, write_split
    from models.reader import load_reader
    from training.auto import ALPHABET_FIELDS, automatic_fields
    from training.recipe import Recipe
    from training.run import train

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    everything = load_labelled_folder(
        args.folder, alphabet, labels_file=args.labels, strict=False, corrections=args.label_corrections
    )
    if len(everything) < 2 * args.folds:
        raise ValueError(
            f"{args.folder} has {len(everything)} usable images; --folds {args.folds} needs at least 2 each."
        )
    parts = fold_parts(everything.filenames, args.folds, args.seed)
    given = {name: getattr(args, name) for name in ("model", "epochs", "batch_size") if getattr(args, name)}
    if args.model_options:
        given["model_options"] = args.model_options
    if args.model:  # A named model trains as told, for 10 epochs of 32 unless told otherwise.
        given = {"epochs": 10, "batch_size": 32, **given}
    readings, models_used = [], set()
    for fold in range(args.folds):
        fold_readings = output / f"fold{fold}.readings.csv"
        if fold_readings.is_file():
            print(f"Fold {fold + 1}/{args.folds}: read before ({fold_readings})", flush=True)
            readings += read_rows(fold_readings)
            if (output / f"fold{fold}.json").is_file():
                models_used.add(json.loads((output / f"fold{fold}.json").read_text())["options"]["model"])
            continue
        split_path = write_split(output / f"fold{fold}.split.csv", fold_split(parts, fold, args.seed))
        recipe = Recipe(
            data=str(args.folder), labels=args.labels, split_file=str(split_path), skip_bad=True,
            label_corrections=args.label_corrections, seed=args.seed + fold,
            output=str(output / f"fold{fold}.keras"), alphabet=alphabet.characters, length=alphabet.length,
            min_length=alphabet.min_length, **given, automatic=automatic_fields(set(given) | set(ALPHABET_FIELDS)),
        )  # fmt: skip
        print(f"Fold {fold + 1}/{args.folds}: training on {len(everything) - len(parts[fold]):,} images", flush=True)
        models_used.add(train(recipe, force=True, quiet=True)["options"]["model"])
        held_out = select(everything, parts[fold])
        reader = load_reader(recipe.output)
        rows = [
            {"filename": name, "label": label, "reading": reading.text,
             "confidence": round(reading.confidence, 4), "fold": fold}
            for name, label, reading in zip(held_out.filenames, held_out.labels, reader.read(held_out.images, 256))
        ]  # fmt: skip
        write_rows(fold_readings, rows)
        readings += rows
    readings.sort(key=lambda row: row["filename"])
    candidates = rank_candidates(readings, args.min_confidence)
    write_rows(output / "readings.csv", readings)
    write_rows(output / "candidates.csv", candidates)
    shown = candidates[: args.sheet]
    position = {name: index for index, name in enumerate(everything.filenames)}
    images = {row["filename"]: everything.images[position[row["filename"]]] for row in shown}
    plot_samples(
        [images[row["filename"]] for row in shown], [row["label"] for row in shown], output / "candidates.png",
        columns=6, title=f"{len(shown)} most confident disagreements with the labels: confirm each by eye",
        captions=[f"{row['filename']}\nlabel {row['label']}  read {row['reading']}  {row['confidence']:.0%}"
                  for row in shown],
    )  # fmt: skip
    agreeing = sum(row["reading"] == row["label"] for row in readings)
    summary = {
        "folder": str(args.folder),
        "images": len(readings),
        "folds": args.folds,
        "model": ", ".join(sorted(models_used)) or args.model,
        "agreeing": agreeing,
        "candidates": len(candidates),
        "min_confidence": args.min_confidence,
        "candidates_file": str(output / "candidates.csv"),
        "sheet_file": str(output / "candidates.png"),
    }
    with atomic_path(output / "audit.json") as temporary:
        temporary.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{agreeing:,} of {len(readings):,} images read as labelled ({agreeing / len(readings):.2%}); "
        f"{len(candidates):,} confident disagreements (>= {args.min_confidence:.0%}) in {output / 'candidates.csv'}, "
        f"the first {len(shown)} in {output / 'candidates.png'}."
    )
    return summary


def labels_alphabet(args):
    """The audit's alphabet: the options given, and the rest read from the folder's labels as `train.py` reads them
    (`training.auto.read_alphabet`), saying so."""
    from training.auto import ALPHABET_FIELDS, read_alphabet
    from training.recipe import Recipe

    given = {name: getattr(args, name) for name in ALPHABET_FIELDS if getattr(args, name) is not None}
    recipe = Recipe(
        data=str(args.folder), labels=args.labels, label_corrections=args.label_corrections, **given,
        automatic=[name for name in ALPHABET_FIELDS if name not in given],
    )  # fmt: skip
    recipe, read = read_alphabet(recipe)
    if read:
        print(read, flush=True)
    return recipe.alphabet_spec


def main(argv=None) -> dict:
    """Runs the audit; returns its summary (also written to `audit.json`)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="folder of labelled images")
    parser.add_argument("--labels", default=None, help="optional 'FILENAME LABEL' file")
    parser.add_argument("--label-corrections", default=None, help="'FILENAME WRONG RIGHT' corrections already made")
    parser.add_argument("--output-dir", default="audit", help="where the files go (default: %(default)s)")
    parser.add_argument("--model", default=None, help="registered model (default: train.py's automatic recipe)")
    parser.add_argument("--model-options", type=json.loads, default={}, help="its builder's options, as JSON")
    parser.add_argument("--folds", type=int, default=5, help="parts, one model each (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None, help="of each model (default: 10 with --model)")
    parser.add_argument("--batch-size", type=int, default=None, help="(default: 32 with --model)")
    parser.add_argument("--min-confidence", type=float, default=0.5, help="of a candidate (default: %(default)s)")
    parser.add_argument("--sheet", type=int, default=60, help="candidates on the contact sheet (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="of the parts and the training (default: %(default)s)")
    add_alphabet_arguments(parser)
    args = parser.parse_args(argv)
    try:
        if args.folds < 2:
            raise ValueError(f"--folds must be at least 2. Received: {args.folds}")
        return audit(args, labels_alphabet(args))
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
