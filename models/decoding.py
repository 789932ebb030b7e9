"""Turning model outputs into per-position scores, class codes, text and confidences: the one decoder.

Three kinds of outputs exist, and a model declares which it gives
(`models.metadata.OUTPUT_KINDS`, read by `models.layers.output_kind`); the
decoder is told the kind and never guesses it from the shapes. "positions":
one softmax per character position, (images, length, classes); the code at
each position is its argmax. "ctc": one softmax per time step over the
classes and a final blank, (images, time steps, classes + 1); the text is
the greedy CTC path (`keras.ops.ctc_decode`: best class per step, repeats
merged, blanks dropped). "seq2seq" (`models.seq2seq`): one softmax per greedy
decoder step over the classes and its end, pad and start tokens,
(images, length + 1, classes + 3); the text is the argmax of each step up to
the first non-character token (normally the end token `$`). All become class
codes of shape (images, length), with -1 where a model read fewer than
`length` characters, so that the same metrics score them all.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from core.alphabet import Alphabet
from models.metadata import OUTPUT_KINDS


def check_kind(kind: str) -> str:
    """Returns `kind` when it is one of `OUTPUT_KINDS`.

    Raises:
        ValueError: Any other value.
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"`kind` must be one of {OUTPUT_KINDS}. Received: kind={kind!r}")
    return kind


def seq2seq_greedy_codes(scores, length: int):
    """Reads (batch, steps, classes + 3) seq2seq decoder scores: argmax per step up to the first non-character.

    The model already decoded greedily (each step was fed the argmax of the
    step before), so the argmax of each step is the token it emitted. The text
    stops at the first token that is not a character (the end token `$`, or
    pad/start); later steps are ignored. Works on tensors inside a Keras
    metric and on NumPy arrays alike.

    Args:
        scores: Per-step probabilities; the first `classes` classes are characters.
        length: How many codes to keep per image.

    Returns:
        (codes, confidences): int32 codes (batch, length) padded with -1 after
        the text ends, and the product of the per-step maxima up to and
        including the end token (batch,).
    """
    scores = ops.convert_to_tensor(scores)
    if scores.shape[1] is not None and scores.shape[1] < length:
        raise ValueError(f"seq2seq scores have {scores.shape[1]} steps; at least `length`={length} are needed.")
    characters = scores.shape[-1] - 3
    tokens = ops.cast(ops.argmax(scores, axis=-1), "int32")
    # 1 while every token so far is a character; the step that ends the text and all later ones get 0.
    reading = ops.cumprod(ops.cast(tokens < characters, "int32"), axis=1)
    codes = ops.where(reading[:, :length] > 0, tokens[:, :length], -1)
    # The steps that count towards the confidence: the characters read and the token that ended them.
    counted = ops.concatenate([ops.ones_like(reading[:, :1]), reading[:, :-1]], axis=1)
    maxima = ops.where(counted > 0, ops.max(scores, axis=-1), 1.0)
    return codes, ops.prod(maxima, axis=1)


def position_scores(outputs, alphabet: Alphabet) -> np.ndarray:
    """Brings the common per-position output layouts to one array of shape (images, length, classes).

    Accepted layouts: the kit's (images, length, classes); a list of `length`
    arrays of (images, classes), one per character head (a dict of them is
    taken in the model's own order, the order Keras returns it in, never
    sorted by name: heads "one".."four" sort as four, one, three, two); a
    flat (images, length * classes).
    """
    length, classes = alphabet.length, alphabet.num_classes
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
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
        f"Expected outputs of shape (images, {length}, {classes}), (images, {length * classes}) or "
        f"{length} arrays of (images, {classes}). Received shape: {outputs.shape}"
    )


def ctc_greedy_codes(scores, length: int):
    """Greedy CTC decoding of (batch, time steps, classes + 1) softmax scores, the blank last.

    Works on tensors inside a Keras metric and on NumPy arrays alike.

    Args:
        scores: Per-time-step probabilities.
        length: How many codes to keep per image.

    Returns:
        (codes, confidences): int32 codes (batch, length) padded with -1, and
        the probability of the greedy path (batch,).
    """
    scores = ops.convert_to_tensor(scores)
    shape = ops.shape(scores)
    steps = ops.full((shape[0],), shape[1], dtype="int32")
    log_probabilities = ops.log(ops.maximum(scores, 1e-12))
    decoded, negative_log = ops.ctc_decode(log_probabilities, steps, strategy="greedy", mask_index=scores.shape[-1] - 1)
    if scores.shape[1] is not None and scores.shape[1] < length:
        raise ValueError(f"CTC scores have {scores.shape[1]} time steps; at least `length`={length} are needed.")
    # The decoded paths come padded with -1 to the number of time steps.
    return ops.cast(decoded[0][:, :length], "int32"), ops.exp(-negative_log[:, 0])


def decode_with_confidence(outputs, alphabet: Alphabet, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Class codes (images, length) and each image's confidence in [0, 1].

    The confidence is the probability the model gives to the text it read:
    the product of the per-position maxima, or of the per-step maxima of the
    greedy CTC path or of the seq2seq decoder's steps.

    Args:
        outputs: What the model gave for a batch of images.
        alphabet: The characters and label length.
        kind: The kind of outputs, one of `OUTPUT_KINDS` (what the model records).
    """
    if check_kind(kind) == "seq2seq":
        codes, confidences = seq2seq_greedy_codes(np.asarray(outputs, "float32"), alphabet.length)
        return ops.convert_to_numpy(codes), ops.convert_to_numpy(confidences)
    if kind == "ctc":
        codes, confidences = ctc_greedy_codes(np.asarray(outputs, "float32"), alphabet.length)
        return ops.convert_to_numpy(codes), ops.convert_to_numpy(confidences)
    scores = position_scores(outputs, alphabet)
    return scores.argmax(axis=-1), scores.max(axis=-1).prod(axis=-1)


def character_confidences(outputs, alphabet: Alphabet, kind: str) -> np.ndarray:
    """Each read character's probability: float array (images, length), NaN where no character was read.

    Per-position models: the maximum of each position's softmax (their
    product is the confidence of `decode_with_confidence`). CTC models: for
    each character of the greedy path, the highest probability among the
    time steps that emitted it (a run of equal best classes between blanks).
    Seq2seq models: the maximum of each decoder step that emitted a character.
    """
    if check_kind(kind) == "seq2seq":
        scores = np.asarray(outputs, "float32")[:, : alphabet.length]
        codes = ops.convert_to_numpy(seq2seq_greedy_codes(np.asarray(outputs, "float32"), alphabet.length)[0])
        return np.where(codes >= 0, scores.max(axis=-1), np.nan).astype("float32")
    if kind == "positions":
        return position_scores(outputs, alphabet).max(axis=-1)
    scores = np.asarray(outputs, "float32")
    blank = scores.shape[-1] - 1
    best, best_scores = scores.argmax(axis=-1), scores.max(axis=-1)
    confidences = np.full((len(scores), alphabet.length), np.nan, "float32")
    for image in range(len(scores)):
        position, previous = -1, blank
        for step, code in enumerate(best[image]):
            if code != blank and code != previous:
                position += 1  # A new character starts: the greedy path merges repeats and drops blanks.
            if code != blank and position < alphabet.length:
                current = confidences[image, position]
                score = best_scores[image, step]
                confidences[image, position] = score if np.isnan(current) else max(current, score)
            previous = code
    return confidences


def decode_codes(outputs, alphabet: Alphabet, kind: str) -> np.ndarray:
    """Most likely class code at each position: int array (images, length)."""
    return decode_with_confidence(outputs, alphabet, kind)[0]


def decode_text(outputs, alphabet: Alphabet, kind: str) -> list[str]:
    """Most likely text of each image."""
    return [alphabet.decode(codes) for codes in decode_codes(outputs, alphabet, kind)]
