"""The semi-supervised CAPTCHA solver's two commands, on its own folder layout, run by the kit's train.py.

    python semi_supervised.py supervised --dataset google --label 700.txt      # its `python main.py ...`
    python semi_supervised.py mean-teacher --dataset google --label 700.txt    # its `python main_mean_teacher.py ...`

The layout is the original's (2594306528/semi-supervised-for-captcha):

    dataset/<site>/train/        labelled pool and unlabelled images
    dataset/<site>/buchong/      more unlabelled images (optional)
    dataset/<site>/test/         test images named <label>.<ext>
    dataset/<site>/label/700.txt one `FILENAME LABEL` line per labelled image of train/

`--dataset` is a site under `--root` (default `dataset`) or a path. Each stage
is the original's recipe, kept in `configs/semi_supervised_supervised.json`
and `configs/semi_supervised_mean_teacher.json`, plus the site's folders: the
first trains `cnn_seq2seq` on the labelled images and saves
`<output-dir>/<site>_<label>.keras`; the second starts student and teacher
from it and trains Mean Teacher, saving `<output-dir>/MT_<site>_<label>.keras`. Unlike the original, a tenth of the
labelled images (`--val-fraction`) is held out to choose the saved epoch,
and the test images are scored once, all of them, with the saved model.

The alphabet is read from the labels as the original does (digits, lowercase
letters, both, and `-`), unless `--alphabet` is given, and so are the label
lengths (`--length` the longest, `--min-length` the shortest: the seq2seq
model reads labels of several lengths); the images of a site must have one
size (`--skip-bad` skips others). Any
other option (`--time-limit 600`, `--consistency-rampup 5`, `--teacher-noise`,
`--model-options ...`) is passed on to train.py; `python train.py --help` lists them.
"""

from __future__ import annotations

import argparse
import string
import sys
from pathlib import Path

import train
from data.labels import read_labels_file

CONFIGS = Path(__file__).resolve().parent / "configs"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("supervised", "mean-teacher"), help="main.py or main_mean_teacher.py")
    parser.add_argument("--dataset", required=True, help="site name under --root, or the site's folder")
    parser.add_argument("--root", default="dataset", help="folder holding the sites (default: %(default)s)")
    parser.add_argument("--label", default="700.txt", help="labels file in <site>/label/ (default: %(default)s)")
    parser.add_argument("--epoch", type=int, default=500, help="training epochs (default: %(default)s)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="labelled images per batch (default: 64 supervised, 32 Mean Teacher, as in the original)",
    )
    parser.add_argument(
        "--secondary-batch-size", type=int, default=64, help="unlabelled images per batch (default: %(default)s)"
    )
    parser.add_argument(
        "--unlabeled-number", type=int, default=5000, help="unlabelled images to use (default: %(default)s)"
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="labelled images held out to choose the saved epoch (default: %(default)s)",
    )
    parser.add_argument("--alphabet", default=None, help="characters of the labels (default: read from the labels)")
    parser.add_argument("--output-dir", default="runs", help="where the models go (default: %(default)s)")
    return parser


def alphabet_of(labels) -> str:
    """The original's vocabulary for these labels: digits, lowercase, both, or both and '-'."""
    text = "".join(labels)
    for characters in (string.digits, string.ascii_lowercase, string.digits + string.ascii_lowercase):
        if set(text) <= set(characters):
            return characters
    if set(text) <= set(string.digits + string.ascii_lowercase + "-"):
        return string.digits + string.ascii_lowercase + "-"
    raise ValueError(f"Labels must use digits, lowercase letters and '-', or pass --alphabet. Received: {text[:40]!r}")


def train_arguments(args, passed_on: list[str]) -> list[str]:
    """The train.py command line of one stage."""
    site = Path(args.dataset) if Path(args.dataset).is_dir() else Path(args.root) / args.dataset
    labels_file = site / "label" / args.label
    labels = list(read_labels_file(labels_file).values())
    lengths = [len(label) for label in labels]
    name = f"{site.name}_{args.label}".replace(".txt", "")
    output_dir = Path(args.output_dir)
    stage1_model = output_dir / f"{name}.keras"
    common = [
        *("--data", str(site / "train"), "--labels", str(labels_file), "--test-dir", str(site / "test")),
        *("--split", f"{1 - args.val_fraction},{args.val_fraction}", "--split-seed", "0"),
        *("--alphabet", args.alphabet or alphabet_of(labels), "--length", str(max(lengths))),
        *("--min-length", str(min(lengths))),
        *("--epochs", str(args.epoch)),
    ]
    if args.stage == "supervised":
        return [
            *("--config", str(CONFIGS / "semi_supervised_supervised.json"), *common),
            *("--batch-size", str(args.batch_size or 64), "--output", str(stage1_model)),
            *passed_on,
        ]
    unlabelled = [site / "train"] + ([site / "buchong"] if (site / "buchong").is_dir() else [])
    return [
        *("--config", str(CONFIGS / "semi_supervised_mean_teacher.json"), *common),
        *("--initial-model", str(stage1_model)),
        *(argument for folder in unlabelled for argument in ("--unlabelled", str(folder))),
        *("--unlabelled-count", str(args.unlabeled_number)),
        *("--labelled-batch-size", str(args.batch_size or 32)),
        *("--unlabelled-batch-size", str(args.secondary_batch_size)),
        *("--output", str(output_dir / f"MT_{name}.keras")),
        *passed_on,
    ]


def main(argv=None) -> dict:
    args, passed_on = build_parser().parse_known_args(argv)
    try:
        arguments = train_arguments(args, passed_on)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"python train.py {' '.join(arguments)}", flush=True)
    return train.main(arguments)


if __name__ == "__main__":
    main()
