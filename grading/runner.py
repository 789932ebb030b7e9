"""Running a submission's `train.py` on its own copy of the submission, in the sandbox, with a time limit.

The student's code runs with the copy as working directory, the course's
`capts_train/` and `capts_val/` inside it (mounted read-only by the sandbox,
or linked in with `--sandbox none`), no input, a non-interactive
matplotlib, and its output written to a log file. The original submission
folder is never written: the model is read from the copy. See
`grading.sandbox` for what the code can and cannot reach.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from grading import sandbox as sandboxing

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


def copy_submission(submission: Path, workdir: Path, owner: int | None = None) -> Path:
    """Copies a submission folder to `workdir` (symbolic links copied as links), owned by `owner` if given.

    The sandboxed code writes only to this copy; when the grader is root the
    copy belongs to the unprivileged user the code runs as.
    """
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    shutil.copytree(submission, workdir, symlinks=True)
    if owner is not None and os.geteuid() == 0:
        for folder, folders, files in os.walk(workdir):
            os.lchown(folder, owner, owner)
            for name in folders + files:
                os.lchown(os.path.join(folder, name), owner, owner)
    return workdir


def run_training(
    workdir: str | Path,
    data_folders: dict[str, Path],
    log_path: str | Path,
    time_limit: float = DEFAULT_TIME_LIMIT,
    python: str = sys.executable,
    script: str = "train.py",
    sandbox: sandboxing.Sandbox | None = None,
    slot: int = 0,
) -> TrainingRun:
    """Runs `python train.py` inside `workdir` (a copy of the submission) for at most `time_limit` seconds.

    Args:
        workdir: The submission's copy (the working directory of the run).
        data_folders: Name inside the submission -> course folder to make
            available there, e.g. {"capts_train": Path("/course/capts_train")}.
        log_path: File for the run's standard output and error.
        time_limit: Seconds before the run and every process it started are stopped.
        python: The interpreter to run it with.
        script: The script's name inside the submission.
        sandbox: How to run it (default: bubblewrap with the default limits).
        slot: The job slot (chooses the CPUs and, as root, the user it runs as).

    Returns:
        A `TrainingRun`.
    """
    sandbox = sandbox or sandboxing.Sandbox()
    workdir, log_path = Path(workdir), Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cores = len(sandboxing.cores_for_slot(slot, sandbox.cores_per_run))
    environment = sandboxing.sandbox_environment(cores if sandbox.cores_per_run else None)
    cgroup_parent = sandboxing.find_cgroup(sandbox.limits) if sandbox.kind == "bwrap" else None
    cgroup = None
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(log_path, "a"))
        if sandbox.kind == "bwrap":
            mounts, notes = _course_mounts(workdir, data_folders)
            if cgroup_parent is not None:
                cgroup = sandboxing.make_run_cgroup(cgroup_parent, f"captcha-kit-{os.getpid()}-{slot}", sandbox.limits)
            stage_root = sandboxing.make_stage_root()
            stack.callback(shutil.rmtree, stage_root, ignore_errors=True)
            command = sandboxing.bwrap_command(
                workdir,
                mounts,
                [python, script],
                sandbox,
                slot,
                stage_root,
                sandboxing.python_paths(python),
                str(cgroup) if cgroup else None,
            )
        else:
            notes = stack.enter_context(linked_data(workdir, data_folders))
            command = sandboxing.launch_command([python, script], sandbox, slot)
            environment = {**os.environ, **environment, "PATH": os.environ.get("PATH", environment["PATH"])}
        memory = "cgroup memory.max" if cgroup else "address-space rlimit"
        log.write(
            f"[grader] sandbox: {sandbox.kind}; cores {sandboxing.cores_for_slot(slot, sandbox.cores_per_run)}; "
            f"memory {sandbox.limits.memory_bytes} bytes ({memory}); time limit {time_limit:g} s\n"
        )
        for note in notes:
            log.write(f"[grader] {note}\n")
        log.flush()
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,  # Its own process group, so that everything it started is stopped with it.
        )
        try:
            returncode = process.wait(timeout=time_limit)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            stop_group(process)
            sandboxing.remove_run_cgroup(cgroup)
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


def _course_mounts(workdir: Path, data_folders: dict[str, Path]) -> tuple[dict[str, Path], list[str]]:
    """The course folders to mount read-only in the sandbox, leaving a folder of the student's own in place."""
    mounts, notes = {}, []
    for name, folder in data_folders.items():
        if (workdir / name).exists() or (workdir / name).is_symlink():
            notes.append(f"{name} already exists in the submission; left in place instead of the course's {folder}")
            continue
        mounts[name] = Path(folder)
    return mounts, notes


@contextlib.contextmanager
def linked_data(submission: Path, data_folders: dict[str, Path]):
    """Links each course folder into the submission for the duration of the block (`--sandbox none`).

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
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - 64 * 1024))  # A run may log gigabytes; its end is what counts.
            text = file.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("[grader]")]
    return lines[-1][:limit] if lines else ""


def stop_group(process: subprocess.Popen) -> None:
    """Stops the run's whole process group: politely, then for good.

    In the sandbox, the end of bwrap ends its PID namespace, and with it every
    process the code started, wherever it moved itself.
    """
    for sending, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sending)
        except ProcessLookupError:
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
    process.poll()
