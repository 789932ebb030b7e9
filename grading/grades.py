"""Grading a folder of submissions: train each, load its model safely, score it, write grades.csv.

Each submission is a folder with a `train.py` that saves `my_model.keras`.
`grade_submission` takes one through every step and turns whatever goes
wrong into a status of its own, so that one broken submission never stops
the others; `grade_all` does every folder and rewrites `grades.csv`
(atomically) after each, so that an interrupted grading keeps what it did.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import keras

from data.alphabet import Alphabet
from data.dataset import LabelledImages
from data.files import atomic_path
from grading.inputs import plan_input
from grading.runner import DEFAULT_TIME_LIMIT, run_training
from models.decoding import position_scores
from models.evaluation import PASS_THRESHOLD, add_verdict, evaluate_predictions, predict_codes
from models.io import UnsafeModelError, load_model

# Statuses, in the order a submission meets them.
GRADED = "graded"
NO_TRAIN_SCRIPT = "no_train_script"
CRASHED = "crashed"
TIMED_OUT = "timed_out"
MISSING_MODEL = "missing_model"
UNLOADABLE_MODEL = "unloadable_model"
UNSAFE_MODEL = "unsafe_model"
WRONG_INPUT_SHAPE = "wrong_input_shape"
WRONG_OUTPUT_SHAPE = "wrong_output_shape"
PREDICTION_FAILED = "prediction_failed"
GRADER_ERROR = "grader_error"
STATUSES = (
    GRADED,
    NO_TRAIN_SCRIPT,
    CRASHED,
    TIMED_OUT,
    MISSING_MODEL,
    UNLOADABLE_MODEL,
    UNSAFE_MODEL,
    WRONG_INPUT_SHAPE,
    WRONG_OUTPUT_SHAPE,
    PREDICTION_FAILED,
    GRADER_ERROR,
)
TRAIN_MODES = ("always", "missing", "never")


@dataclass
class GradingOptions:
    """How to grade; see `grade.py --help` for each.

    Attributes:
        train: "always" runs train.py, "missing" only when there is no model
            file yet, "never" grades the model file as it is.
        time_limit: Seconds train.py may run.
        data_folders: Name -> course folder linked into each submission.
        model_file: The model file's name inside a submission.
        input_scale: "auto", "unit" or "raw" (see `grading.inputs`).
        input_scales: Per-submission exceptions to `input_scale`, by folder name.
        threshold: Accuracy every digit must reach to pass.
        batch_size: Images per prediction batch.
        python: Interpreter for train.py.
        logs: Folder for each submission's training log.
    """

    train: str = "always"
    time_limit: float = DEFAULT_TIME_LIMIT
    data_folders: dict[str, Path] = field(default_factory=dict)
    model_file: str = "my_model.keras"
    input_scale: str = "auto"
    input_scales: dict[str, str] = field(default_factory=dict)
    threshold: float = PASS_THRESHOLD
    batch_size: int = 256
    python: str = sys.executable
    logs: Path = Path("grades_logs")


def csv_columns(length: int) -> list[str]:
    """The columns of grades.csv for labels of `length` characters."""
    digits = [f"digit_{position}_accuracy" for position in range(length)]
    return [
        "submission",
        "status",
        *digits,
        "mean_accuracy",
        "whole_accuracy",
        "verdict",
        "train_seconds",
        "preprocessing",
        "error",
    ]


def list_submissions(folder: str | Path) -> list[Path]:
    """The submission folders inside `folder` (every visible sub-folder), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Submissions folder not found: {folder}")
    submissions = sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not submissions:
        raise ValueError(f"No submission folders in {folder}; expected one sub-folder per student with a train.py.")
    return submissions


def grade_submission(submission: str | Path, val: LabelledImages, alphabet: Alphabet, options: GradingOptions) -> dict:
    """Trains (optionally), loads and scores one submission; never raises for the submission's faults.

    Returns:
        A row of grades.csv: status and, when graded, the accuracies.
    """
    submission = Path(submission)
    row = {"submission": submission.name, "status": "", "verdict": "FAIL", "train_seconds": "", "error": ""}
    model_path = submission / options.model_file
    if options.train == "always" or (options.train == "missing" and not model_path.exists()):
        if not (submission / "train.py").is_file():
            return {**row, "status": NO_TRAIN_SCRIPT, "error": f"no train.py in {submission}"}
        before = _modified_time(model_path)
        run = run_training(
            submission,
            options.data_folders,
            Path(options.logs) / f"{submission.name}.log",
            time_limit=options.time_limit,
            python=options.python,
        )
        row["train_seconds"] = round(run.seconds, 1)
        if run.outcome != "finished":
            return {**row, "status": CRASHED if run.outcome == "crashed" else TIMED_OUT, "error": run.error}
        if model_path.exists() and _modified_time(model_path) == before:
            row["error"] = f"train.py did not rewrite {options.model_file}; graded the file that was there"
    if not model_path.is_file():
        return {**row, "status": MISSING_MODEL, "error": f"no {options.model_file} in {submission}"}
    try:
        model = load_model(model_path)
    except UnsafeModelError as error:
        return {**row, "status": UNSAFE_MODEL, "error": str(error)}
    except Exception as error:  # Whatever a foreign file makes Keras raise.
        return {**row, "status": UNLOADABLE_MODEL, "error": str(error)}
    try:
        plan = plan_input(model, options.input_scales.get(submission.name, options.input_scale))
    except ValueError as error:
        return {**row, "status": WRONG_INPUT_SHAPE, "error": str(error)}
    row["preprocessing"] = plan.describe(val.images.shape[1:3])
    try:
        outputs = model.predict_on_batch(plan.apply(val.images[:2]))
    except Exception as error:  # A student's model may fail in any way.
        return {**row, "status": PREDICTION_FAILED, "error": f"{type(error).__name__}: {error}"[:500]}
    try:
        position_scores(outputs, alphabet)
    except ValueError as error:
        return {**row, "status": WRONG_OUTPUT_SHAPE, "error": str(error)}
    try:
        predicted = predict_codes(model, val.images, alphabet, options.batch_size, transform=plan.apply)
    except Exception as error:  # A student's model may fail in any way.
        return {**row, "status": PREDICTION_FAILED, "error": f"{type(error).__name__}: {error}"[:500]}
    result = add_verdict(evaluate_predictions(val.codes, predicted), options.threshold)
    for position, accuracy in enumerate(result["position_accuracies"]):
        row[f"digit_{position}_accuracy"] = round(accuracy, 4)
    row.update(
        status=GRADED,
        mean_accuracy=round(result["mean_accuracy"], 4),
        whole_accuracy=round(result["whole_accuracy"], 4),
        verdict="PASS" if result["passed"] else "FAIL",
    )
    return row


def grade_all(
    submissions: list[Path], val: LabelledImages, alphabet: Alphabet, options: GradingOptions, output: str | Path
) -> list[dict]:
    """Grades each submission in turn, rewriting `output` (grades.csv) after each one.

    A fault of the grader itself on one submission is recorded as
    `grader_error` and the others are still graded.
    """
    rows = []
    for submission in submissions:
        print(f"Grading {submission.name} ...", flush=True)
        try:
            row = grade_submission(submission, val, alphabet, options)
        except Exception as error:  # One submission never stops the others.
            row = {"submission": submission.name, "status": GRADER_ERROR, "verdict": "FAIL", "error": repr(error)}
        keras.backend.clear_session()  # Each model is loaded afresh; free the last one's graph and memory.
        rows.append(row)
        print(f"  {format_row(row)}", flush=True)
        write_grades(rows, output, alphabet.length)
    return rows


def write_grades(rows: list[dict], path: str | Path, length: int) -> Path:
    """Writes the rows to a CSV file atomically (missing fields are left empty)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=csv_columns(length), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_options(options: GradingOptions, path: str | Path, extra: dict) -> Path:
    """Writes the resolved grading options beside grades.csv, as JSON."""
    resolved = {key: str(value) if isinstance(value, Path) else value for key, value in vars(options).items()}
    resolved["data_folders"] = {name: str(folder) for name, folder in options.data_folders.items()}
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps({**resolved, **extra}, indent=2) + "\n")
    return Path(path)


def format_row(row: dict) -> str:
    """One line per submission: status, digits, whole accuracy, verdict, or the error."""
    if row["status"] != GRADED:
        return f"{row['status']}: {row.get('error', '')}"
    positions = sum(key.startswith("digit_") for key in row)
    digits = " ".join(f"{row[f'digit_{position}_accuracy']:.3f}" for position in range(positions))
    line = f"{row['verdict']}  digits {digits}  whole {row['whole_accuracy']:.3f}  [{row['preprocessing']}]"
    return line + (f"  note: {row['error']}" if row.get("error") else "")


def format_summary(rows: list[dict]) -> str:
    """The printed summary: one line per submission, then the counts."""
    width = max([len(row["submission"]) for row in rows] + [10])
    lines = [f"{'submission':<{width}}  {'status':<18} {'train s':>8}  result"]
    for row in rows:
        seconds = row.get("train_seconds", "")
        seconds = f"{seconds:.0f}" if isinstance(seconds, float) else str(seconds)
        result = format_row(row).split(": ", 1)[-1] if row["status"] != GRADED else format_row(row)
        lines.append(f"{row['submission']:<{width}}  {row['status']:<18} {seconds:>8}  {result}")
    statuses = Counter(row["status"] for row in rows)
    passed = sum(row["verdict"] == "PASS" for row in rows)
    counts = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
    lines.append(f"{len(rows)} submissions: {passed} PASS, {len(rows) - passed} FAIL ({counts})")
    return "\n".join(lines)


def _modified_time(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None
