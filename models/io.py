"""Saving and loading `.keras` models: atomically, safely, with clear errors.

Two kinds of file are written. `save_model` writes the plain model that users
get (architecture and weights, loads anywhere). `save_checkpoint` writes the
full training state (optimizer moments and step count included) that
`train.py --resume` continues from.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras

import models  # noqa: F401  (registers the kit's layers for deserialization)
from data.alphabet import Alphabet
from data.files import atomic_path
from models.layers import find_alphabet_tag

# Markers of Python code serialized into a model config (a lambda's bytecode).
UNSAFE_CLASS_NAMES = ("__lambda__",)


class UnsafeModelError(ValueError):
    """The model file holds Python code (e.g. a `Lambda` layer's lambda); it was not loaded."""


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Saves the plain model (architecture and weights, no optimizer state) atomically.

    A functional copy sharing the layers is saved, so the file holds no
    training configuration: it loads anywhere, small, ready for inference.
    """
    path = _check_suffix(path)
    plain = keras.Model(model.inputs, model.outputs, name=model.name)
    with atomic_path(path) as temporary:
        plain.save(temporary)
    return path


def save_checkpoint(model: keras.Model, path: str | Path) -> Path:
    """Saves the compiled model with its optimizer state atomically, for resuming training."""
    path = _check_suffix(path)
    with atomic_path(path) as temporary:
        model.save(temporary)
    return path


def load_model(path: str | Path, compile: bool = False) -> keras.Model:
    """Loads a `.keras` file with Keras safe mode on (no arbitrary code runs).

    Args:
        path: The `.keras` file.
        compile: Also restore the optimizer, loss and metrics (a checkpoint
            written by `save_checkpoint`).

    Raises:
        FileNotFoundError: No such file.
        UnsafeModelError: The file holds Python code (a `ValueError`).
        ValueError: The file is not a loadable Keras model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a Keras model (.keras files are zip archives).")
    unsafe = find_unsafe_code(path)
    if unsafe:
        raise UnsafeModelError(f"{path} holds Python code ({unsafe}); refused without running it.")
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # Keras raises many types for corrupt or foreign files.
        message = f"Cannot load model {path}: {type(error).__name__}: {error}"
        if "arbitrary code execution" in str(error):  # Keras's own safe-mode refusal.
            raise UnsafeModelError(message) from error
        raise ValueError(message) from error


def find_unsafe_code(path: str | Path) -> str | None:
    """Names the Python code serialized in a `.keras` file's config, or None when there is none.

    Reads only `config.json` from the archive, so nothing is deserialized; a
    file without a readable config is left for the loader to reject.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
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
    """The alphabet a model reads, as recorded in it by `get_model` (its `AlphabetTag` layer).

    Args:
        model: A built or loaded model.
        given: An alphabet the user named (e.g. `--alphabet`, `--length`, `--min-length`):
            checked against the recorded one, and used for models saved
            before the kit recorded alphabets. Those default to four digits.

    Raises:
        ValueError: `given` differs from the alphabet the model records.
    """
    tag = find_alphabet_tag(model)
    if tag is None:
        return given or Alphabet()
    recorded = Alphabet(tag.characters, tag.length, tag.min_length)
    if given is not None and given != recorded:
        raise ValueError(f"Model {model.name!r} reads {recorded}. Received: {given}")
    return recorded
