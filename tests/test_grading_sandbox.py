"""What a hostile submission cannot do, model files that cannot be trusted, outputs by name, a safe grades.csv."""

import csv
import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from grading_helpers import (
    COPY_MODEL,
    copy_example,
    expected_accuracies,
    folder_digest,
    grade_here,
    make_submission,
    most_and_least_common,
    processes_with,
    read_grades,
    require_sandbox,
)

import grade
import grading.schedule as schedule_module
from core.alphabet import Alphabet
from core.archive import ArchiveLimits, OversizedModelError, check_archive, read_member
from data.dataset import load_labelled_folder
from grading.grades import csv_row, escape_cell, one_line, unescape_cell, write_grades
from grading.grades import read_grades as read_rows
from grading.sandbox import Limits, Sandbox, cores_for_slot, launch_settings, parse_size
from models.io import load_model, save_model

# One xdist worker runs every grading test: they share job slots, CPUs and sandbox users.
pytestmark = pytest.mark.xdist_group("grading")


HOSTILE_MARKER = "captcha-kit-hostile-daemon"


@pytest.mark.slow  # 15 s: the sandbox's other tests stay in the default run.
def test_a_hostile_submission_is_contained_and_the_next_one_scores_as_alone(tmp_path, captcha_folders, constant_reader):
    require_sandbox()
    train_dir, val_dir = captcha_folders
    labels = load_labelled_folder(val_dir, Alphabet()).labels
    most, _ = most_and_least_common(labels)
    root = tmp_path / "class"
    hostile = copy_example("hostile", root)
    save_model(constant_reader(most), hostile / "prebuilt.keras")
    make_submission(root, "later", COPY_MODEL, constant_reader(most))
    course_before = {"train": folder_digest(train_dir), "val": folder_digest(val_dir)}
    submissions_before = folder_digest(root)
    output = tmp_path / "out" / "grades.csv"
    result = grade.main(
        [str(root), "--train-dir", str(train_dir), "--val-dir", str(val_dir), "--output", str(output)]
        + ["--time-limit", "60", "--memory-limit", "2G", "--file-size-limit", "8M", "--process-limit", "64"]
    )
    log = (tmp_path / "out" / "grades_logs" / "hostile.log").read_text()
    attempts = [line for line in log.splitlines() if line.startswith(("BLOCKED", "ESCAPED"))]
    assert len(attempts) == 18 and not [line for line in attempts if line.startswith("ESCAPED")], attempts
    assert "Read-only file system" in log and "File too large" in log and "MemoryError" in log
    # Nothing it tried to write outside its copy exists, and every process it started is gone.
    for path in (Path("/escaped"), hostile.parent / "escaped", hostile / "escaped", tmp_path / "escaped"):
        assert not path.exists()
    assert processes_with(HOSTILE_MARKER) == []
    # The course folders, the submissions as handed in and the grader's images are unchanged.
    assert {"train": folder_digest(train_dir), "val": folder_digest(val_dir)} == course_before
    assert folder_digest(root) == submissions_before
    assert result["images_intact"] and result["val_dir_unchanged"]
    grades = read_grades(output)
    assert grades["hostile"]["status"] == "graded" and grades["later"]["status"] == "graded"
    measured = [float(grades["later"][f"digit_{position}_accuracy"]) for position in range(4)]
    np.testing.assert_allclose(measured, expected_accuracies(labels, most), atol=1e-4)


def test_oversized_model_files_are_refused_before_parsing(tmp_path, captcha_folders):
    _, val_dir = captcha_folders
    folder = tmp_path / "class" / "bomb"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "my_model.keras", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", b" " * (64 * 1024**2))  # 64 MiB of spaces: about 64 kB on disk
        archive.writestr("metadata.json", b"{}")
    assert (folder / "my_model.keras").stat().st_size < 1024**2
    with pytest.raises(OversizedModelError, match="config.json inflates to more than 16 MiB"):
        load_model(folder / "my_model.keras")
    with pytest.raises(OversizedModelError):
        read_member(folder / "my_model.keras", "config.json", 1024)
    result = grade.main(
        [str(tmp_path / "class"), "--val-dir", str(val_dir), "--train", "never"]
        + ["--output", str(tmp_path / "grades.csv")]
    )
    (row,) = result["rows"]
    assert row["status"] == "oversized_model" and "config.json" in row["error"]


def test_check_archive_counts_real_sizes(tmp_path):
    path = tmp_path / "weights.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", b"{}")
        archive.writestr("model.weights.h5", b"\0" * 3_000_000)
    assert check_archive(path) == {"config.json": 2, "model.weights.h5": 3_000_000}
    with pytest.raises(OversizedModelError, match="model.weights.h5"):
        check_archive(path, ArchiveLimits(member_bytes=2_000_000, total_bytes=10_000_000))
    with pytest.raises(OversizedModelError):
        check_archive(path, ArchiveLimits(total_bytes=2_500_000))
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a Keras model"):
        check_archive(tmp_path / "junk.keras")


def test_dict_outputs_are_read_in_the_models_own_order(tmp_path, captcha_folders, monkeypatch):
    monkeypatch.setattr(schedule_module, "grade_in_process", grade_here)  # Scoring is under test, not the worker.
    _, val_dir = captcha_folders
    labels = load_labelled_folder(val_dir, Alphabet()).labels
    text = "3170"
    inputs = keras.Input((144, 256, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    heads = {}
    for name, digit in zip(("one", "two", "three", "four"), text):
        bias = np.full(10, -10.0, "float32")
        bias[int(digit)] = 5.0
        heads[name] = keras.layers.Dense(
            10, activation="softmax", kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(bias)
        )(pooled)
    folder = tmp_path / "class" / "named_heads"
    folder.mkdir(parents=True)
    keras.Model(inputs, heads).save(folder / "my_model.keras")
    result = grade.main(
        [str(tmp_path / "class"), "--val-dir", str(val_dir), "--train", "never"]
        + ["--output", str(tmp_path / "grades.csv")]
    )
    (row,) = result["rows"]
    assert row["status"] == "graded" and row["output_order"] == "one, two, three, four"
    measured = [row[f"digit_{position}_accuracy"] for position in range(4)]
    np.testing.assert_allclose(measured, expected_accuracies(labels, text), atol=1e-4)


def test_grades_csv_is_safe_in_a_spreadsheet(tmp_path, captcha_folders):
    _, val_dir = captcha_folders
    for name in ('=HYPERLINK("x"),1', "+1", "-2", "@SUM(A1)", "'quoted", "plain"):
        (tmp_path / "class" / name).mkdir(parents=True)
    result = grade.main(
        [str(tmp_path / "class"), "--val-dir", str(val_dir), "--train", "never"]
        + ["--output", str(tmp_path / "grades.csv")]
    )
    with open(tmp_path / "grades.csv", newline="") as file:
        cells = [row["submission"] for row in csv.DictReader(file)]
    assert sorted(cells) == sorted(["'+1", "'-2", '\'=HYPERLINK("x"),1', "'@SUM(A1)", "''quoted", "plain"])
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]
    # Read back exactly, so resuming matches rows to folders.
    assert sorted(row["submission"] for row in read_rows(tmp_path / "grades.csv")) == sorted(
        row["submission"] for row in result["rows"]
    )
    html = (tmp_path / "grades.html").read_text()
    assert "=HYPERLINK(&quot;x&quot;),1" in html and "<script" not in html


def test_errors_are_one_short_line_in_the_csv_and_whole_elsewhere(tmp_path):
    error = "Traceback (most recent call last):\n" + "  File x, line 1\n" * 50 + "ValueError: deep"
    row = {"submission": "tab\tname", "status": "crashed", "verdict": "FAIL", "error": error, "train_seconds": 1.23456}
    cells = csv_row(row)
    assert "\n" not in cells["error"] and len(cells["error"]) <= 200 and cells["train_seconds"] == 1.2346
    assert one_line("a\n  b\tc") == "a b c" and len(one_line("x" * 500)) == 200
    for value in ("=1+2", "\tx", "\rx", "'", "'=", "normal", ""):
        assert unescape_cell(escape_cell(value)) == value
    write_grades([row], tmp_path / "grades.csv", 4)
    (back,) = read_rows(tmp_path / "grades.csv")
    assert back["submission"] == "tab\tname" and back["train_seconds"] == pytest.approx(1.2346)


def test_limits_and_cores_of_each_job_slot(monkeypatch):
    assert parse_size("8G") == 8 * 1024**3 and parse_size("512M") == 512 * 1024**2 and parse_size("100") == 100
    with pytest.raises(ValueError, match="Received: 'lots'"):
        parse_size("lots")
    monkeypatch.setattr("grading.sandbox.available_cores", lambda: [0, 1, 2, 3])
    assert [cores_for_slot(slot, 2) for slot in range(3)] == [[0, 1], [2, 3], [0, 1]]
    assert cores_for_slot(1, None) == [0, 1, 2, 3]
    settings = launch_settings(Sandbox("bwrap", Limits(memory_bytes=1024**3, processes=32), 1), slot=3, cgroup=None)
    assert settings["limits"]["RLIMIT_AS"] == 1024**3 and settings["limits"]["RLIMIT_NPROC"] == 32
    assert settings["cores"] == [3] and settings["user"] == 190003
    bounded = launch_settings(Sandbox("bwrap", Limits(memory_bytes=1024**3), 1), slot=0, cgroup="/sys/fs/cgroup/x")
    assert "RLIMIT_AS" not in bounded["limits"] and bounded["cgroup"] == "/sys/fs/cgroup/x"
    assert "user" not in launch_settings(Sandbox("none"), slot=0, cgroup=None)


def test_a_missing_sandbox_is_refused_with_how_to_fix_it(tmp_path, captcha_folders, monkeypatch, capsys):
    _, val_dir = captcha_folders
    (tmp_path / "class" / "someone").mkdir(parents=True)
    monkeypatch.setattr("grading.sandbox.shutil.which", lambda name: None)
    with pytest.raises(SystemExit) as exit_info:
        grade.main([str(tmp_path / "class"), "--val-dir", str(val_dir), "--train-dir", str(val_dir)])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and "apt-get install bubblewrap" in message and "--sandbox none" in message
    assert message.count("\n") == 1
    result = grade.main(
        [str(tmp_path / "class"), "--val-dir", str(val_dir), "--train-dir", str(val_dir), "--sandbox", "none"]
        + ["--output", str(tmp_path / "grades.csv")]
    )
    assert "--sandbox none" in capsys.readouterr().err and result["rows"][0]["status"] == "no_train_script"
    assert json.loads((tmp_path / "grades.json").read_text())["sandbox"]["kind"] == "none"


def test_a_run_cgroup_gets_its_memory_and_process_limits(tmp_path):
    from grading.sandbox import make_run_cgroup, remove_run_cgroup

    folder = make_run_cgroup(tmp_path, "run0", Limits(memory_bytes=3 * 1024**3, processes=77))
    assert (folder / "memory.max").read_text() == str(3 * 1024**3) and (folder / "pids.max").read_text() == "77"
    for name in ("memory.max", "pids.max"):
        (folder / name).unlink()  # A real cgroup's files vanish with it; here the test removes them.
    remove_run_cgroup(folder)
    assert not folder.exists()


def test_a_grading_process_that_dies_is_named_by_its_stage(tmp_path, captcha_folders, constant_reader, monkeypatch):
    _, val_dir = captcha_folders
    folder = tmp_path / "class" / "crasher"
    folder.mkdir(parents=True)
    save_model(constant_reader("1234"), folder / "my_model.keras")
    # The scoring process is killed as it loads the model, as a model that crashes TensorFlow would.
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "hooks"))
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(
        "import os, signal, grading.grades as grades\n"
        "original = grades.score_model_file\n"
        "def crash(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n"
        "grades.score_model_file = crash\n"
    )
    result = grade.main(
        [str(tmp_path / "class"), "--val-dir", str(val_dir), "--train", "never"]
        + ["--output", str(tmp_path / "grades.csv")]
    )
    (row,) = result["rows"]
    assert row["status"] == "unloadable_model" and "signal 11" in row["error"] and "loading" in row["error"]


def test_a_packed_submission_that_would_inflate_past_the_limit_writes_nothing(tmp_path):
    from grading.distributed import pack_submission, unpack_submission

    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "zeros.bin").write_bytes(b"\0" * 2_000_000)  # packs to a few kB
    packed = pack_submission(tmp_path / "student")
    assert len(packed) < 50_000
    with pytest.raises(ValueError, match="unpacks to 2000"):
        unpack_submission(packed, tmp_path / "out", limit=1_000_000)
    assert not (tmp_path / "out").exists()
    assert (unpack_submission(packed, tmp_path / "ok") / "zeros.bin").stat().st_size == 2_000_000
