"""Running a submission's `train.py` in a subprocess, with the course data and a time limit.

The student's code runs with the submission folder as working directory, the
course's `capts_train/` and `capts_val/` linked into it, no input, a
non-interactive matplotlib, and its output written to a log file. It is
untrusted code: the time limit and the process group stop it, but nothing
sandboxes it, so run the grader in a container or as an unprivileged user.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIME_LIMIT = 30 * 60  # seconds: the assignment's training budget
DATA_FOLDERS = ("capts_train", "capts_val")


@dataclass
class TrainingRun:
    """What happened to one `train.py` run.

    Attributes:
        outcome: "finished", "crashed" or "timed_out".
        seconds: Wall time of the run.
        error: For a crash or time-out, one line saying what happened.
        log: The file holding the run's output.
    """

    outcome: str
    seconds: float
    error: str
    log: Path


def run_training(
    submission: str | Path,
    data_folders: dict[str, Path],
    log_path: str | Path,
    time_limit: float = DEFAULT_TIME_LIMIT,
    python: str = sys.executable,
    script: str = "train.py",
) -> TrainingRun:
    """Runs `python train.py` inside `submission` and waits at most `time_limit` seconds.

    Args:
        submission: The submission folder (the working directory of the run).
        data_folders: Name inside the submission -> course folder to link there,
            e.g. {"capts_train": Path("/course/capts_train")}.
        log_path: File for the run's standard output and error.
        time_limit: Seconds before the run and every process it started are stopped.
        python: The interpreter to run it with.
        script: The script's name inside the submission.

    Returns:
        A `TrainingRun`.
    """
    submission, log_path = Path(submission), Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    with linked_data(submission, data_folders) as notes, open(log_path, "w") as log:
        for note in notes:
            log.write(f"[grader] {note}\n")
        log.flush()
        started = time.monotonic()
        process = subprocess.Popen(
            [python, script],
            cwd=submission,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,  # Its own process group, so that its children are stopped with it.
        )
        try:
            returncode = process.wait(timeout=time_limit)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            _stop_group(process)
        seconds = time.monotonic() - started
    if returncode is None:
        error = f"{script} ran past the {time_limit:g} s time limit and was stopped"
        return TrainingRun("timed_out", seconds, error, log_path)
    if returncode != 0:
        reason = f"{script} exited with status {returncode}"
        if returncode < 0:
            reason = f"{script} was killed by signal {-returncode}"
        last = last_line(log_path)
        return TrainingRun("crashed", seconds, f"{reason}: {last}" if last else reason, log_path)
    return TrainingRun("finished", seconds, "", log_path)


@contextlib.contextmanager
def linked_data(submission: Path, data_folders: dict[str, Path]):
    """Links each course folder into the submission for the duration of the block.

    A name the submission already uses is left alone (nothing of the
    student's is replaced); the block yields notes saying so. Only links this
    function made are removed afterwards.
    """
    made, notes = [], []
    try:
        for name, target in data_folders.items():
            link = submission / name
            target = Path(target).resolve()
            if link.is_symlink() and link.resolve() == target:
                continue
            if link.exists() or link.is_symlink():
                notes.append(f"{name} already exists in the submission; left in place instead of the course's {target}")
                continue
            link.symlink_to(target, target_is_directory=True)
            made.append(link)
        yield notes
    finally:
        for link in made:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()


def last_line(path: Path, limit: int = 300) -> str:
    """The last non-empty line of a text file (a traceback's exception line), shortened to `limit`."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    lines = [line for line in lines if not line.startswith("[grader]")]
    return lines[-1][:limit] if lines else ""


def _stop_group(process: subprocess.Popen) -> None:
    """Stops the run's whole process group: politely, then for good."""
    for sending, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sending)
        except ProcessLookupError:
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
    process.poll()
