"""grade.py over a folder of made-up submissions, one for each way a submission can go right or wrong."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from grading_helpers import (
    CHECK_DATA_THEN_COPY,
    COPY_MODEL,
    SLOW,
    SLOW_MARKER,
    expected_accuracies,
    grade_here,
    lambda_reader,
    make_submission,
    most_and_least_common,
    processes_with,
    read_grades,
    require_sandbox,
)
from PIL import Image

import grade
import grading.schedule as schedule_module
from core.alphabet import Alphabet
from data.dataset import load_labelled_folder
from grading.course import grading_images
from grading.grades import GradingOptions, grade_submission
from grading.inputs import InputPlan, plan_input
from grading.runner import linked_data
from models.io import save_model

# One xdist worker runs every grading test: they share job slots, CPUs and sandbox users.
pytestmark = pytest.mark.xdist_group("grading")


@pytest.fixture
def submissions(tmp_path, captcha_folders, constant_reader):
    """A folder of ten submissions, and what each should get."""
    _, val_dir = captcha_folders
    labels = load_labelled_folder(val_dir, Alphabet()).labels
    most, least = most_and_least_common(labels)
    root = tmp_path / "submissions"
    marker = tmp_path / "lambda_ran"
    # good: four softmax heads, raw 144x256x3 input, scales itself (so it must get 0-255 values).
    make_submission(
        root, "good", CHECK_DATA_THEN_COPY, constant_reader(most, layout="list", raw_text=least, rescaling=True)
    )
    make_submission(root, "four_by_ten", COPY_MODEL, constant_reader(least))
    # The Kaggle post's input: 50x200 grayscale in [0, 1]; fed 0-255 it would read `least`.
    make_submission(root, "grayscale", COPY_MODEL, constant_reader(most, (50, 200, 1), layout="flat", raw_text=least))
    make_submission(root, "crashing", 'raise RuntimeError("student bug")\n')
    make_submission(root, "too_slow", SLOW)
    make_submission(root, "lambda_layer", COPY_MODEL, lambda_reader(marker))
    marker.unlink()  # Building the model ran the lambda once; grading must not run it again.
    make_submission(root, "three_digits", COPY_MODEL, constant_reader(most[:3]))
    make_submission(root, "junk_model", 'open("my_model.keras", "w").write("not a model")\n')
    make_submission(root, "no_model", 'print("trained, but forgot to save")\n')
    make_submission(root, "no_train_script", None)
    return root, labels, most, least, marker


def test_grading_run_over_made_up_submissions(submissions, captcha_folders, tmp_path, capsys, monkeypatch):
    require_sandbox()
    # Each train.py still runs in the sandbox; the models are scored in this process (the worker process, its
    # time bound and its crash handling are the hostile-submission test's and the slow parallel tests').
    monkeypatch.setattr(schedule_module, "grade_in_process", grade_here)
    root, labels, most, least, marker = submissions
    train_dir, val_dir = captcha_folders
    output = tmp_path / "results" / "grades.csv"
    threshold = 0.15  # 12 images, 10 digits: the most common digit is right at least 2/12 times.
    result = grade.main(
        [
            str(root),
            "--train-dir",
            str(train_dir),
            "--val-dir",
            str(val_dir),
            "--output",
            str(output),
            "--time-limit",
            "4",
            "--threshold",
            str(threshold),
            "--jobs",
            "1",
        ]
    )
    printed = capsys.readouterr().out
    grades = read_grades(output)
    assert {name: row["status"] for name, row in grades.items()} == {
        "crashing": "crashed",
        "four_by_ten": "graded",
        "good": "graded",
        "grayscale": "graded",
        "junk_model": "unloadable_model",
        "lambda_layer": "unsafe_model",
        "no_model": "missing_model",
        "no_train_script": "no_train_script",
        "three_digits": "wrong_output_shape",
        "too_slow": "timed_out",
    }
    assert len(result["rows"]) == 10

    for name, text in [("good", most), ("four_by_ten", least), ("grayscale", most)]:
        row = grades[name]
        expected = expected_accuracies(labels, text)
        measured = [float(row[f"digit_{position}_accuracy"]) for position in range(4)]
        np.testing.assert_allclose(measured, expected, atol=1e-4)
        assert float(row["whole_accuracy"]) == pytest.approx(np.mean([label == text for label in labels]), abs=1e-4)
        assert row["verdict"] == ("PASS" if min(expected) >= threshold else "FAIL")
        assert float(row["train_seconds"]) < 4
    assert grades["good"]["verdict"] == "PASS"
    assert "0-255" in grades["good"]["preprocessing"] and "Rescaling" in grades["good"]["preprocessing"]
    assert grades["grayscale"]["preprocessing"].startswith("resize 144x256 to 50x200, grayscale, [0, 1]")

    # Failures: each named, none graded.
    assert "RuntimeError: student bug" in grades["crashing"]["error"]
    assert "time limit" in grades["too_slow"]["error"] and float(grades["too_slow"]["train_seconds"]) >= 4
    assert "Python lambda" in grades["lambda_layer"]["error"]
    assert not marker.exists(), "the Lambda layer's Python code ran during grading"
    assert "Received shape: (2, 3, 10)" in grades["three_digits"]["error"]
    assert "not a Keras model" in grades["junk_model"]["error"]
    assert all(
        grades[name]["verdict"] == "FAIL" and grades[name]["digit_0_accuracy"] == ""
        for name in grades
        if grades[name]["status"] != "graded"
    )

    # The slow run and the process it started in a session of its own, ignoring SIGTERM, were stopped.
    assert processes_with(SLOW_MARKER) == []
    # The course data was there for training, read-only, and the submission folders were never written.
    log = (tmp_path / "results" / "grades_logs" / "good.log").read_text()
    assert "saw 24 training images and 12 validation images" in log
    assert not any(
        (root / name / "capts_train").exists() or (root / name / "my_model.keras").exists() for name in grades
    )
    # Written atomically, with the options and the summary page beside it, and summarised.
    assert sorted(path.name for path in (tmp_path / "results").iterdir()) == [
        "grades.csv",
        "grades.html",
        "grades.json",
        "grades_logs",
    ]
    assert json.loads((tmp_path / "results" / "grades.json").read_text())["time_limit"] == 4
    assert "10 submissions: 2 PASS, 8 FAIL" in printed  # good and grayscale; four_by_ten reads rare digits
    assert "1 timed_out" in printed and "1 unsafe_model" in printed

    # Grading the handed-in files without training, choosing the scales: fed 0-255 values, the grayscale
    # reader reads `least`. (Models trained by the grader stay in its copies; the submissions are never written.)
    # Scored in this process: the worker processes were checked above.
    monkeypatch.setattr(schedule_module, "grade_in_process", grade_here)
    grade.main(
        [str(root), "--val-dir", str(val_dir), "--output", str(output), "--train", "never", "--regrade"]
        + ["--model-file", "prebuilt.keras", "--input-scale", "unit", "--input-scale-for", "grayscale=raw"]
        + ["--jobs", "2"]
    )
    again = read_grades(output)
    measured = [float(again["grayscale"][f"digit_{position}_accuracy"]) for position in range(4)]
    np.testing.assert_allclose(measured, expected_accuracies(labels, least), atol=1e-4)
    assert again["grayscale"]["preprocessing"] == "resize 144x256 to 50x200, grayscale, 0-255"
    assert again["good"]["preprocessing"] == "144x256 as is, RGB, [0, 1]"
    assert again["crashing"]["status"] == "missing_model" and again["no_train_script"]["status"] == "missing_model"
    assert again["good"]["train_seconds"] == ""


def test_grader_refuses_missing_or_empty_folders(tmp_path, captcha_folders, capsys):
    _, val_dir = captcha_folders
    with pytest.raises(SystemExit) as exit_info:
        grade.main([str(tmp_path), "--input-scale-for", "alice=percent"])
    assert exit_info.value.code == 2 and "SUBMISSION=SCALE" in capsys.readouterr().err
    for argv, message in [
        ([str(tmp_path / "nowhere"), "--val-dir", str(val_dir)], "Submissions folder not found"),
        ([str(tmp_path), "--val-dir", str(val_dir)], "No submission folders"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            grade.main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    (tmp_path / "someone").mkdir()
    with pytest.raises(SystemExit):
        grade.main([str(tmp_path), "--val-dir", str(val_dir), "--train-dir", str(tmp_path / "absent")])
    assert "Course folder for capts_train/ not found" in capsys.readouterr().err


def test_bad_validation_images_are_skipped_and_counted(tmp_path, captcha_folders, constant_reader, capsys, monkeypatch):
    monkeypatch.setattr(schedule_module, "grade_in_process", grade_here)  # The grader's reading is under test.
    _, val_dir = captcha_folders
    val = tmp_path / "val"
    val.mkdir()
    for path in sorted(val_dir.glob("*.png"))[:4]:
        (val / path.name).write_bytes(path.read_bytes())
    (val / "1234_broken.png").write_bytes(b"")
    submission = make_submission(tmp_path / "submissions", "kit", None, constant_reader("0000"))
    (submission / "prebuilt.keras").rename(submission / "my_model.keras")
    result = grade.main(
        [
            str(tmp_path / "submissions"),
            "--val-dir",
            str(val),
            "--train",
            "never",
            "--output",
            str(tmp_path / "grades.csv"),
        ]
    )
    assert result["val_images"] == 4 and result["skipped_val_images"] == 1
    assert "Skipped 1 files" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        grade.main(
            [str(tmp_path / "submissions"), "--val-dir", str(val), "--train", "never", "--strict-data"]
            + ["--output", str(tmp_path / "strict.csv")]
        )
    assert "1234_broken.png" in capsys.readouterr().err


def test_linked_data_never_replaces_the_students_own_folder(tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    submission = tmp_path / "student"
    (submission / "capts_train").mkdir(parents=True)
    (submission / "capts_train" / "mine.png").write_bytes(b"x")
    with linked_data(submission, {"capts_train": course, "capts_val": course}) as notes:
        assert (submission / "capts_val").resolve() == course.resolve()
        assert len(notes) == 1 and "capts_train already exists" in notes[0]
    assert (submission / "capts_train" / "mine.png").is_file()
    assert not (submission / "capts_val").exists()


@pytest.mark.parametrize(
    "input_shape, output_shape, size",
    [
        ((50, 200, 1), (3, 50, 200, 1), (50, 200)),
        ((50, 200), (3, 50, 200), (50, 200)),
        ((144, 256, 3), (3, 144, 256, 3), None),
        ((None, None, 3), (3, 144, 256, 3), None),
        ((72, 128, 4), (3, 72, 128, 4), (72, 128)),
    ],
)
def test_input_plans_follow_the_declared_input(input_shape, output_shape, size):
    images = np.random.default_rng(0).integers(0, 256, (3, 144, 256, 3)).astype("uint8")
    inputs = keras.Input(input_shape)
    model = keras.Model(inputs, keras.layers.Flatten()(inputs))
    plan = plan_input(model)
    fed = plan.apply(images)
    assert fed.shape == output_shape and fed.dtype == np.float32
    assert 0 <= fed.min() and fed.max() <= 1 and plan.scale == "unit"
    if size is None:
        assert fed.shape[1:3] == (144, 256)
    model(fed)  # The model accepts what it is fed.
    raw = plan_input(model, scale="raw").apply(images)
    assert raw.max() > 1 and "0-255" in plan_input(model, scale="raw").describe((144, 256))


def test_grayscale_matches_pil_and_resizing_is_bilinear():
    image = np.random.default_rng(1).integers(0, 256, (1, 144, 256, 3)).astype("uint8")
    gray = InputPlan(size=None, channels=1, scale="raw").apply(image)
    np.testing.assert_array_equal(gray[0, :, :, 0], np.asarray(Image.fromarray(image[0]).convert("L")))
    resized = InputPlan(size=(50, 200), channels=3, scale="unit").apply(image)
    expected = np.asarray(Image.fromarray(image[0]).resize((200, 50), Image.BILINEAR)) / 255
    np.testing.assert_allclose(resized[0], expected, atol=1e-6)


def test_input_plan_refuses_what_is_not_an_image():
    vector = keras.Input((40,))
    flat = keras.Model(vector, keras.layers.Dense(2)(vector))
    with pytest.raises(ValueError, match=r"inputs of shape \(None, 40\)"):
        plan_input(flat)
    first, second = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    two = keras.Model([first, second], keras.layers.Add()([first, second]))
    with pytest.raises(ValueError, match="2 inputs"):
        plan_input(two)
    with pytest.raises(ValueError, match="scale"):
        plan_input(flat, scale="percent")


def test_kit_models_get_raw_values():
    import models

    plan = plan_input(models.get_model("shawon_tiny"))
    assert plan.scale == "raw" and "Rescaling" in plan.reason and plan.size == (144, 256)


@pytest.mark.slow
def test_grading_a_real_keras_training_run(tmp_path, captcha_folders):
    """The kit itself handed in as a submission: its train.py trains in the sandbox, and is graded."""
    require_sandbox()
    train_dir, val_dir = captcha_folders
    repository = Path(__file__).resolve().parent.parent
    submission = tmp_path / "submissions" / "kit"
    for name in ("core", "data", "models", "training"):  # train.py's packages
        shutil.copytree(repository / name, submission / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(repository / "train.py", submission / "kit_train.py")
    (submission / "train.py").write_text(
        "import runpy, sys\n"
        'sys.argv = ["train.py", "--train-dir", "capts_train", "--model", "shawon_tiny", "--epochs", "2"]\n'
        'sys.argv += ["--batch-size", "8", "--quiet"]\n'
        'runpy.run_path("kit_train.py", run_name="__main__")\n'
    )
    result = grade.main(
        [str(tmp_path / "submissions"), "--train-dir", str(train_dir), "--val-dir", str(val_dir)]
        + ["--output", str(tmp_path / "grades.csv"), "--time-limit", "300"]
    )
    (row,) = result["rows"]
    assert row["status"] == "graded", row
    assert "Rescaling" in row["preprocessing"] and 0 < row["train_seconds"] < 300
    log = (tmp_path / "grades_logs" / "kit.log").read_text()
    printed = [line for line in log.splitlines() if line.startswith("digits ") or " digits " in line]
    assert printed, log[-2000:]
    figures = [float(value) for value in printed[-1].split("digits", 1)[1].split("|")[0].split()]
    np.testing.assert_allclose([row[f"digit_{position}_accuracy"] for position in range(4)], figures, atol=1e-4)


def test_a_grader_fault_or_ctrl_c_keeps_the_other_grades(tmp_path, captcha_folders, constant_reader, monkeypatch):
    _, val_dir = captcha_folders
    for name in ("ann", "bob", "cy"):
        folder = make_submission(tmp_path / "submissions", name, None)
        save_model(constant_reader("0000"), folder / "my_model.keras")
    grade_one = grade_here  # Scored in this process: the schedule, not the worker, is under test here.
    output = tmp_path / "grades.csv"
    argv = [str(tmp_path / "submissions"), "--val-dir", str(val_dir), "--train", "never", "--output", str(output)]

    def fails_on_bob(submission, *args, **kwargs):
        if submission.name == "bob":
            raise RuntimeError("grader bug")
        return grade_one(submission, *args, **kwargs)

    monkeypatch.setattr(schedule_module, "grade_in_process", fails_on_bob)
    grade.main(argv)
    assert {name: row["status"] for name, row in read_grades(output).items()} == {
        "ann": "graded",
        "bob": "grader_error",
        "cy": "graded",
    }
    assert "grader bug" in read_grades(output)["bob"]["error"]

    def ctrl_c_on_bob(submission, *args, **kwargs):
        if submission.name == "bob":
            raise KeyboardInterrupt
        return grade_one(submission, *args, **kwargs)

    output.unlink()
    monkeypatch.setattr(schedule_module, "grade_in_process", ctrl_c_on_bob)
    with pytest.raises(SystemExit) as exit_info:
        grade.main(argv)
    assert exit_info.value.code == 130
    assert list(read_grades(output)) == ["ann"]


def test_models_that_take_no_image_or_fail_on_one(tmp_path, captcha_folders):
    _, val_dir = captcha_folders
    loaded = load_labelled_folder(val_dir, Alphabet())
    val = grading_images(loaded.images, loaded.codes, loaded.labels)
    options = GradingOptions(train="never")
    vector = keras.Input((40,))
    any_size = keras.Input((None, None, 3))
    wrong_size = keras.layers.Reshape((100,))(any_size)  # only fails once it sees a real image
    for name, model, status, message in [
        ("vector", keras.Model(vector, keras.layers.Reshape((4, 10))(vector)), "wrong_input_shape", "(None, 40)"),
        ("reshape", keras.Model(any_size, keras.layers.Dense(40)(wrong_size)), "prediction_failed", "100"),
    ]:
        (tmp_path / name).mkdir()
        save_model(model, tmp_path / name / "my_model.keras")
        row = grade_submission(tmp_path / name, val, Alphabet(), options)
        assert row["status"] == status and message in row["error"] and row["verdict"] == "FAIL"


def test_kit_models_are_scored_by_the_kind_they_record(tmp_path, captcha_folders):
    import models

    _, val_dir = captcha_folders
    loaded = load_labelled_folder(val_dir, Alphabet())
    val = grading_images(loaded.images, loaded.codes, loaded.labels)
    options = GradingOptions(train="never")
    # A CTC model of the course's alphabet is decoded as CTC scores (classes + 1 per step), not refused.
    ctc = models.get_model("crnn_ctc_tiny", alphabet=Alphabet(), image_size=(144, 256))
    # A kit model trained for another alphabet says so.
    letters = models.get_model("cellnet_tiny", alphabet=Alphabet("abc", 4))
    for name, model in (("ctc", ctc), ("letters", letters)):
        (tmp_path / name).mkdir()
        save_model(model, tmp_path / name / "my_model.keras")
    row = grade_submission(tmp_path / "ctc", val, Alphabet(), options)
    assert row["status"] == "graded" and 0 <= float(row["whole_accuracy"]) <= 1
    row = grade_submission(tmp_path / "letters", val, Alphabet(), options)
    assert row["status"] == "wrong_output_shape" and "reads Alphabet" in row["error"]
