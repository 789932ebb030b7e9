"""The ResNet-18 variant that pprp/captcha.Pytorch found best for CAPTCHAs.

Unlike ImageNet's ResNet-18 the stem is one 3x3 stride-1 convolution without
max-pool, so the small characters keep their full resolution into the first
stage; then four stages of two basic blocks (64, 128, 256, 512 channels,
stride 2 from the second stage), global average pooling, dropout 0.5 and one
linear softmax head per character.
"""

from __future__ import annotations

import keras
from keras import layers

from core.multicolor import text_margins
from models.blocks import conv_bn_relu, image_input, pooled_character_heads, preprocess
from models.registry import register_model


def basic_block(x, filters: int, stride: int, name: str):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_project")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_project_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def build_resnet(
    alphabet, image_size, widths=(64, 128, 256, 512), blocks_per_stage=2, downscale=1, dropout=0.5, name="resnet18"
):
    """Builds the CAPTCHA ResNet.

    Args:
        alphabet: Characters and label length.
        image_size: (height, width) of the raw images.
        widths: Channels of each stage; the first also sets the stem's.
        blocks_per_stage: Basic blocks per stage (2 gives ResNet-18).
        downscale: Average-pooling factor before the stem (1 keeps full resolution).
        dropout: Dropout on the pooled features.
    """
    inputs = image_input(image_size)
    x = preprocess(inputs, crop=text_margins(image_size), downscale=downscale)
    x = conv_bn_relu(x, widths[0], name="stem")
    for stage, filters in enumerate(widths, 1):
        for block in range(1, blocks_per_stage + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            x = basic_block(x, filters, stride, name=f"stage{stage}_block{block}")
    outputs = pooled_character_heads(x, alphabet, dropout)
    return keras.Model(inputs, outputs, name=name)


@register_model
def resnet18(alphabet, image_size, **options):
    """ResNet-18 with a 3x3 stride-1 stem and no max-pool (about 11M parameters)."""
    return build_resnet(alphabet, image_size, **options)


@register_model
def resnet18_tiny(alphabet, image_size, **options):
    """A small resnet18 for tests.

    16 channels, not 4: with fewer than 16 channels this residual network's
    training step crashes TensorFlow 2.21's CPU kernels (segmentation fault,
    seen with widths (4, 8) and (8, 8)); (16, 32) trains.
    """
    return build_resnet(alphabet, image_size, widths=(16, 32), blocks_per_stage=1, name="resnet18_tiny", **options)
