"""`python export.py`: SavedModel (read by TensorFlow) and ONNX (read by onnxruntime) give the .keras scores."""

import numpy as np
import pytest

import export
import models
from models.export import read_export_metadata
from models.io import save_model
from models.metadata import ModelMetadata

IMAGE_SIZE = (40, 96)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved cellnet_tiny (the default family: foreground map, cells), a raw image batch and its scores."""
    folder = tmp_path_factory.mktemp("export")
    model = models.get_model("cellnet_tiny", image_size=IMAGE_SIZE)
    path = save_model(model, folder / "model.keras")
    images = np.random.default_rng(0).integers(0, 256, (3, *IMAGE_SIZE, 3)).astype("float32")
    return path, images, model.predict(images, verbose=0)


def test_saved_model_gives_the_keras_scores(saved, tmp_path, capsys):
    import tensorflow as tf

    path, images, expected = saved
    output = export.main([str(path), "--format", "saved_model", "--output", str(tmp_path / "exported")])
    assert "Wrote" in capsys.readouterr().out
    exported = tf.saved_model.load(str(output))
    assert np.max(np.abs(exported.serve(images).numpy() - expected)) <= 1e-5
    signature = exported.signatures["serving_default"]
    assert np.max(np.abs(next(iter(signature(image=images).values())).numpy() - expected)) <= 1e-5
    assert read_export_metadata(output) == ModelMetadata("0123456789", 4, 4, "positions")


def test_onnx_gives_the_keras_scores(saved, tmp_path):
    import onnxruntime

    path, images, expected = saved
    output = export.main([str(path), "--format", "onnx", "--output", str(tmp_path / "model.onnx")])
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert [entry.name for entry in session.get_inputs()] == ["image"]
    assert np.max(np.abs(session.run(None, {"image": images})[0] - expected)) <= 1e-5
    assert read_export_metadata(output) == ModelMetadata("0123456789", 4, 4, "positions")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["missing.keras", "--format", "onnx", "--output", "out.onnx"], "error: Model file not found"),
        (["MODEL", "--format", "onnx", "--output", "out.bin"], "error: ONNX files must end in .onnx"),
        (["MODEL", "--format", "saved_model", "--output", "EXISTING"], "exists; choose a new path"),
    ],
)
def test_bad_arguments_are_one_error_line(arguments, message, saved, tmp_path, capsys):
    path, _, _ = saved
    (tmp_path / "existing").mkdir()
    replacements = {"MODEL": str(path), "EXISTING": str(tmp_path / "existing")}
    replacements.update({"out.onnx": str(tmp_path / "o.onnx"), "out.bin": str(tmp_path / "out.bin")})
    arguments = [replacements.get(argument, argument) for argument in arguments]
    with pytest.raises(SystemExit) as exit_info:
        export.main(arguments)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]
    assert not (tmp_path / "o.onnx").exists() and not (tmp_path / "out.bin").exists()


def test_unknown_format_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        export.main(["model.keras", "--format", "tflite", "--output", "x"])
    assert exit_info.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err


def test_bench_inference_measures_onnxruntime(saved):
    from bench.bench_inference import onnxruntime_speeds
    from models.io import load_model

    path, images, _ = saved
    model = load_model(path)
    speeds = onnxruntime_speeds(
        model, images.astype("uint8"), [2], calls=3, seconds=0.05, keras_scores=model.predict_on_batch
    )
    assert speeds["max_abs_difference_from_keras"] <= 1e-5
    (row,) = speeds["batched"]
    assert row["batch_size"] == 2 and row["onnxruntime_images_per_second"] > 0 and row["keras_images_per_second"] > 0
    assert speeds["single_image"]["median_ms"] > 0
