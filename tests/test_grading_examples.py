"""The example class (examples/submissions/) graded as docs/grading.md shows, on a handful of images."""

import shutil

import pytest
from grading_helpers import EXAMPLES, processes_with, read_grades, require_sandbox

import grade

# One xdist worker runs every grading test: they share job slots, CPUs and sandbox users.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]

EXPECTED = {
    "crash": "crashed",
    "good": "graded",
    "hostile": "graded",
    "kaggle_baseline": "graded",
    "lambda_model": "unsafe_model",
    "time_out": "timed_out",
    "wrong_output_shape": "wrong_output_shape",
}


def test_the_example_class_gets_one_status_each(tmp_path, captcha_folders):
    require_sandbox()
    train_dir, val_dir = captcha_folders
    root = shutil.copytree(EXAMPLES, tmp_path / "class")
    output = tmp_path / "grades.csv"
    result = grade.main(
        [str(root), "--train-dir", str(train_dir), "--val-dir", str(val_dir), "--output", str(output)]
        + ["--time-limit", "60", "--jobs", "2", "--cores", "1", "--file-size-limit", "64M"]
    )
    grades = read_grades(output)
    assert {name: row["status"] for name, row in grades.items()} == EXPECTED
    assert sorted(EXPECTED) == sorted(path.name for path in EXAMPLES.iterdir() if path.is_dir())
    logs = tmp_path / "grades_logs"
    assert "ESCAPED" not in (logs / "hostile.log").read_text()
    assert "BLOCKED reach the internet" in (logs / "hostile.log").read_text()
    assert processes_with("captcha-kit-hostile-daemon") == []
    assert "still training" in (logs / "time_out.log").read_text()
    assert "capts_train/labels.csv" in grades["crash"]["error"]
    assert "Python lambda" in grades["lambda_model"]["error"]
    assert grades["good"]["preprocessing"].startswith("144x256 as is, RGB, 0-255")
    assert grades["kaggle_baseline"]["preprocessing"].startswith("resize 144x256 to 50x200, grayscale, [0, 1]")
    assert grades["kaggle_baseline"]["output_order"] == "digit0, digit1, digit2, digit3"
    page = result["report"].read_text()
    assert page.count("<tr>") == 1 + len(EXPECTED) and page.count("data:image/png;base64,") == 4
