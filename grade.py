"""Grades every submission of a folder: runs its train.py, loads my_model.keras safely, scores it on capts_val/.

    python grade.py submissions/                          # train each (30 min limit), grade, write grades.csv
    python grade.py submissions/ --train never            # grade the my_model.keras files already there
    python grade.py submissions/ --input-scale raw --output results/grades.csv

Each sub-folder of SUBMISSIONS is one submission. Its train.py runs with the
submission as working directory and the course's capts_train/ and capts_val/
linked into it; the model it saves is loaded with Keras safe mode (a Lambda
layer's Python code is refused, never run) and fed capts_val/ in the shape,
channels and scale it declares. grades.csv gets one row per submission:
status, per-digit accuracies, whole-CAPTCHA accuracy, PASS/FAIL, training
seconds, the preprocessing used and the error if any. Statuses: graded,
no_train_script, crashed, timed_out, missing_model, unloadable_model,
unsafe_model, wrong_input_shape, wrong_output_shape, prediction_failed.

train.py is untrusted code and runs unsandboxed: grade inside a container or
as an unprivileged user.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # Keep TensorFlow's start-up chatter out of the report.

from data.alphabet import Alphabet  # noqa: E402
from data.dataset import describe_skipped, load_labelled_folder  # noqa: E402
from grading.grades import (  # noqa: E402
    TRAIN_MODES,
    GradingOptions,
    format_summary,
    grade_all,
    list_submissions,
    write_options,
)
from grading.inputs import SCALES  # noqa: E402
from grading.runner import DEFAULT_TIME_LIMIT  # noqa: E402
from models.evaluation import PASS_THRESHOLD  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", help="folder holding one sub-folder per submission")
    parser.add_argument("--output", default="grades.csv", help="the grades table (default: %(default)s)")
    group = parser.add_argument_group("training")
    group.add_argument(
        "--train",
        choices=TRAIN_MODES,
        default="always",
        help="run each train.py: always (default), only when the model file is missing, or never",
    )
    group.add_argument(
        "--time-limit",
        type=float,
        default=DEFAULT_TIME_LIMIT,
        help="seconds each train.py may run before it is stopped (default: %(default)s)",
    )
    group.add_argument("--python", default=sys.executable, help="interpreter for train.py (default: this one)")
    group = parser.add_argument_group("data")
    group.add_argument("--train-dir", default="capts_train", help="course training images (default: %(default)s)")
    group.add_argument("--val-dir", default="capts_val", help="course validation images (default: %(default)s)")
    group.add_argument("--labels", default=None, help="optional 'FILENAME LABEL' file for --val-dir")
    group.add_argument(
        "--strict-data",
        action="store_true",
        help="stop at the first unusable validation image instead of skipping and counting it",
    )
    group = parser.add_argument_group("scoring")
    group.add_argument("--model-file", default="my_model.keras", help="model file of each submission")
    group.add_argument(
        "--input-scale",
        choices=SCALES,
        default="auto",
        help="pixel values fed to the models: auto (0-255 to a model with a Rescaling or Normalization layer, "
        "else [0, 1]), unit ([0, 1]) or raw (0-255) (default: %(default)s)",
    )
    group.add_argument(
        "--input-scale-for",
        action="append",
        default=[],
        metavar="SUBMISSION=SCALE",
        help="the scale for one submission (e.g. alice=raw), overriding --input-scale; repeat for others",
    )
    group.add_argument(
        "--threshold",
        type=float,
        default=PASS_THRESHOLD,
        help="accuracy every digit must reach to pass (default: %(default)s)",
    )
    group.add_argument("--batch-size", type=int, default=256, help="images per prediction batch")
    return parser


def parse_input_scales(pairs: list[str]) -> dict[str, str]:
    """{submission: scale} from `--input-scale-for NAME=SCALE` values."""
    scales = {}
    for pair in pairs:
        name, _, scale = pair.partition("=")
        if not name or scale not in SCALES:
            sys.exit(f"error: --input-scale-for takes SUBMISSION=SCALE with SCALE one of {SCALES}. Received: {pair}")
        scales[name] = scale
    return scales


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if not 0 <= args.threshold <= 1 or args.time_limit <= 0 or args.batch_size < 1:
        sys.exit("error: --threshold must lie in [0, 1], --time-limit and --batch-size must be positive.")
    output = Path(args.output)
    input_scales = parse_input_scales(args.input_scale_for)
    alphabet = Alphabet()
    try:
        submissions = list_submissions(args.submissions)
        data_folders = {"capts_train": Path(args.train_dir), "capts_val": Path(args.val_dir)}
        if args.train != "never":
            for name, folder in data_folders.items():
                if not folder.is_dir():
                    raise FileNotFoundError(f"Course folder for {name}/ not found: {folder} (--train-dir, --val-dir)")
        val = load_labelled_folder(args.val_dir, alphabet, labels_file=args.labels, strict=args.strict_data)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if val.skipped:
        print(describe_skipped(val, args.val_dir), flush=True)
    print(f"Grading {len(submissions)} submissions on {len(val)} images of {args.val_dir}/", flush=True)

    options = GradingOptions(
        train=args.train,
        time_limit=args.time_limit,
        data_folders={name: folder.resolve() for name, folder in data_folders.items()},
        model_file=args.model_file,
        input_scale=args.input_scale,
        input_scales=input_scales,
        threshold=args.threshold,
        batch_size=args.batch_size,
        python=args.python,
        logs=output.with_name(f"{output.stem}_logs"),
    )
    started = time.time()
    try:
        rows = grade_all(submissions, val, alphabet, options, output)
    except KeyboardInterrupt:
        sys.exit(f"\nInterrupted: {output} holds the submissions graded before the one in progress.")
    write_options(
        options,
        output.with_suffix(".json"),
        {"submissions": str(args.submissions), "val_images": len(val), "skipped_val_images": len(val.skipped)},
    )
    print()
    print(format_summary(rows))
    print(f"Grades: {output}, training logs: {options.logs}/ ({time.time() - started:.0f}s)")
    return {"rows": rows, "output": output, "val_images": len(val), "skipped_val_images": len(val.skipped)}


if __name__ == "__main__":
    main()
