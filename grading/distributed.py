"""Grading on a Dask cluster: each submission is sent to a worker, graded there in the sandbox, its row sent back.

    DASK_CONFIG=grading/dask.yaml dask scheduler     # on one machine (prints its address)
    DASK_CONFIG=grading/dask.yaml dask worker tcp://HOST:8786 --nthreads 2 --nworkers 1   # on each grading machine
    python grade.py submissions/ --scheduler tcp://HOST:8786

A worker grades exactly as `grade.py` does on one machine (`grading.worker`,
sandboxed training, a process of its own for the model), with the course
folders at the same paths as on the grader's machine (or under
`$CAPTCHA_KIT_COURSE_DIR` there). It decodes its own validation images once
and refuses to grade when they differ from the grader's (by fingerprint),
so every row is scored on the same images. A worker on the grader's own
machine maps the grader's private copy instead (checked against the same
fingerprint), rather than decoding the folder a second time.

A worker that dies mid-grading (the machine lost, the process killed) costs
one retry: the submission is sent again, to whichever worker the scheduler
picks, and marked `worker_lost` if that one dies too. For exactly that, the
scheduler runs with `grading/dask.yaml` (allowed failures 0); otherwise it
first retries up to its default three times itself. The same file turns off
the workers' bookkeeping that would take CPU from the sandboxed trainings.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import io
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from core.alphabet import Alphabet
from grading.course import grading_images, read_private_copy, write_private_copy
from grading.grades import GRADER_ERROR, WORKER_LOST, GradingOptions, failed_row
from grading.sandbox import SandboxUnavailableError, available_cores, check_sandbox

MAX_SUBMISSION_BYTES = 512 * 1024**2  # An archive larger than this is not sent over the network.
MAX_LOG_BYTES = 1024**2  # The end of a worker's log that comes back with the row.
_worker_state = {"lock": threading.Lock(), "images": {}}
MAX_SLOTS = 64  # Concurrent gradings per machine when each run has all CPUs (slots then only separate users).
DASK_CONFIG_FILE = Path(__file__).with_name("dask.yaml")


def dask_settings(path: Path = DASK_CONFIG_FILE) -> dict:
    """The grading cluster's Dask settings as dotted keys, for `dask.config.set` (a `LocalCluster` in-process)."""
    import yaml

    def flatten(tree: dict, prefix: str = "") -> dict:
        settings = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                settings.update(flatten(value, f"{prefix}{key}."))
            else:
                settings[f"{prefix}{key}"] = value
        return settings

    return flatten(yaml.safe_load(path.read_text()))


def pack_submission(folder: Path, limit: int = MAX_SUBMISSION_BYTES) -> bytes:
    """The submission folder as a gzipped tar archive in memory (links kept as links).

    Raises:
        ValueError: The archive would exceed `limit` bytes.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname=".", recursive=True)
    if buffer.tell() > limit:
        raise ValueError(f"{folder.name} packs to {buffer.tell()} bytes; at most {limit} are sent to a worker.")
    return buffer.getvalue()


def unpack_submission(packed: bytes, folder: Path, limit: int = MAX_SUBMISSION_BYTES) -> Path:
    """Extracts a `pack_submission` archive, refusing paths outside `folder`, special files, and bombs.

    The members' sizes are summed from the headers before anything is written,
    so an archive that inflates past `limit` bytes writes nothing.

    Raises:
        ValueError: The archive would unpack to more than `limit` bytes.
    """
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as archive:
        members = archive.getmembers()  # Reads the headers through; the gzip stream is bounded by `packed`.
        total = sum(member.size for member in members)
        if total > limit:
            raise ValueError(f"The submission unpacks to {total} bytes; at most {limit} are accepted.")
        folder.mkdir(parents=True, exist_ok=True)
        archive.extractall(folder, members=members, filter="data")
    return folder


def course_folder(path: str) -> Path:
    """A course folder on this worker: the grader's path, or the same name under $CAPTCHA_KIT_COURSE_DIR."""
    root = os.environ.get("CAPTCHA_KIT_COURSE_DIR")
    return Path(root) / Path(path).name if root else Path(path)


def _worker_images(options: GradingOptions, alphabet: Alphabet, spec: dict):
    """This worker process's private copy of the validation images (folder, fingerprint), made once.

    On the grader's machine that is the grader's own private copy, once its
    contents match the grader's fingerprint; elsewhere the course folder is
    decoded into a copy of the worker's own.
    """
    from data.dataset import load_labelled_folder

    labels_file, strict, grader_copy = spec["labels"], spec["strict"], spec.get("grader_copy") or {}
    corrections = spec.get("corrections")
    folder = course_folder(str(options.data_folders["capts_val"]))
    # The grader's copy lives as long as its grading session: each session's copy is a key of its own.
    key = (str(folder), labels_file, corrections, strict, alphabet.characters, alphabet.length)
    key += (grader_copy.get("folder"),)
    with _worker_state["lock"]:
        if key not in _worker_state["images"] and grader_copy.get("host") == socket.gethostname():
            with contextlib.suppress(OSError, ValueError, KeyError):
                read_private_copy(grader_copy["folder"], expected_sha256=spec["val_sha256"])
                _worker_state["images"][key] = (Path(grader_copy["folder"]), spec["val_sha256"])
        if key not in _worker_state["images"]:
            loaded = load_labelled_folder(
                folder, alphabet, labels_file=labels_file, cache=False, strict=strict, corrections=corrections
            )
            val = grading_images(loaded.images, loaded.codes, loaded.labels)
            private = write_private_copy(val, tempfile.mkdtemp(prefix="captcha-kit-images-"))
            atexit.register(shutil.rmtree, private, ignore_errors=True)  # Kept for the worker's life, no longer.
            _worker_state["images"][key] = (private, val.sha256)
        return _worker_state["images"][key]


@contextlib.contextmanager
def machine_slot(cores_per_run: int | None):
    """A job slot no other grading on this machine holds (its CPUs and sandbox user), for the block.

    Several Dask worker processes, and threads in each, may grade on one
    machine at once; a lock file per slot, held with `flock`, keeps their CPUs
    and users apart whatever their number. The lock ends with its process.
    """
    cores = len(available_cores())
    slots = max(1, cores // cores_per_run) if cores_per_run else MAX_SLOTS
    folder = Path(tempfile.gettempdir()) / "captcha-kit-slots"
    folder.mkdir(mode=0o700, exist_ok=True)
    while True:
        for slot in range(slots):
            handle = open(folder / f"slot{slot}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield slot
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        time.sleep(0.5)  # More gradings than slots: wait for one to end.


def _check_sandbox_once(options: GradingOptions) -> None:
    with _worker_state["lock"]:
        if not _worker_state.get("sandbox_checked"):
            check_sandbox(options.sandbox)
            _worker_state["sandbox_checked"] = True


def grade_remote(name: str, packed: bytes, spec: dict) -> dict:
    """Runs on a Dask worker: grades one packed submission and returns its row and the end of its log."""
    options = GradingOptions.from_json(spec["options"])
    alphabet = Alphabet(*spec["alphabet"])
    options.data_folders = {key: course_folder(str(path)) for key, path in options.data_folders.items()}
    work_root = Path(tempfile.mkdtemp(prefix="captcha-kit-grading-"))
    os.chmod(work_root, 0o711)
    options.logs = work_root / "logs"
    try:
        with machine_slot(options.sandbox.cores_per_run) as slot:
            return _grade_in_slot(name, packed, spec, options, alphabet, slot, work_root)
    finally:
        shutil.rmtree(work_root, ignore_errors=True)


def _grade_in_slot(name, packed, spec, options, alphabet, slot, work_root) -> dict:
    """`grade_remote`'s work once it holds job slot `slot`."""
    from distributed import get_worker

    from grading.worker import grade_in_process

    address = get_worker().address
    if options.sandbox.kind != "none":
        try:
            _check_sandbox_once(options)
        except SandboxUnavailableError as error:
            return {"row": failed_row(name, GRADER_ERROR, f"on {address}: {error}"), "log": ""}
    images, sha256 = _worker_images(options, alphabet, spec)
    if sha256 != spec["val_sha256"]:
        error = (
            f"the validation images on worker {address} differ from the grader's "
            f"(fingerprint {sha256[:12]}, expected {spec['val_sha256'][:12]})"
        )
        return {"row": failed_row(name, GRADER_ERROR, error), "log": ""}
    try:
        submission = unpack_submission(packed, work_root / "submissions" / name)
    except (ValueError, tarfile.TarError) as error:
        return {"row": failed_row(name, GRADER_ERROR, f"cannot unpack it on {address}: {error}"), "log": ""}
    row = grade_in_process(submission, images, alphabet, options, slot, work_root / "work")
    log, text = options.logs / f"{name}.log", ""
    if log.exists():
        with open(log, "rb") as file:
            file.seek(max(0, log.stat().st_size - MAX_LOG_BYTES))
            text = file.read().decode(errors="replace")
    return {"row": {**row, "worker": address}, "log": text}


def grade_on_cluster(
    address,
    submissions,
    alphabet,
    options,
    val_sha256,
    on_row,
    labels=None,
    strict=False,
    images_folder=None,
    corrections=None,
) -> None:
    """Sends each submission to the Dask cluster at `address` and calls `on_row` with each row as it arrives.

    Args:
        address: A scheduler address (`tcp://host:8786`) or a `distributed` cluster object.
        submissions: The submission folders.
        alphabet: The characters and label length.
        options: How to grade (course folders: paths on the workers).
        val_sha256: The grader's fingerprint of the validation images.
        on_row: Called with each finished row.
        labels: The validation labels file, if any.
        strict: Refuse unusable validation images instead of skipping them.
        images_folder: The grader's private copy, which workers on this machine map instead of decoding again.
    """
    from distributed import Client, as_completed
    from distributed.scheduler import KilledWorker

    spec = {
        "options": options.to_json(),
        "alphabet": [alphabet.characters, alphabet.length, alphabet.min_length],
        "val_sha256": val_sha256,
        "labels": labels,
        "corrections": corrections,
        "strict": strict,
        "grader_copy": {"host": socket.gethostname(), "folder": str(images_folder)} if images_folder else None,
    }
    logs = Path(options.logs)
    logs.mkdir(parents=True, exist_ok=True)
    waiting = deque((submission, 1) for submission in submissions)  # (folder, attempt)
    with Client(address, set_as_default=False) as client:
        client.wait_for_workers(1)
        futures = {}
        pending = as_completed(loop=client.loop)

        def feed() -> None:
            # As many tasks as the cluster has threads, one more as each ends, like the local job pool:
            # no submission waits behind a busy worker while another is idle, and the archives are made
            # only when sent.
            capacity = max(1, sum(client.nthreads().values()))
            while waiting and len(futures) < capacity:
                submission, attempt = waiting.popleft()
                try:
                    packed = pack_submission(submission)
                except ValueError as error:
                    on_row(failed_row(submission.name, GRADER_ERROR, str(error)))
                    continue
                future = client.submit(grade_remote, submission.name, packed, spec, pure=False)
                futures[future] = (submission, attempt)
                pending.add(future)

        feed()
        for future in pending:
            submission, attempt = futures.pop(future)
            try:
                result = future.result()
            except KilledWorker:
                if attempt < 2:
                    waiting.appendleft((submission, attempt + 1))
                else:
                    on_row(failed_row(submission.name, WORKER_LOST, "the worker grading it died, twice; not graded"))
                feed()
                continue
            except Exception as error:  # The task failed for a reason of the grader's own.
                on_row(failed_row(submission.name, GRADER_ERROR, f"{type(error).__name__}: {error}"))
                feed()
                continue
            (logs / f"{submission.name}.log").write_text(result["log"])
            on_row(result["row"])
            feed()
