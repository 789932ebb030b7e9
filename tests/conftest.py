"""Shared fixtures: a handful of real generated CAPTCHAs, made once per test session, and hand-built readers."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from core.quiet import load_keras  # noqa: E402
from data.generate import generate_folder  # noqa: E402

keras = load_keras()  # Before any test module imports it: no TensorFlow start-up lines in the output.


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """The kit's caches (decoded images, converted weights) go to a temporary folder, not ~/.cache/captcha-kit."""
    previous = os.environ.get("CAPTCHA_KIT_CACHE")
    os.environ["CAPTCHA_KIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield Path(os.environ["CAPTCHA_KIT_CACHE"])
    if previous is None:
        del os.environ["CAPTCHA_KIT_CACHE"]
    else:
        os.environ["CAPTCHA_KIT_CACHE"] = previous


@pytest.fixture
def eager_functions():
    """Runs TensorFlow functions, Keras's train, test and predict steps among them, eagerly during the test.

    A test that trains a tiny model for a step or two on a few images spends most of its time tracing those
    steps into graphs, anew for every model; run eagerly, the same steps compute the same numbers in a
    fraction of that. Graph mode stays checked by the tests that train for longer and by `pytest -m slow`.
    """
    if keras.backend.backend() != "tensorflow":  # The steps of other backends are compiled as usual.
        yield
        return
    import tensorflow as tf

    previous = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(previous)


@pytest.fixture(scope="session")
def captcha_folders(tmp_path_factory):
    """(train, val) folders of 24 and 12 multicolorcaptcha images."""
    root = tmp_path_factory.mktemp("captchas")
    train = generate_folder(root / "train", 24, seed="test/train", workers=1, progress=False)
    val = generate_folder(root / "val", 12, seed="test/val", workers=1, progress=False)
    return train, val


def build_constant_reader(
    text: str,
    input_shape=(144, 256, 3),
    layout: str = "stacked",
    raw_text: str | None = None,
    rescaling: bool = False,
) -> keras.Model:
    """A model that reads `text` whatever the image, so its accuracy follows from the labels alone.

    Args:
        text: What it reads; its length sets the number of positions.
        input_shape: The input it declares.
        layout: "stacked" (images, length, 10), "flat" (images, length * 10)
            or "list" (one (images, 10) output per position).
        raw_text: When given, it reads `raw_text` instead when its input is
            not scaled to [0, 1] (mean value above about 1.1), so a test can
            see which scale it was fed.
        rescaling: Start with a Rescaling(1/255) layer (the model scales its own input).
    """
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs) if rescaling else inputs
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    channels = input_shape[-1]
    heads = []
    for position, character in enumerate(text):
        bias = np.full(10, -10.0, "float32")
        bias[int(character)] = 5.0
        kernel = np.zeros((channels, 10), "float32")
        if raw_text is not None:
            kernel[:, int(raw_text[position])] = 4.5 / channels  # 4.5 x mean value: below 5 only on [0, 1]
        dense = keras.layers.Dense(
            10,
            activation="softmax",
            kernel_initializer=keras.initializers.Constant(kernel),
            bias_initializer=keras.initializers.Constant(bias),
        )
        heads.append(dense(pooled))
    if layout == "list":
        return keras.Model(inputs, heads)
    joined = keras.layers.Concatenate()(heads)
    if layout == "stacked":
        joined = keras.layers.Reshape((len(text), 10))(joined)
    return keras.Model(inputs, joined)


@pytest.fixture
def constant_reader():
    """`build_constant_reader`, for tests that need readers of known accuracy."""
    return build_constant_reader


@pytest.fixture(scope="session")
def labelled_folder(tmp_path_factory):
    """A henan-4digit-like folder: 30 small ImageCaptchas of 3 characters named N.png, and labels.txt beside.

    Returns:
        (images folder, labels file, Alphabet).
    """
    from core.alphabet import Alphabet
    from data.generate import get_generator
    from data.labels import label_from_filename, list_image_files

    root = tmp_path_factory.mktemp("labelled")
    alphabet = Alphabet("0123456789ABCDEF", 3)
    generator = get_generator("imagecaptcha", width=72, height=32, alphabet=alphabet)
    generated = generate_folder(
        root / "generated", 30, seed="test/labelled", workers=1, progress=False, generator=generator
    )
    images = root / "images"
    images.mkdir()
    lines = []
    for index, path in enumerate(list_image_files(generated)):
        path.rename(images / f"{index}.png")
        lines.append(f"{index}.png {label_from_filename(path)}")
    labels = root / "labels.txt"
    labels.write_text("\n".join(lines) + "\n")
    return images, labels, alphabet
