"""Kit models load with plain Keras where the kit is not installed; files saved before that still read.

The plain-Keras side runs in a fresh `python -I` (isolated: no current
folder, no PYTHONPATH, no user site) whose working directory is outside the
repository, so nothing of the kit can be imported there.
"""

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import export
import models
from core.alphabet import Alphabet
from models.io import load_model, model_alphabet, save_model
from models.layers import ForegroundMap, foreground_map, has_legacy_layers, is_ctc_model, output_kind
from models.metadata import METADATA_MEMBER, ModelMetadata, model_metadata, read_file_metadata
from models.registry import CUSTOM_LAYER_MODELS

REPOSITORY = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PLAIN_MODELS = [name for name in models.list_models() if name not in CUSTOM_LAYER_MODELS]
# Full-size models built from random weights: the tests check loading, not accuracy, and stay offline.
BUILD_OPTIONS = {"efficientnet_lite0": {"weights": None}, "keras_application": {"weights": None}}

# Loads each model with plain Keras (safe mode, the default) and saves its scores beside it.
PLAIN_SCORER = textwrap.dedent(
    """
    import importlib.util, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    assert importlib.util.find_spec("models") is None, "the kit is importable here"
    import keras
    import numpy as np
    images = np.load(sys.argv[1])
    for path in sys.argv[2:]:
        model = keras.models.load_model(path)
        np.save(path + ".scores.npy", np.asarray(model(images, training=False)))  # one eager call: no tracing
    """
)


def run_without_kit(folder: Path, script: str, *arguments) -> subprocess.CompletedProcess:
    """Runs `script` in `python -I` with `folder` (outside the repository) as working directory."""
    assert REPOSITORY not in folder.resolve().parents
    path = folder / "script.py"
    path.write_text(script)
    return subprocess.run(
        [sys.executable, "-I", str(path), *map(str, arguments)], cwd=folder, capture_output=True, text=True, timeout=600
    )


def check_plain_keras_scores(names, folder: Path, image_size=(144, 256)):
    """Saves each model with the kit, scores it with plain Keras in a subprocess, compares with the kit's scores."""
    images = np.random.default_rng(0).integers(0, 256, (3, *image_size, 3)).astype("float32")
    np.save(folder / "images.npy", images)
    expected = {}
    for name in names:
        model = models.get_model(name, image_size=image_size, **BUILD_OPTIONS.get(name, {}))
        path = save_model(model, folder / f"{name}.keras")
        expected[name] = np.asarray(load_model(path)(images, training=False))
        assert not has_legacy_layers(model), name
    result = run_without_kit(folder, PLAIN_SCORER, folder / "images.npy", *(folder / f"{name}.keras" for name in names))
    assert result.returncode == 0, result.stderr[-3000:]
    for name in names:
        plain = np.load(folder / f"{name}.keras.scores.npy")
        assert np.max(np.abs(plain - expected[name])) <= 1e-5, name


# One tiny model of each family and kind in the default run; every other one with the full-size models.
TINY_SAMPLE = ["cellnet_tiny", "crnn_ctc_tiny", "efficientnet_lite0_tiny"]


@pytest.mark.slow  # 10 s: test_plain_and_kit_models_are_graded keeps a plain-Keras load in the default run.
def test_tiny_models_load_with_plain_keras(tmp_path):
    check_plain_keras_scores(TINY_SAMPLE, tmp_path)


@pytest.mark.slow
def test_other_tiny_models_load_with_plain_keras(tmp_path):
    others = [name for name in PLAIN_MODELS if name.endswith("_tiny") and name not in TINY_SAMPLE]
    check_plain_keras_scores(others, tmp_path)


@pytest.mark.slow
def test_full_size_models_load_with_plain_keras(tmp_path):
    # vgg_notebook alone is a 540 MB file; a few minutes on 2 cores.
    check_plain_keras_scores([name for name in PLAIN_MODELS if not name.endswith("_tiny")], tmp_path)


def test_the_assignment_models_are_plain():
    # The models the assignment uses, their tiny variants, and the CTC reader: no custom layer anywhere.
    for name in ("cellnet", "shawon", "fourblock", "vgg_notebook", "resnet18", "efficientnet_lite0", "crnn_ctc"):
        assert name in PLAIN_MODELS and f"{name}_tiny" in PLAIN_MODELS
    assert set(CUSTOM_LAYER_MODELS) == {"cnn_seq2seq", "cnn_seq2seq_tiny"}


def test_seq2seq_file_without_kit_says_to_import_models(tmp_path):
    model = models.get_model("cnn_seq2seq_tiny", image_size=(32, 64))
    path = save_model(model, tmp_path / "seq2seq.keras")
    script = "import sys, keras\nkeras.models.load_model(sys.argv[1])\n"
    result = run_without_kit(tmp_path, script, path)
    assert result.returncode != 0
    assert "Could not locate class 'AttentionDecoder'" in result.stderr
    assert "`import models` from the kit" in result.stderr
    assert output_kind(load_model(path)) == "seq2seq"  # Through the kit it loads.


def test_metadata_travels_in_memory_and_in_the_file(tmp_path):
    alphabet = Alphabet("abc", 5, 3)
    model = models.get_model("crnn_ctc_tiny", alphabet=alphabet, image_size=(32, 96))
    # Known before saving: get_model records it on the model.
    assert model_alphabet(model) == alphabet and is_ctc_model(model)
    assert isinstance(model.layers[-1], keras.layers.Identity) and model.output_names == ["characters"]
    path = save_model(model, tmp_path / "model.keras")
    with zipfile.ZipFile(path) as archive:
        recorded = json.loads(archive.read(METADATA_MEMBER))
    assert recorded == {"format": 1, "characters": "abc", "length": 5, "min_length": 3, "kind": "ctc"}
    assert read_file_metadata(path) == ModelMetadata("abc", 5, 3, "ctc")
    loaded = load_model(path)
    assert model_alphabet(loaded) == alphabet and output_kind(loaded) == "ctc"
    # Re-saved by plain Keras, the member is gone: read like a foreign model.
    keras.models.load_model(path).save(tmp_path / "resaved.keras")
    resaved = load_model(tmp_path / "resaved.keras")
    assert model_metadata(resaved) is None and output_kind(resaved) == "positions"
    assert model_alphabet(resaved, alphabet) == alphabet


def test_bad_metadata_member_is_refused(tmp_path):
    path = save_model(models.get_model("fourblock_tiny", image_size=(24, 32)), tmp_path / "model.keras")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members[METADATA_MEMBER] = b'{"format": 99}'
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(ValueError, match="unknown format. Received: 99"):
        load_model(path)


@pytest.mark.parametrize(
    "name, alphabet, kind",
    [("cellnet_tiny", Alphabet("0123456789", 4), "positions"), ("crnn_ctc_tiny", Alphabet("0123456789", 4, 3), "ctc")],
)
def test_files_saved_by_earlier_versions_still_read(name, alphabet, kind, tmp_path):
    # Saved by the kit at commit 7bf0f0a: AlphabetTag (and ForegroundMap) layers, no captcha_kit.json.
    path = FIXTURES / f"legacy_{name}.keras"
    assert read_file_metadata(path) is None
    recorded = json.loads((FIXTURES / "legacy_scores.json").read_text())
    images = np.random.default_rng(recorded["seed"]).integers(0, 256, size=recorded["image_shape"]).astype("float32")
    old = load_model(path)
    assert has_legacy_layers(old) and model_alphabet(old) == alphabet and output_kind(old) == kind
    scores = old.predict(images, verbose=0)
    np.testing.assert_allclose(scores, recorded["models"][name]["scores"], atol=1e-6)
    # Saving it again writes the built-in form, with the same scores and the alphabet in captcha_kit.json.
    new = load_model(save_model(old, tmp_path / "new.keras"))
    assert not has_legacy_layers(new) and model_alphabet(new) == alphabet and output_kind(new) == kind
    assert np.max(np.abs(new.predict(images, verbose=0) - scores)) == 0.0


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_committed_reference_stages_still_read(stage):
    model = load_model(REPOSITORY / "reference" / f"{stage}.keras")
    assert has_legacy_layers(model) and model_alphabet(model) == Alphabet() and output_kind(model) == "positions"


def test_shipped_reference_model_is_plain():
    path = REPOSITORY / "reference" / "reference.keras"
    assert read_file_metadata(path) == ModelMetadata("0123456789", 4, 4, "positions")
    assert not has_legacy_layers(load_model(path))


def test_convert_command(tmp_path, capsys):
    output = tmp_path / "converted.keras"
    legacy = str(FIXTURES / "legacy_cellnet_tiny.keras")
    result = export.main([legacy, "--format", "keras", "--output", str(output), "--check-images", "4"])
    assert result["had_legacy_layers"] and result["max_abs_difference"] == 0.0 and result["passed"]
    assert read_file_metadata(output) == ModelMetadata("0123456789", 4, 4, "positions")
    with pytest.raises(SystemExit) as exit_info:
        export.main([str(output), "--format", "keras", "--output", str(output)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: Write the converted model to a new file")


@pytest.mark.parametrize(
    "shape, stride", [((2, 20, 48, 3), 16), ((2, 7, 9, 3), 4), ((2, 5, 5, 3), 16), ((1, 6, 8, 3), 1)]
)
def test_foreground_map_equals_the_legacy_layer_in_a_functional_model(shape, stride):
    # Exactly: the sorted sample's middle element is what ops.quantile(method="nearest") takes (half to even).
    images = np.random.default_rng(1).random(shape).astype("float32")
    inputs = keras.Input(shape[1:])
    model = keras.Model(inputs, foreground_map(inputs, stride))
    np.testing.assert_array_equal(model.predict(images, verbose=0), np.asarray(ForegroundMap(stride)(images)))


PLAIN_STUDENT = textwrap.dedent(
    """
    # A student's model made with plain Keras, no kit: scales its own input, one softmax per digit.
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import keras
    from keras import layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((144, 256, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(4, 3, strides=4, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(40)(x)
    outputs = layers.Softmax()(layers.Reshape((4, 10))(x))
    keras.Model(inputs, outputs).save(sys.argv[1])
    """
)


def test_plain_keras_student_model_is_evaluated(captcha_folders, tmp_path):
    import evaluate

    result = run_without_kit(tmp_path, PLAIN_STUDENT, tmp_path / "my_model.keras")
    assert result.returncode == 0, result.stderr[-3000:]
    _, val_dir = captcha_folders
    figures = evaluate.main([str(tmp_path / "my_model.keras"), "--data", str(val_dir), "--json"])
    assert figures["images"] == 12 and len(figures["position_accuracies"]) == 4
    assert 0.0 <= figures["whole_accuracy"] <= figures["mean_accuracy"] <= 1.0


def test_plain_and_kit_models_are_graded(captcha_folders, tmp_path, monkeypatch):
    from grading_helpers import grade_here

    import grade
    import grading.schedule

    monkeypatch.setattr(grading.schedule, "grade_in_process", grade_here)  # Scoring is under test, not the worker.

    submissions = tmp_path / "submissions"
    (submissions / "plain").mkdir(parents=True)
    (submissions / "kit").mkdir()
    result = run_without_kit(tmp_path, PLAIN_STUDENT, submissions / "plain" / "my_model.keras")
    assert result.returncode == 0, result.stderr[-3000:]
    save_model(models.get_model("cellnet_tiny"), submissions / "kit" / "my_model.keras")
    train_dir, val_dir = captcha_folders
    graded = grade.main(
        [str(submissions), "--train", "never", "--sandbox", "none", "--jobs", "1"]
        + ["--train-dir", str(train_dir), "--val-dir", str(val_dir), "--output", str(tmp_path / "grades.csv")]
    )
    rows = {row["submission"]: row for row in graded["rows"]}
    assert rows["plain"]["status"] == "graded" and rows["kit"]["status"] == "graded", rows
