"""Saving and loading `.keras` models: atomically, safely, with clear errors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras

import models  # noqa: F401  (registers the kit's layers for deserialization)
from data.alphabet import Alphabet
from data.files import atomic_path
from models.layers import find_alphabet_tag


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Saves the plain model (architecture and weights, no optimizer state) atomically.

    A functional copy sharing the layers is saved, so the file holds no
    training configuration: it loads anywhere, small, ready for inference.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Model files must end in .keras. Received: {path}")
    plain = keras.Model(model.inputs, model.outputs, name=model.name)
    with atomic_path(path) as temporary:
        plain.save(temporary)
    return path


def load_model(path: str | Path) -> keras.Model:
    """Loads a `.keras` file with Keras safe mode on (no arbitrary code runs).

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a loadable Keras model, or needs unsafe code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a Keras model (.keras files are zip archives).")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for corrupt or foreign files.
        raise ValueError(f"Cannot load model {path}: {type(error).__name__}: {error}") from error


def model_alphabet(model: keras.Model, given: Alphabet | None = None) -> Alphabet:
    """The alphabet a model reads, as recorded in it by `get_model` (its `AlphabetTag` layer).

    Args:
        model: A built or loaded model.
        given: An alphabet the user named (e.g. `--alphabet`, `--length`):
            checked against the recorded one, and used for models saved
            before the kit recorded alphabets. Those default to four digits.

    Raises:
        ValueError: `given` differs from the alphabet the model records.
    """
    tag = find_alphabet_tag(model)
    if tag is None:
        return given or Alphabet()
    recorded = Alphabet(tag.characters, tag.length)
    if given is not None and given != recorded:
        raise ValueError(f"Model {model.name!r} reads {recorded}. Received: {given}")
    return recorded
