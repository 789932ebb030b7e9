"""Grading one submission, and the grades table: statuses, rows, a CSV that is safe in a spreadsheet, resuming.

Each submission is a folder with a `train.py` that saves `my_model.keras`.
`grade_submission` takes one through every step on its own copy (train in
the sandbox, size-check the model file, load it in safe mode, score it on the
grader's images) and turns whatever goes wrong into a status of its own, so
that one broken submission never stops the others. `grading.schedule` runs
it for a whole class, in parallel and across machines.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from core.alphabet import Alphabet
from core.archive import DEFAULT_LIMITS, ArchiveLimits, OversizedModelError, check_archive
from core.assignment import PASS_THRESHOLD
from core.files import atomic_path
from grading.course import GradingImages
from grading.runner import DEFAULT_TIME_LIMIT, copy_submission, run_training
from grading.sandbox import SANDBOX_USER_BASE, Limits, Sandbox

# Statuses, in the order a submission meets them.
GRADED = "graded"
NO_TRAIN_SCRIPT = "no_train_script"
CRASHED = "crashed"
TIMED_OUT = "timed_out"
MISSING_MODEL = "missing_model"
OVERSIZED_MODEL = "oversized_model"
UNLOADABLE_MODEL = "unloadable_model"
UNSAFE_MODEL = "unsafe_model"
WRONG_INPUT_SHAPE = "wrong_input_shape"
WRONG_OUTPUT_SHAPE = "wrong_output_shape"
PREDICTION_FAILED = "prediction_failed"
WORKER_LOST = "worker_lost"
GRADER_ERROR = "grader_error"
STATUSES = (
    GRADED,
    NO_TRAIN_SCRIPT,
    CRASHED,
    TIMED_OUT,
    MISSING_MODEL,
    OVERSIZED_MODEL,
    UNLOADABLE_MODEL,
    UNSAFE_MODEL,
    WRONG_INPUT_SHAPE,
    WRONG_OUTPUT_SHAPE,
    PREDICTION_FAILED,
    WORKER_LOST,
    GRADER_ERROR,
)
TRAIN_MODES = ("always", "missing", "never")
ERROR_LENGTH = 200  # characters of an error in grades.csv and the summary; the whole text is in the log
SPREADSHEET_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class GradingOptions:
    """How to grade; see `grade.py --help` for each.

    Attributes:
        train: "always" runs train.py, "missing" only when there is no model
            file yet, "never" grades the model file as it is.
        time_limit: Seconds train.py may run.
        data_folders: Name -> course folder given to each submission (read-only).
        model_file: The model file's name inside a submission.
        input_scale: "auto", "unit" or "raw" (see `grading.inputs`).
        input_scales: Per-submission exceptions to `input_scale`, by folder name.
        threshold: Accuracy every digit must reach to pass.
        batch_size: Images per prediction batch.
        python: Interpreter for train.py.
        logs: Folder for each submission's log.
        sandbox: How train.py runs (`grading.sandbox`).
        archive_limits: Size limits of model files.
    """

    train: str = "always"
    time_limit: float = DEFAULT_TIME_LIMIT
    data_folders: dict[str, Path] = field(default_factory=dict)
    model_file: str = "my_model.keras"
    input_scale: str = "auto"
    input_scales: dict[str, str] = field(default_factory=dict)
    threshold: float = PASS_THRESHOLD
    batch_size: int = 256
    python: str = "python3"
    logs: Path = Path("grades_logs")
    sandbox: Sandbox = field(default_factory=Sandbox)
    archive_limits: ArchiveLimits = DEFAULT_LIMITS

    def to_json(self) -> dict:
        """The options as plain JSON values (for grades.json and for grading processes)."""
        return {
            "train": self.train,
            "time_limit": self.time_limit,
            "data_folders": {name: str(folder) for name, folder in self.data_folders.items()},
            "model_file": self.model_file,
            "input_scale": self.input_scale,
            "input_scales": dict(self.input_scales),
            "threshold": self.threshold,
            "batch_size": self.batch_size,
            "python": self.python,
            "logs": str(self.logs),
            "sandbox": {
                "kind": self.sandbox.kind,
                "cores_per_run": self.sandbox.cores_per_run,
                "limits": vars(self.sandbox.limits),
            },
            "archive_limits": vars(self.archive_limits),
        }

    @classmethod
    def from_json(cls, values: dict) -> GradingOptions:
        """The inverse of `to_json`."""
        sandbox = values["sandbox"]
        return cls(
            train=values["train"],
            time_limit=values["time_limit"],
            data_folders={name: Path(path) for name, path in values["data_folders"].items()},
            model_file=values["model_file"],
            input_scale=values["input_scale"],
            input_scales=values["input_scales"],
            threshold=values["threshold"],
            batch_size=values["batch_size"],
            python=values["python"],
            logs=Path(values["logs"]),
            sandbox=Sandbox(sandbox["kind"], Limits(**sandbox["limits"]), sandbox["cores_per_run"]),
            archive_limits=ArchiveLimits(**values["archive_limits"]),
        )


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
        "output_order",
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


def one_line(text: str, limit: int = ERROR_LENGTH) -> str:
    """`text` on one line of at most `limit` characters (whitespace runs folded, an ellipsis where cut)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failed_row(name: str, status: str, error: str, **fields) -> dict:
    """The row of a submission that was not graded."""
    return {"submission": name, "status": status, "verdict": "FAIL", "error": error, **fields}


def grade_submission(
    submission: str | Path,
    val: GradingImages,
    alphabet: Alphabet,
    options: GradingOptions,
    workdir: str | Path | None = None,
    slot: int = 0,
    stage=lambda name: None,
) -> dict:
    """Trains (optionally, on a copy, in the sandbox), checks, loads and scores one submission.

    Never raises for the submission's faults. Errors in the row are whole
    here; `write_grades` and `format_summary` shorten them to one line.

    Args:
        submission: The submission folder (never written).
        val: The grader's images.
        alphabet: The characters and label length.
        options: How to grade.
        workdir: Where its copy goes (default: next to the logs).
        slot: The job slot (CPUs, sandbox user).
        stage: Called with "training", "loading" and "predicting" as the
            submission reaches them, so a process that dies can say where.

    Returns:
        A row of grades.csv: status and, when graded, the accuracies.
    """
    submission = Path(submission)
    row = {"submission": submission.name, "status": "", "verdict": "FAIL", "train_seconds": "", "error": ""}
    model_path = submission / options.model_file
    if options.train == "always" or (options.train == "missing" and not model_path.exists()):
        if not (submission / "train.py").is_file():
            return {**row, "status": NO_TRAIN_SCRIPT, "error": f"no train.py in {submission.name}"}
        workdir = Path(workdir or Path(options.logs) / ".work" / submission.name)
        owner = SANDBOX_USER_BASE + slot if options.sandbox.kind == "bwrap" else None
        copy_submission(submission, workdir, owner)
        model_path = workdir / options.model_file
        before = _modified_time(model_path)
        stage("training")
        run = run_training(
            workdir,
            options.data_folders,
            Path(options.logs) / f"{submission.name}.log",
            time_limit=options.time_limit,
            python=options.python,
            sandbox=options.sandbox,
            slot=slot,
        )
        row["train_seconds"] = round(run.seconds, 1)
        if run.outcome != "finished":
            return {**row, "status": CRASHED if run.outcome == "crashed" else TIMED_OUT, "error": run.error}
        if model_path.exists() and _modified_time(model_path) == before:
            row["error"] = f"train.py did not rewrite {options.model_file}; graded the file that was there"
    if not model_path.is_file() or model_path.is_symlink():
        return {**row, "status": MISSING_MODEL, "error": f"no {options.model_file} in {submission.name}"}
    try:
        check_archive(model_path, options.archive_limits)
    except OversizedModelError as error:
        return {**row, "status": OVERSIZED_MODEL, "error": str(error).replace(str(model_path), options.model_file)}
    except ValueError as error:
        return {**row, "status": UNLOADABLE_MODEL, "error": str(error).replace(str(model_path), options.model_file)}
    stage("loading")
    scored = score_model_file(model_path, val, alphabet, options, submission.name, row["error"], stage)
    # Name the file as the student knows it, not by the grader's private copy.
    return {**row, **scored, "error": scored.get("error", "").replace(str(model_path), options.model_file)}


def score_model_file(
    model_path: Path,
    val: GradingImages,
    alphabet: Alphabet,
    options: GradingOptions,
    name: str,
    note: str = "",
    stage=lambda name: None,
) -> dict:
    """Loads a size-checked model file in safe mode and scores it: the status and figures of its row."""
    from core.quiet import load_keras

    # Here, not at the top: training and the checks before need no TensorFlow. Quietly: the worker's
    # stderr is the submission's log, which should hold the submission's lines and the grader's, not TensorFlow's.
    keras = load_keras()

    from grading.inputs import plan_input
    from models.decoding import decode_codes
    from models.io import UnsafeModelError, load_model
    from models.reader import Reader, add_verdict, evaluate_predictions

    try:
        model = load_model(model_path)
    except UnsafeModelError as error:
        return {"status": UNSAFE_MODEL, "error": str(error)}
    except Exception as error:  # Whatever a foreign file makes Keras raise.
        return {"status": UNLOADABLE_MODEL, "error": str(error)}
    try:
        plan = plan_input(model, options.input_scales.get(name, options.input_scale))
    except ValueError as error:
        return {"status": WRONG_INPUT_SHAPE, "error": str(error)}
    row = {"preprocessing": plan.describe(val.images.shape[1:3])}
    try:
        reader = Reader(model, alphabet, transform=plan.apply)
    except ValueError as error:  # A kit model that records another alphabet than the course's.
        return {**row, "status": WRONG_OUTPUT_SHAPE, "error": str(error)}
    stage("predicting")
    try:
        outputs = reader.scores(val.images[:2])
    except Exception as error:  # A student's model may fail in any way.
        return {**row, "status": PREDICTION_FAILED, "error": f"{type(error).__name__}: {error}"}
    row["output_order"] = output_order(model, outputs)
    try:
        decode_codes(outputs, alphabet, reader.kind)
    except ValueError as error:
        return {**row, "status": WRONG_OUTPUT_SHAPE, "error": str(error)}
    try:
        predicted = reader.codes(val.images, options.batch_size)
    except Exception as error:  # A student's model may fail in any way.
        return {**row, "status": PREDICTION_FAILED, "error": f"{type(error).__name__}: {error}"}
    result = add_verdict(evaluate_predictions(val.codes, predicted), options.threshold)
    for position, accuracy in enumerate(result["position_accuracies"]):
        row[f"digit_{position}_accuracy"] = round(accuracy, 4)
    keras.backend.clear_session()
    return {
        **row,
        "status": GRADED,
        "mean_accuracy": round(result["mean_accuracy"], 4),
        "whole_accuracy": round(result["whole_accuracy"], 4),
        "verdict": "PASS" if result["passed"] else "FAIL",
        "error": note,
    }


def output_order(model, outputs) -> str:
    """The order the model's outputs are read in: its own saved order (dict keys or output layers)."""
    if isinstance(outputs, dict):
        return ", ".join(str(key) for key in outputs)
    if isinstance(outputs, (list, tuple)) and len(outputs) > 1:
        return ", ".join(str(name) for name in model.output_names)  # The output layers, in the model's list order.
    return "single output"


def escape_cell(value) -> str | float | int:
    """A cell a spreadsheet shows as text, never runs as a formula (OWASP's CSV injection advice).

    Text starting with =, +, -, @, a tab or a carriage return gets a leading
    apostrophe; so does text already starting with one, so that
    `unescape_cell` undoes exactly this. Numbers are left as they are.
    """
    if not isinstance(value, str):
        return value
    if value.startswith((*SPREADSHEET_TRIGGERS, "'")):
        return "'" + value
    return value


def unescape_cell(value: str) -> str:
    """The inverse of `escape_cell` for a cell read back from the CSV."""
    return value[1:] if value.startswith("'") else value


def csv_row(row: dict) -> dict:
    """A row as written: errors on one short line, text cells escaped, float noise rounded away."""
    cells = {}
    for key, value in row.items():
        if key == "error":
            value = one_line(value)
        if isinstance(value, float) and math.isfinite(value):
            value = round(value, 4)
        cells[key] = escape_cell(value)
    return cells


def write_grades(rows: list[dict], path: str | Path, length: int) -> Path:
    """Writes the rows to a CSV file atomically, sorted by submission (missing fields left empty)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=csv_columns(length), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(csv_row(row) for row in sorted(rows, key=lambda row: row["submission"]))
        file.flush()
        os.fsync(file.fileno())
    return path


def read_grades(path: str | Path) -> list[dict]:
    """The rows of an existing grades.csv (text cells unescaped, numbers as numbers); [] when absent."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as file:
        for cells in csv.DictReader(file):
            row = {}
            for key, value in cells.items():
                if value is None:
                    continue
                try:
                    row[key] = (
                        float(value) if key.endswith(("_accuracy", "_seconds")) and value else unescape_cell(value)
                    )
                except ValueError:
                    row[key] = unescape_cell(value)
            if row.get("submission") and row.get("status") in STATUSES:
                rows.append(row)
    return rows


def write_json(values: dict, path: str | Path) -> Path:
    """Writes a JSON file atomically (its folder made if needed)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(values, indent=2) + "\n")
    return Path(path)


def format_row(row: dict) -> str:
    """One line per submission: status, digits, whole accuracy, verdict, or the (shortened) error."""
    if row["status"] != GRADED:
        return f"{row['status']}: {one_line(row.get('error', ''))}"
    positions = sum(key.startswith("digit_") for key in row)
    digits = " ".join(f"{float(row[f'digit_{position}_accuracy']):.3f}" for position in range(positions))
    line = f"{row['verdict']}  digits {digits}  whole {float(row['whole_accuracy']):.3f}  [{row['preprocessing']}]"
    return line + (f"  note: {one_line(row['error'])}" if row.get("error") else "")


def format_summary(rows: list[dict]) -> str:
    """The printed summary: one line per submission, then the counts."""
    rows = sorted(rows, key=lambda row: row["submission"])
    width = max([len(row["submission"]) for row in rows] + [10])
    lines = [f"{'submission':<{width}}  {'status':<18} {'train s':>8}  result"]
    for row in rows:
        seconds = row.get("train_seconds", "")
        seconds = f"{seconds:.0f}" if isinstance(seconds, float) else str(seconds)
        result = format_row(row).split(": ", 1)[-1] if row["status"] != GRADED else format_row(row)
        name = row["submission"].encode("unicode_escape").decode()  # No terminal control characters.
        lines.append(f"{name:<{width}}  {row['status']:<18} {seconds:>8}  {result}")
    statuses = Counter(row["status"] for row in rows)
    passed = sum(row["verdict"] == "PASS" for row in rows)
    counts = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
    lines.append(f"{len(rows)} submissions: {passed} PASS, {len(rows) - passed} FAIL ({counts})")
    return "\n".join(lines)


def _modified_time(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None
