"""keras.applications backbones: input scaling per application, weights files, the offline error; train.py --weights."""

import keras
import numpy as np
import pytest
from cli_helpers import refused
from keras.src.utils import file_utils

import models
import train
from models.applications import build_application_backbone, preprocessing_style


def test_preprocessing_styles():
    assert preprocessing_style("EfficientNetB0") == "none"  # scales 0-255 pixels itself
    assert preprocessing_style("MobileNetV3Small") == "none"
    assert preprocessing_style("ResNet50") == "caffe"
    assert preprocessing_style("DenseNet121") == "torch"
    assert preprocessing_style("MobileNetV2") == "tf"


def test_caffe_style_model_flips_and_centres_channels():
    model = models.get_model("keras_application", backbone="ResNet50", image_size=(32, 32))
    image = np.broadcast_to(np.array([200.0, 100.0, 50.0], "float32"), (1, 32, 32, 3))
    scaling = keras.Model(model.inputs, model.get_layer("subtract_mean").output)  # The flip is a keras.ops call.
    bgr = scaling.predict(image, verbose=0)
    np.testing.assert_allclose(bgr[0, 0, 0], [50 - 103.939, 100 - 116.779, 200 - 123.68], rtol=1e-5)


def test_weights_file_is_loaded(tmp_path):
    options = {"alpha": 0.5, "minimalistic": True}
    source = build_application_backbone("MobileNetV3Small", (32, 64, 3), **options)
    path = tmp_path / "backbone.weights.h5"
    source.save_weights(path)
    loaded = build_application_backbone("MobileNetV3Small", (32, 64, 3), weights=str(path), **options)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 64, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), source.predict(images, verbose=0), rtol=1e-5)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        build_application_backbone("MobileNetV3Small", (32, 64, 3), weights=str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="Unknown keras.applications backbone 'resnet50'"):
        build_application_backbone("resnet50", (32, 64, 3))


def test_offline_imagenet_error_names_file_and_folder(tmp_path, monkeypatch):
    def offline(file_name, origin=None, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    with pytest.raises(FileNotFoundError) as error:
        build_application_backbone("EfficientNetB0", (64, 256, 3), weights="imagenet")
    message = str(error.value)
    assert "efficientnetb0_notop.h5" in message and str(tmp_path / "keras_home" / "models") in message


def test_train_passes_weights_and_refuses_them_for_other_models(captcha_folders, tmp_path, capsys, eager_functions):
    train_dir, val_dir = captcha_folders
    common = ["--train-dir", str(train_dir), "--val-dir", str(val_dir), "--epochs", "1", "--batch-size", "8"]
    summary = train.main(
        [*common, "--model", "efficientnet_lite0_tiny", "--weights", "none", "--output", str(tmp_path / "e.keras")]
    )
    assert summary["options"]["weights"] == "none" and summary["epochs_run"] == 1
    with refused(capsys, "takes no --weights"):
        train.main([*common, "--model", "cellnet_tiny", "--weights", "imagenet", "--output", str(tmp_path / "c.keras")])
    with refused(capsys, "EfficientNet-Lite0's shape only"):
        train.main(
            [
                *common,
                "--model",
                "efficientnet_lite0_tiny",
                "--weights",
                "imagenet",
                "--output",
                str(tmp_path / "t.keras"),
            ]
        )
