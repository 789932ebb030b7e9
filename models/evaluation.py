"""Scoring a model on labelled images: the one evaluation used by training, grading and answers."""

from __future__ import annotations

import numpy as np

from core.alphabet import Alphabet
from core.assignment import PASS_THRESHOLD  # noqa: F401  (re-exported: the bar evaluate.py applies)
from data.batches import ArrayBatches
from models.decoding import decode_codes
from models.metrics import position_accuracies, sequence_accuracy


def evaluate_predictions(true_codes, predicted_codes) -> dict:
    """Per-position accuracies, their mean and whole-CAPTCHA accuracy, as plain floats."""
    per_position = position_accuracies(true_codes, predicted_codes)
    return {
        "position_accuracies": [float(value) for value in per_position],
        "mean_accuracy": float(per_position.mean()),
        "whole_accuracy": sequence_accuracy(true_codes, predicted_codes),
        "images": int(len(true_codes)),
    }


def add_verdict(result: dict, threshold: float = PASS_THRESHOLD) -> dict:
    """Adds the PASS/FAIL verdict to an `evaluate_predictions` result: every position must reach `threshold`."""
    passed = all(accuracy >= threshold for accuracy in result["position_accuracies"])
    return {**result, "threshold": threshold, "passed": passed}


def predict_codes(model, images: np.ndarray, alphabet: Alphabet, batch_size: int = 256, transform=None) -> np.ndarray:
    """Runs `model` on images and decodes its outputs to class codes (images, length).

    Args:
        model: A Keras model in any output layout `position_scores` accepts.
        images: Raw images (N, height, width, 3) uint8.
        alphabet: The characters and label length.
        batch_size: Images per prediction batch.
        transform: Optional function applied to each batch of raw images
            before the model sees it (e.g. resizing for a model that declares
            another input); batches keep memory bounded whatever it returns.
    """
    if transform is None:
        return decode_codes(model.predict(ArrayBatches(images, batch_size=batch_size), verbose=0), alphabet)
    codes = [
        decode_codes(model.predict_on_batch(transform(images[start : start + batch_size])), alphabet)
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(codes) if codes else np.zeros((0, alphabet.length), dtype=np.int64)


def evaluate_model(model, images, codes, alphabet: Alphabet, batch_size: int = 256) -> dict:
    """Scores `model` on images with known class codes; see `evaluate_predictions`."""
    return evaluate_predictions(codes, predict_codes(model, images, alphabet, batch_size))


def format_accuracies(result: dict) -> str:
    """One line: 'digits 0.912 0.930 0.925 0.908 | mean 0.919 | whole 0.712'."""
    digits = " ".join(f"{value:.4f}" for value in result["position_accuracies"])
    return f"digits {digits} | mean {result['mean_accuracy']:.4f} | whole {result['whole_accuracy']:.4f}"
