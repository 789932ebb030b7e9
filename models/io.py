"""Saving and loading `.keras` models: atomically, safely, with clear errors.

`save_model` writes the plain model that users get (architecture and
weights, loads anywhere; the state a run resumes from is
`training.callbacks.TrainingCheckpoint`'s). It adds the member `captcha_kit.json` to the `.keras` zip: the alphabet,
label lengths and kind of scores (`models.metadata`), which Keras ignores and
`load_model` reads back onto the model. A plain model is always saved made of
Keras's own layers and operations, so the file loads with plain
`keras.models.load_model(path)` in a Python without the kit (only the seq2seq
readers keep a custom layer, `models.registry.CUSTOM_LAYER_MODELS`): a model
loaded from a file saved by earlier versions of the kit is rebuilt on the built-in layers
first (`models.layers.replace_legacy_layers`, same weights and scores).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import keras

import models  # noqa: F401  (registers the kit's layers for deserialization)
from core.alphabet import Alphabet
from core.archive import DEFAULT_LIMITS, check_archive, read_member
from core.files import atomic_path
from models.layers import replace_legacy_layers
from models.metadata import attach_metadata, model_metadata, read_file_metadata, write_file_metadata

# Markers of Python code serialized into a model config (a lambda's bytecode).
UNSAFE_CLASS_NAMES = ("__lambda__",)


class UnsafeModelError(ValueError):
    """The model file holds Python code (e.g. a `Lambda` layer's lambda); it was not loaded."""


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Saves the plain model (architecture and weights, no optimizer state) atomically.

    A functional copy sharing the layers is saved, so the file holds no
    training configuration: it loads anywhere, small, ready for inference.
    Legacy layers are replaced by their built-in forms on the way
    (`models.layers.replace_legacy_layers`), and what the model records
    (`models.metadata`) is written as the archive's `captcha_kit.json`.
    Batch normalisation is written unsynchronised: `synchronized` only means
    something in TensorFlow's distributed training (`training.distribute`),
    and other backends refuse to load it. A model trained in mixed precision
    is written computing in float32 (its weights are float32 already), the
    precision every reader expects.

    Args:
        model: A Functional model.
        path: Where to write it; must end in `.keras`.

    Returns:
        The path written.
    """
    path = _check_suffix(path)
    portable = replace_legacy_layers(model)
    plain = keras.Model(portable.inputs, portable.outputs, name=model.name)
    if any(layer.dtype_policy.name != "float32" for layer in all_layers(plain)):
        plain = float32_copy(plain)
    synchronized = [layer for layer in all_layers(plain) if getattr(layer, "synchronized", False)]
    try:
        for layer in synchronized:
            layer.synchronized = False
        with atomic_path(path) as temporary:
            plain.save(temporary)
            _write_metadata(temporary, model)
    finally:
        for layer in synchronized:
            layer.synchronized = True
    return path


def float32_copy(model: keras.Model) -> keras.Model:
    """The same Functional model and weights with every layer computing in float32 (from mixed precision)."""

    def to_float32(value):
        if isinstance(value, dict):
            if value.get("class_name") == "DTypePolicy":
                return {**value, "config": {**value["config"], "name": "float32"}}
            return {key: to_float32(item) for key, item in value.items()}
        if isinstance(value, list):
            return [to_float32(item) for item in value]
        return value

    copy = keras.Model.from_config(to_float32(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def all_layers(layer):
    """`layer` and every layer inside it, through nested models and wrappers such as TimeDistributed."""
    yield layer
    for child in getattr(layer, "layers", []):
        yield from all_layers(child)
    if isinstance(getattr(layer, "layer", None), keras.layers.Layer):
        yield from all_layers(layer.layer)


def _write_metadata(path: Path, model: keras.Model) -> None:
    metadata = model_metadata(model)
    if metadata is not None:
        write_file_metadata(path, metadata)


def load_model(path: str | Path, compile: bool = False) -> keras.Model:
    """Loads a `.keras` file with Keras safe mode on (no arbitrary code runs).

    Args:
        path: The `.keras` file.
        compile: Also restore a compile configuration saved in the file (the kit saves none).

    Raises:
        FileNotFoundError: No such file.
        UnsafeModelError: The file holds Python code (a `ValueError`).
        OversizedModelError: A member inflates past `core.archive`'s limits (a `ValueError`).
        ValueError: The file is not a loadable Keras model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a Keras model (.keras files are zip archives).")
    check_archive(path)  # Every member's real size, before anything is parsed (a zip can inflate to gigabytes).
    unsafe = find_unsafe_code(path)
    if unsafe:
        raise UnsafeModelError(f"{path} holds Python code ({unsafe}); refused without running it.")
    metadata = read_file_metadata(path)
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # Keras raises many types for corrupt or foreign files.
        message = f"Cannot load model {path}: {type(error).__name__}: {error}"
        if "arbitrary code execution" in str(error):  # Keras's own safe-mode refusal.
            raise UnsafeModelError(message) from error
        raise ValueError(message) from error
    return attach_metadata(model, metadata)


def find_unsafe_code(path: str | Path) -> str | None:
    """Names the Python code serialized in a `.keras` file's config, or None when there is none.

    Reads only `config.json` from the archive, at most `core.archive`'s
    limit of it, so nothing is deserialized; a file without a readable
    config is left for the loader to reject.
    """
    try:
        config = json.loads(read_member(path, "config.json", DEFAULT_LIMITS.config_bytes))
    except (KeyError, zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError):
        return None  # ValueError: JSONDecodeError, UnicodeDecodeError and core.archive's OversizedModelError.
    found = []

    def visit(node, layer):
        if isinstance(node, dict):
            if node.get("class_name") in UNSAFE_CLASS_NAMES:
                found.append(layer)
            inner = node.get("config")
            if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                layer = inner["name"]
            for value in node.values():
                visit(value, layer)
        elif isinstance(node, list):
            for value in node:
                visit(value, layer)

    visit(config, None)
    if not found:
        return None
    return "a Python lambda in layer " + ", ".join(sorted({str(name) for name in found}))


def _check_suffix(path) -> Path:
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Model files must end in .keras. Received: {path}")
    return path


def model_alphabet(model: keras.Model, given: Alphabet | None = None) -> Alphabet:
    """The alphabet a model reads, as recorded by `get_model` and the file (`models.metadata`).

    Args:
        model: A built or loaded model.
        given: An alphabet the user named (e.g. `--alphabet`, `--length`, `--min-length`):
            checked against the recorded one, and used for models saved
            before the kit recorded alphabets. Those default to four digits.

    Raises:
        ValueError: `given` differs from the alphabet the model records.
    """
    metadata = model_metadata(model)
    if metadata is None:
        return given or Alphabet()
    recorded = metadata.alphabet
    if given is not None and given != recorded:
        raise ValueError(f"Model {model.name!r} reads {recorded}. Received: {given}")
    return recorded
