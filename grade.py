"""Grades a class: runs every submission's train.py in a sandbox, scores its my_model.keras on capts_val/.

    python grade.py submissions/                          # train each (30 min limit), grade, write grades.csv
    python grade.py submissions/ --jobs 4 --cores 2       # four at once, two CPUs each
    python grade.py submissions/ --scheduler tcp://host:8786   # on a Dask cluster (see grading/distributed.py)
    python grade.py submissions/ --train never            # grade the my_model.keras files already there

Each sub-folder of SUBMISSIONS is one submission. Its train.py runs on a copy
of the folder under bubblewrap: no network, its own processes only (all
ended with it), the system and the course's capts_train/ and capts_val/
read-only, limits on time, memory, file size and processes. The validation
images are decoded into the grader's own copy first, and checked unchanged
at the end. The model file is size-checked, loaded in Keras safe mode (a
Lambda layer's code is refused, never run) in a process of its own, and fed
capts_val/ in the shape, channels and scale it declares. Statuses: graded,
no_train_script, crashed, timed_out, missing_model, oversized_model,
unloadable_model, unsafe_model, wrong_input_shape, wrong_output_shape,
prediction_failed, worker_lost, grader_error. Run again on the same
--output to keep the finished rows and grade the rest (--regrade: all).
"""

from __future__ import annotations

import argparse
import sys

from core.assignment import PASS_THRESHOLD
from grading.grades import TRAIN_MODES
from grading.inputs import SCALES
from grading.runner import DEFAULT_TIME_LIMIT
from grading.sandbox import SANDBOX_KINDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", help="folder holding one sub-folder per submission")
    parser.add_argument("--output", default="grades.csv", help="the grades table; grades.json, grades.html beside it")
    parser.add_argument("--regrade", action="store_true", help="grade every submission again, not only missing rows")
    group = parser.add_argument_group("training")
    group.add_argument(
        "--train",
        choices=TRAIN_MODES,
        default="always",
        help="run each train.py: always, only when the model file is missing, or never (default: %(default)s)",
    )
    group.add_argument(
        "--time-limit", type=float, default=DEFAULT_TIME_LIMIT, help="seconds per train.py (default: %(default)s)"
    )
    group.add_argument("--python", default=sys.executable, help="interpreter for train.py (default: this one)")
    group = parser.add_argument_group("sandbox and machines")
    group.add_argument(
        "--sandbox",
        choices=SANDBOX_KINDS,
        default="bwrap",
        help="bwrap (default), or none: run student code with your own rights (unsafe)",
    )
    group.add_argument("--memory-limit", default="8G", help="memory of each run (default: %(default)s)")
    group.add_argument("--file-size-limit", default="2G", help="largest file a run may write (default: %(default)s)")
    group.add_argument("--process-limit", type=int, default=512, help="processes per run (default: %(default)s)")
    group.add_argument("--cores", type=int, default=None, help="CPUs per run (default: all of them)")
    group.add_argument("--jobs", type=int, default=None, help="submissions at once (default: CPUs / --cores)")
    group.add_argument("--scheduler", default=None, metavar="ADDRESS", help="grade on this Dask scheduler's workers")
    group = parser.add_argument_group("data")
    group.add_argument("--train-dir", default="capts_train", help="course training images (default: %(default)s)")
    group.add_argument("--val-dir", default="capts_val", help="course validation images (default: %(default)s)")
    group.add_argument("--labels", default=None, help="optional 'FILENAME LABEL' file for --val-dir")
    group.add_argument(
        "--label-corrections", default=None, help="optional 'FILENAME WRONG RIGHT' file of --val-dir's label errors"
    )
    group.add_argument("--strict-data", action="store_true", help="stop at an unusable validation image")
    group = parser.add_argument_group("scoring")
    group.add_argument("--model-file", default="my_model.keras", help="model file of each submission")
    group.add_argument("--max-model-size", default="2G", help="largest model file, uncompressed (default: %(default)s)")
    group.add_argument(
        "--input-scale",
        choices=SCALES,
        default="auto",
        help="pixel values fed to the models: auto "
        "(0-255 to a model with a Rescaling or Normalization layer, else [0, 1]), unit or raw",
    )
    group.add_argument(
        "--input-scale-for",
        action="append",
        default=[],
        metavar="SUBMISSION=SCALE",
        help="the scale for one submission (e.g. alice=raw); repeat for others",
    )
    group.add_argument(
        "--threshold", type=float, default=PASS_THRESHOLD, help="accuracy every digit must reach to pass"
    )
    group.add_argument("--batch-size", type=int, default=256, help="images per prediction batch")
    return parser


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    from grading.grades import format_summary
    from grading.sandbox import SandboxUnavailableError
    from grading.session import grade_folder

    if args.sandbox == "none":
        print("warning: --sandbox none: student code runs with your rights, network and files.", file=sys.stderr)
    try:
        result = grade_folder(args, announce=lambda line: print(line, flush=True))
    except (FileNotFoundError, ValueError, SandboxUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"\nInterrupted: {args.output} holds the finished rows; run again to grade the rest.", file=sys.stderr)
        sys.exit(130)
    print()
    print(format_summary(result["rows"]))
    print(
        f"Grades: {result['output']}, summary: {result['report']}, logs: {result['logs']}/ ({result['seconds']:.0f}s)"
    )
    if not result["images_intact"]:
        print("error: the grader's copy of the validation images changed during grading; grades void.", file=sys.stderr)
        sys.exit(1)
    if not result["val_dir_unchanged"]:
        print(f"warning: files in {args.val_dir}/ changed during grading (graded on the copy made before).")
    return result


if __name__ == "__main__":
    main()
