"""Helpers shared by the grading tests: made-up submissions, their expected scores, process checks."""

import csv
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from models.io import save_model

COPY_MODEL = 'import shutil\nshutil.copy("prebuilt.keras", "my_model.keras")\n'
CHECK_DATA_THEN_COPY = (
    "import os\n"
    "def count(folder):\n"
    '    return len([name for name in os.listdir(folder) if name.endswith(".png")])\n'
    'print("saw", count("capts_train"), "training images and", count("capts_val"), "validation images")\n' + COPY_MODEL
)
SLOW_MARKER = "captcha-kit-test-slow-child"
SLOW = (
    "import signal, subprocess, sys, time\n"
    f'child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "{SLOW_MARKER}"],'
    " start_new_session=True)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "time.sleep(120)\n"
)


def most_and_least_common(labels):
    """The text of the most common digit at each position, and of the least common."""
    columns = [[label[position] for label in labels] for position in range(4)]
    most = "".join(max("0123456789", key=column.count) for column in columns)
    least = "".join(min("0123456789", key=column.count) for column in columns)
    return most, least


def expected_accuracies(labels, text):
    return [float(np.mean([label[position] == text[position] for label in labels])) for position in range(4)]


def lambda_reader(marker: Path) -> keras.Model:
    """A model whose Lambda layer creates `marker` whenever its Python code runs."""
    # Built from source so that the path is a constant inside the serialized bytecode.
    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")  # noqa: S307
    inputs = keras.Input((144, 256, 3))
    x = keras.layers.Lambda(touch, name="student_lambda")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Reshape((4, 10))(keras.layers.Dense(40)(x))
    return keras.Model(inputs, outputs)


def processes_with(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if marker.encode() in (entry / "cmdline").read_bytes() and state not in ("Z", "X"):
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def make_submission(root: Path, name: str, train_source: str | None, model: keras.Model | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    if train_source is not None:
        (folder / "train.py").write_text(train_source)
    if model is not None:
        save_model(model, folder / "prebuilt.keras")
    return folder


def grade_here(submission, images_folder, alphabet, options, slot, work_root, register=lambda process: None):
    """What a `python -m grading.worker` process does, done in this process instead.

    For tests of what surrounds the worker (the schedule, reading the images, scoring): patched in for
    `grading.schedule.grade_in_process`, it saves the worker's start-up (a TensorFlow import) per submission.
    """
    from grading.course import read_private_copy
    from grading.grades import grade_submission

    return grade_submission(submission, read_private_copy(images_folder), alphabet, options, slot=slot)


def read_grades(path):
    with open(path, newline="") as file:
        return {row["submission"]: row for row in csv.DictReader(file)}


def require_sandbox() -> None:
    """Skips the test where bwrap cannot run, unless CAPTCHA_KIT_REQUIRE_SANDBOX=1 (CI) makes that a failure."""
    from grading.sandbox import Sandbox, SandboxUnavailableError, check_sandbox

    try:
        check_sandbox(Sandbox())
    except SandboxUnavailableError as error:
        if os.environ.get("CAPTCHA_KIT_REQUIRE_SANDBOX") == "1":
            pytest.fail(f"the sandbox is required here: {error}")
        pytest.skip(f"no usable sandbox: {error}")


def folder_digest(folder: Path) -> dict:
    """{relative path: bytes} of every file under `folder` (small test folders only)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "submissions"


def copy_example(name: str, root: Path) -> Path:
    """A copy of examples/submissions/NAME under `root`."""
    return Path(shutil.copytree(EXAMPLES / name, root / name))
