"""Grading a whole class: N submissions at once on this machine, or on a Dask cluster, resumable.

Every submission is graded by a process of its own (`grading.worker`), so
the grader itself never loads a student's model. Locally, `jobs` threads
each start one such process at a time in their own job slot (CPUs, sandbox
user). With a Dask scheduler, each submission is sent to a worker as an
archive and graded there the same way (`grading.distributed`). Either way
every finished row is written to grades.csv at once (atomically), a row is
never written twice, and a run started again on the same output keeps the
rows it finds and grades the rest.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import tempfile
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from core.alphabet import Alphabet
from grading.grades import GRADER_ERROR, GradingOptions, failed_row, format_row, read_grades, write_grades
from grading.worker import grade_in_process


class Collector:
    """The rows of one grading run: each written at once, none twice, with a progress bar and an ETA."""

    def __init__(self, output: Path, length: int, kept: list[dict], total: int, progress: bool = True):
        self.output, self.length = Path(output), length
        self.rows = {row["submission"]: row for row in kept}
        self.kept = set(self.rows)
        self.lock = threading.Lock()
        self.bar = tqdm(total=total, initial=len(kept), unit="submission", disable=not progress, dynamic_ncols=True)

    def add(self, row: dict) -> bool:
        """Records a finished row; False (and nothing written) when that submission already has one."""
        with self.lock:
            if row["submission"] in self.rows:
                return False
            self.rows[row["submission"]] = row
            write_grades(list(self.rows.values()), self.output, self.length)
            self.bar.update(1)
            name = row["submission"].encode("unicode_escape").decode()
            self.bar.write(f"{name}: {format_row(row)}")
            return True

    def close(self) -> list[dict]:
        self.bar.close()
        return sorted(self.rows.values(), key=lambda row: row["submission"])


def kept_rows(output: Path, submissions: list[Path], regrade: bool) -> list[dict]:
    """The rows of an earlier run on `output` to keep (none with `regrade`), for submissions still present."""
    if regrade:
        return []
    names = {submission.name for submission in submissions}
    return [row for row in read_grades(output) if row["submission"] in names]


def grade_class(
    submissions: list[Path],
    images_folder: Path,
    alphabet: Alphabet,
    options: GradingOptions,
    output: Path,
    jobs: int = 1,
    scheduler: str | None = None,
    regrade: bool = False,
    progress: bool = True,
    val_sha256: str = "",
    labels: str | None = None,
    corrections: str | None = None,
    strict: bool = False,
) -> list[dict]:
    """Grades every submission not graded yet and returns all rows, sorted by name.

    Args:
        submissions: The submission folders.
        images_folder: The grader's private copy of the images (`grading.course`).
        alphabet: The characters and label length.
        options: How to grade.
        output: grades.csv, written after every row.
        jobs: Submissions graded at once on this machine.
        scheduler: A Dask scheduler address; grades on its workers instead.
        regrade: Grade every submission again, ignoring the rows in `output`.
        progress: Show the progress bar.
        val_sha256: The images' fingerprint, which every Dask worker's own copy must match.
        labels: The validation labels file (for the Dask workers' own copies).
        corrections: The validation labels' corrections file (likewise).
        strict: Whether unusable validation images were refused (likewise).

    Raises:
        KeyboardInterrupt: After stopping every grading in progress; `output` keeps the finished rows.
    """
    kept = kept_rows(Path(output), submissions, regrade)
    done = {row["submission"] for row in kept}
    pending = [submission for submission in submissions if submission.name not in done]
    collector = Collector(output, alphabet.length, kept, len(submissions), progress)
    if kept:
        collector.bar.write(f"Kept {len(kept)} rows of {output}; grading the other {len(pending)} (--regrade: all).")
    try:
        if scheduler:
            from grading.distributed import grade_on_cluster

            grade_on_cluster(
                scheduler,
                pending,
                alphabet,
                options,
                val_sha256,
                collector.add,
                labels,
                strict,
                images_folder,
                corrections,
            )
        else:
            grade_locally(pending, images_folder, alphabet, options, jobs, collector.add)
    finally:
        rows = collector.close()
    return rows


def grade_locally(submissions, images_folder, alphabet, options, jobs, on_row) -> None:
    """Grades `submissions` on this machine, `jobs` at once, calling `on_row` with each finished row."""
    slots = queue.Queue()
    for slot in range(jobs):
        slots.put(slot)
    running, lock = set(), threading.Lock()
    work_root = Path(tempfile.mkdtemp(prefix="captcha-kit-grading-"))
    os.chmod(work_root, 0o711)  # Others may pass through to their own copy, not list the folder.

    def register(process):
        with lock:
            running.add(process)

    def grade(submission: Path) -> dict:
        slot = slots.get()
        try:
            return grade_in_process(submission, images_folder, alphabet, options, slot, work_root, register)
        except Exception as error:  # A fault of the grader on one submission never stops the others.
            return failed_row(submission.name, GRADER_ERROR, f"{type(error).__name__}: {error}")
        finally:
            shutil.rmtree(work_root / f"slot{slot}", ignore_errors=True)
            slots.put(slot)

    executor = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="grade")
    try:
        futures = {executor.submit(grade, submission): index for index, submission in enumerate(submissions)}
        remaining = set(futures)
        while remaining:
            finished, remaining = wait(remaining, timeout=1.0, return_when=FIRST_COMPLETED)
            stop = None
            for future in sorted(finished, key=futures.get):
                try:
                    row = future.result()
                except BaseException as error:  # Ctrl-C in a job: record the rows that did finish first.
                    stop = stop or error
                    continue
                on_row(row)
            if stop is not None:
                raise stop
    except BaseException:
        for future in futures:
            future.cancel()
        with lock:
            for process in running:
                if process.poll() is not None:
                    continue
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # Its sandbox ends with it (death signal).
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(work_root, ignore_errors=True)
