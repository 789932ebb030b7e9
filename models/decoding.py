"""Turning model outputs into per-position scores, class codes and text: the one decoder."""

from __future__ import annotations

import numpy as np

from data.alphabet import Alphabet


def position_scores(outputs, alphabet: Alphabet) -> np.ndarray:
    """Brings the common output layouts to one array of shape (images, length, classes).

    Accepted layouts: the kit's (images, length, classes); a list of `length`
    arrays of (images, classes), one per character head; a flat
    (images, length * classes).
    """
    length, classes = alphabet.length, alphabet.num_classes
    if isinstance(outputs, dict):
        outputs = [outputs[key] for key in sorted(outputs)]
    if isinstance(outputs, (list, tuple)):
        arrays = [np.asarray(output) for output in outputs]
        if len(arrays) == 1:
            return position_scores(arrays[0], alphabet)
        if len(arrays) != length or any(array.shape[1:] != (classes,) for array in arrays):
            shapes = [array.shape for array in arrays]
            raise ValueError(f"Expected {length} outputs of shape (images, {classes}). Received shapes: {shapes}")
        return np.stack(arrays, axis=1)
    outputs = np.asarray(outputs)
    if outputs.ndim == 3 and outputs.shape[1:] == (length, classes):
        return outputs
    if outputs.ndim == 2 and outputs.shape[1] == length * classes:
        return outputs.reshape(-1, length, classes)
    raise ValueError(
        f"Expected outputs of shape (images, {length}, {classes}), (images, {length * classes}) "
        f"or {length} arrays of (images, {classes}). Received shape: {outputs.shape}"
    )


def decode_codes(outputs, alphabet: Alphabet) -> np.ndarray:
    """Most likely class code at each position: int array (images, length)."""
    return position_scores(outputs, alphabet).argmax(axis=-1)


def decode_text(outputs, alphabet: Alphabet) -> list[str]:
    """Most likely text of each image."""
    return [alphabet.decode(codes) for codes in decode_codes(outputs, alphabet)]
