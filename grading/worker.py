"""Grades one submission in a process of its own: `python -m grading.worker SPEC.json`.

Every submission is graded by a fresh process started by the grader (or by a
Dask worker), so that a model file that crashes TensorFlow, leaks memory or
hangs takes down only its own grading. The process reads the grader's
private copy of the images read-only, writes its row to `result` in the spec
(atomically) and the stage it reached to `stage`, so that the grader can say
where a process that died was: dying while loading the model file makes
the row `unloadable_model`, while predicting `prediction_failed`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.alphabet import Alphabet
from core.files import atomic_path
from grading.course import read_private_copy
from grading.grades import (
    GRADER_ERROR,
    PREDICTION_FAILED,
    UNLOADABLE_MODEL,
    GradingOptions,
    failed_row,
    grade_submission,
)
from grading.sandbox import cores_for_slot, launch_command

REPOSITORY = Path(__file__).resolve().parent.parent
DIED_WHILE = {"loading": UNLOADABLE_MODEL, "predicting": PREDICTION_FAILED}
SCORING_TIME_LIMIT = 900  # seconds beyond the training time limit for copying, loading and scoring one model


def grade_in_process(
    submission: Path,
    images_folder: Path,
    alphabet: Alphabet,
    options: GradingOptions,
    slot: int,
    work_root: Path,
    register=lambda process: None,
) -> dict:
    """Grades `submission` in a new worker process and returns its row (never raises for the submission).

    Args:
        submission: The submission folder.
        images_folder: The grader's private copy of the images (`grading.course`).
        alphabet: The characters and label length.
        options: How to grade.
        slot: The job slot (CPUs, sandbox user).
        work_root: A private folder for the copy of the submission and the process's files.
        register: Called with the process once started (the grader stops it on Ctrl-C).
    """
    name = submission.name
    folder = Path(work_root) / f"slot{slot}"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "submission": str(submission),
        "images": str(images_folder),
        "alphabet": [alphabet.characters, alphabet.length, alphabet.min_length],
        "options": options.to_json(),
        "slot": slot,
        "workdir": str(folder / "submission"),
        "result": str(folder / "row.json"),
        "stage": str(folder / "stage.txt"),
    }
    for leftover in (spec["result"], spec["stage"]):
        Path(leftover).unlink(missing_ok=True)
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec))
    log_path = Path(options.logs) / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    started = time.monotonic()
    command = launch_command(
        [sys.executable, "-m", "grading.worker", str(spec_path)], _grader_side(options), slot, None
    )
    with open(log_path, "a") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
        register(process)
        try:
            returncode = process.wait(timeout=options.time_limit + SCORING_TIME_LIMIT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # Its sandbox, if still running, ends with it.
            returncode = process.wait()
    try:
        return json.loads(Path(spec["result"]).read_text())
    except (OSError, ValueError):
        pass
    stage = Path(spec["stage"]).read_text().strip() if Path(spec["stage"]).exists() else "starting"
    how = f"signal {-returncode}" if returncode < 0 else f"status {returncode}"
    error = f"the grading process died ({how}) while {stage}; see {log_path.name}"
    if time.monotonic() - started >= options.time_limit + SCORING_TIME_LIMIT:
        error = f"grading ran past its {options.time_limit + SCORING_TIME_LIMIT:g} s and was stopped while {stage}"
    status = DIED_WHILE.get(stage, GRADER_ERROR)
    return failed_row(
        name, status, error, train_seconds=round(time.monotonic() - started, 1) if stage != "starting" else ""
    )


def _grader_side(options: GradingOptions):
    """Launch settings of the grading process itself: the slot's CPUs, no sandbox user, no limits but core dumps."""
    from grading.sandbox import Limits, Sandbox

    return Sandbox("none", Limits(memory_bytes=None), options.sandbox.cores_per_run)


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[0]).read_text())
    options = GradingOptions.from_json(spec["options"])
    characters, length, min_length = spec["alphabet"]
    val = read_private_copy(spec["images"])
    stage_path = Path(spec["stage"])

    def stage(name: str) -> None:
        stage_path.write_text(name)
        print(f"[grader] {name}", flush=True)

    row = grade_submission(
        spec["submission"],
        val,
        Alphabet(characters, length, min_length),
        options,
        workdir=spec["workdir"],
        slot=spec["slot"],
        stage=stage,
    )
    if row.get("error"):
        print(f"[grader] {row['status']}: {row['error']}", flush=True)  # The whole text; the CSV gets one line.
    print(f"[grader] cores {cores_for_slot(spec['slot'], options.sandbox.cores_per_run)}", flush=True)
    with atomic_path(spec["result"]) as temporary:
        temporary.write_text(json.dumps(row))


if __name__ == "__main__":
    main(sys.argv[1:])
