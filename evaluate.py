"""Grades a model: per-digit and whole-CAPTCHA accuracy on capts_val/, PASS or FAIL.

    python evaluate.py                         # my_model.keras on capts_val/
    python evaluate.py runs/other.keras --data capts_val --threshold 0.3 --json
    python evaluate.py runs/henan.keras --data ../shared/datasets/henan-4digit/images \
        --labels ../shared/datasets/henan-4digit/labels.txt --split-file runs/henan.split.csv --subset test

The alphabet (characters and length) is read from the model, where
`train.py` records it; `--alphabet` and `--length` are only needed for
models saved before it did. The model is loaded with Keras safe mode on, so a file cannot run code.

The PASS/FAIL verdict is the course's: it applies to the assignment's data
(four digits on 256x144 images), where every digit must reach 30%, and
elsewhere only when `--threshold` asks for it. The exit status is 1 for a
FAIL, 2 when the model or the data cannot be used, and 0 otherwise.
Nothing is written unless `--figures` asks for it; the decoded images are
cached outside the data folder (see `data.dataset`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.alphabet import Alphabet, add_alphabet_arguments, alphabet_from_arguments
from core.assignment import PASS_THRESHOLD
from core.multicolor import IMAGE_SIZE
from core.quiet import load_keras
from data.dataset import describe_skipped, load_labelled_folder
from data.split import SUBSETS, read_split, select

DEFAULT_DATA = "capts_val"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="my_model.keras", help="a .keras file (default: %(default)s)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder of labelled images (default: %(default)s)")
    parser.add_argument("--labels", default=None, help="optional 'FILENAME LABEL' file for --data")
    parser.add_argument(
        "--label-corrections", default=None, help="optional 'FILENAME WRONG RIGHT' file (python -m data.audit)"
    )
    parser.add_argument(
        "--split-file", default=None, help="a split written by train.py --data: score only the --subset images"
    )
    parser.add_argument(
        "--subset", default="test", choices=SUBSETS, help="subset of --split-file to score (default: %(default)s)"
    )
    add_alphabet_arguments(parser, purpose="for models that record no alphabet: ")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"accuracy every position must reach to pass (default: {PASS_THRESHOLD} on the assignment's data; "
        "elsewhere no verdict unless this is given)",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip (and count) images that do not decode, have another size or a bad label, instead of stopping",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="images per prediction batch")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument(
        "--figures",
        default=None,
        metavar="DIR",
        help="also save DIR/confusion.png (character confusions) and DIR/errors.png (misread CAPTCHAs)",
    )
    return parser


def check_figures_folder(folder: Path) -> None:
    """Raises ValueError unless `folder` is, or can be made, a folder: nothing on its way is a file."""
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        raise ValueError(f"--figures {folder}: {existing} is a file, not a folder.")


def check_data_folder(folder: str) -> None:
    """Raises FileNotFoundError for a missing data folder, saying how to make the default one."""
    if not Path(folder).is_dir():
        how = " Draw it with `python -m data.generate` (capts_train/ and capts_val/)." if folder == DEFAULT_DATA else ""
        raise FileNotFoundError(f"Image folder not found: {folder}.{how}")


def main(argv=None) -> dict:
    """Scores the model; returns the result (accuracies, verdict, model, data, skipped files, figures)."""
    args = build_parser().parse_args(argv)
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        print(f"error: --threshold must lie in [0, 1]. Received: {args.threshold}", file=sys.stderr)
        sys.exit(2)
    if args.batch_size < 1:
        print(f"error: --batch-size must be at least 1. Received: {args.batch_size}", file=sys.stderr)
        sys.exit(2)
    try:
        if args.figures:
            check_figures_folder(Path(args.figures))
        load_keras()
        from models.reader import add_verdict, evaluate_predictions, format_accuracies, load_reader, save_figures

        reader = load_reader(args.model, alphabet_from_arguments(args, optional=True))
        alphabet = reader.alphabet
        check_data_folder(args.data)
        data = load_labelled_folder(
            args.data, alphabet, labels_file=args.labels, strict=not args.skip_bad, corrections=args.label_corrections
        )
        if args.split_file:
            data = select(data, read_split(args.split_file)[args.subset])
        predicted = reader.codes(data.images, batch_size=args.batch_size)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    result = evaluate_predictions(data.codes, predicted)
    threshold = args.threshold
    if threshold is None and alphabet == Alphabet() and tuple(data.images.shape[1:3]) == IMAGE_SIZE:
        threshold = PASS_THRESHOLD  # The course's data: the course's bar.
    result = add_verdict(result, threshold) if threshold is not None else {**result, "threshold": None, "passed": None}
    result.update(model=str(args.model), data=str(args.data), skipped=len(data.skipped))
    if data.skipped:
        print(describe_skipped(data, args.data), file=sys.stderr)
    if args.figures:
        try:
            result["figures"] = save_figures(data, predicted, alphabet, Path(args.figures), Path(args.model).name)
        except OSError as error:
            print(f"error: cannot write the figures to {args.figures}: {error.strerror or error}", file=sys.stderr)
            sys.exit(2)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"Model {args.model} on {len(data)} images of {args.data}/")
        for position, accuracy in enumerate(result["position_accuracies"]):
            print(f"  {alphabet.position_name} {position}: {accuracy:.4f}")
        print(f"  mean per {alphabet.position_name}: {result['mean_accuracy']:.4f}")
        print(f"  whole CAPTCHA:  {result['whole_accuracy']:.4f}")
        if threshold is not None:
            verdict = "PASS" if result["passed"] else "FAIL"
            name = alphabet.position_name
            print(f"{verdict}: every {name} must reach {threshold:.0%} ({format_accuracies(result, name)})")
    if args.figures:  # On stderr with --json, so that standard output stays one JSON object.
        print(f"Figures written: {', '.join(result['figures'])}", file=sys.stderr if args.json else sys.stdout)
    return result


if __name__ == "__main__":
    sys.exit(1 if main()["passed"] is False else 0)
