"""Grades a model: per-digit and whole-CAPTCHA accuracy on capts_val/, PASS or FAIL.

    python evaluate.py                         # my_model.keras on capts_val/
    python evaluate.py runs/other.keras --data capts_val --threshold 0.3 --json
    python evaluate.py runs/henan.keras --data ../shared/datasets/henan-4digit/images \
        --labels ../shared/datasets/henan-4digit/labels.txt --split-file runs/henan.split.csv --subset test

The alphabet (characters and length) is read from the model, where
`train.py` records it; `--alphabet` and `--length` are only needed for
models saved before it did. The model is loaded with Keras safe mode on, so a file cannot run code. The
exit status is 0 when every digit position reaches the threshold (PASS), 1
when one does not (FAIL) and 2 when the model or the data cannot be used.
Nothing is written unless `--figures` asks for it; the decoded images are
cached outside the data folder (see `data.dataset`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.alphabet import add_alphabet_arguments, alphabet_from_arguments
from core.assignment import PASS_THRESHOLD
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
        "--split-file", default=None, help="a split written by train.py --data: score only the --subset images"
    )
    parser.add_argument(
        "--subset", default="test", choices=SUBSETS, help="subset of --split-file to score (default: %(default)s)"
    )
    add_alphabet_arguments(parser, purpose="for models that record no alphabet: ")
    parser.add_argument(
        "--threshold",
        type=float,
        default=PASS_THRESHOLD,
        help="accuracy every digit position must reach to pass (default: %(default)s)",
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
    if not 0 <= args.threshold <= 1:
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
        data = load_labelled_folder(args.data, alphabet, labels_file=args.labels, strict=not args.skip_bad)
        if args.split_file:
            data = select(data, read_split(args.split_file)[args.subset])
        predicted = reader.codes(data.images, batch_size=args.batch_size)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    result = add_verdict(evaluate_predictions(data.codes, predicted), args.threshold)
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
        verdict = "PASS" if result["passed"] else "FAIL"
        name = alphabet.position_name
        print(f"{verdict}: every {name} must reach {args.threshold:.0%} ({format_accuracies(result)})")
    if args.figures:  # On stderr with --json, so that standard output stays one JSON object.
        print(f"Figures written: {', '.join(result['figures'])}", file=sys.stderr if args.json else sys.stdout)
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
