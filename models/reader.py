"""The kit's one prediction path: raw images in; scores, class codes, texts, confidences and accuracies out.

    reader = Reader(load_model("my_model.keras"))
    reading = reader.read_one(image)                  # text, per-character confidences
    readings = reader.read(images, batch_size=256)    # one `Reading` per image
    codes = reader.codes(images)                      # class codes (images, length), -1 where none was read
    result = reader.evaluate(images, true_codes)      # per-position, mean and whole-CAPTCHA accuracy
    result = evaluate_model(model, images, true_codes, alphabet)   # the same, in one call

Evaluation, grading, `predict.py`, `inference.py`, the web service, the
answers and the benchmarks all read through a `Reader`, so they score and
decode alike.

Why not `model.predict`: it wraps every call in a dataset, a callback list
and a progress loop, a cost per call whatever the batch size, which
dominates when one image is read at a time. A `Reader` calls the model's compiled predict step on each NumPy batch
directly (`model.predict_on_batch`, traced once per batch size), about 2-3 ms
for one image of the default model, and cuts large arrays into batches
itself so memory stays bounded. The outputs are decoded by `models.decoding`
as the kind of scores the model records (`models.layers.output_kind`), never
by guessing from their shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from core.alphabet import Alphabet
from core.assignment import PASS_THRESHOLD
from models.decoding import character_confidences, check_kind, decode_codes, decode_with_confidence
from models.io import load_model, model_alphabet
from models.layers import output_kind
from models.metrics import confusion_counts, position_accuracies, sequence_accuracy

DEFAULT_BATCH_SIZE = 256
# Accuracies are fractions of a few thousand images at most: six decimals keep every one apart and drop
# the float noise of their means (0.9724999999999999 is written 0.9725).
ACCURACY_DECIMALS = 6
MISSING_MODEL_HINT = (
    "Train one with `python train.py` (it writes my_model.keras), or pass the shipped reference/reference.keras."
)


@dataclass
class Reading:
    """What a model read in one image.

    Attributes:
        text: The characters read (shorter than the alphabet's length where a CTC or seq2seq model read fewer).
        codes: Class code per position, int (length,); -1 where no character was read.
        character_confidences: Probability of each read character, float (length,); NaN where none was read.
        confidence: Probability of the whole text (see `models.decoding.decode_with_confidence`).
    """

    text: str
    codes: np.ndarray
    character_confidences: np.ndarray
    confidence: float


class Reader:
    """Reads CAPTCHA images with a model through its fast call path, decoding its outputs by their declared kind.

    Args:
        model: A kit model, or any Keras model with one image input.
        alphabet: For models that record no alphabet; checked against the recorded one otherwise.
        kind: The kind of scores (`models.metadata.OUTPUT_KINDS`); by default what the model records
            ("positions" for models that record nothing).
        transform: Optional function applied to each batch of raw images before the model sees it
            (grading's `grading.inputs.InputPlan.apply` for students' models that declare another input).

    Raises:
        ValueError: `alphabet` differs from the one the model records, or `kind` is unknown.
    """

    def __init__(self, model: keras.Model, alphabet: Alphabet | None = None, kind: str | None = None, transform=None):
        self.model = model
        self.alphabet = model_alphabet(model, alphabet)
        self.kind = check_kind(kind or output_kind(model))
        self.transform = transform

    @property
    def image_size(self) -> tuple:
        """(height, width) of the images the model takes; None for a dimension it leaves open."""
        return tuple(self.model.input_shape[1:3])

    def scores(self, images, batch_size: int | None = None):
        """The model's outputs for raw images (images, height, width, channels), values 0-255.

        `uint8` images (what `PIL` and the kit's datasets give) go to the
        model as they are: the compiled predict step casts them to float32,
        4x less data to copy than a float32 array converted here.

        Args:
            images: The raw images.
            batch_size: Images per model call; None calls the model once on all of them.

        Returns:
            What the model gives, batches joined: an array, or the list or dict of arrays of a
            model with several outputs.
        """
        outputs = [self._call(batch) for batch in batches(images, batch_size)]
        first = outputs[0]
        if len(outputs) == 1:
            return first
        if isinstance(first, dict):
            return {key: np.concatenate([part[key] for part in outputs]) for key in first}
        if isinstance(first, list):
            return [np.concatenate([part[index] for part in outputs]) for index in range(len(first))]
        return np.concatenate(outputs)

    def codes(self, images, batch_size: int | None = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Class codes (images, length) of what the model reads in raw images; -1 where it read no character.

        Decoded batch by batch, so no more than one batch of scores is held.
        """
        codes = [decode_codes(self._call(batch), self.alphabet, self.kind) for batch in batches(images, batch_size)]
        return np.concatenate(codes) if codes else np.zeros((0, self.alphabet.length), dtype=np.int64)

    def read(self, images, batch_size: int | None = None) -> list[Reading]:
        """Reads raw images; one `Reading` per image, in order (batches of `batch_size`; None: one call)."""
        readings = []
        for batch in batches(images, batch_size):
            outputs = self._call(batch)
            codes, confidences = decode_with_confidence(outputs, self.alphabet, self.kind)
            per_character = character_confidences(outputs, self.alphabet, self.kind)
            readings.extend(
                Reading(self.alphabet.decode(row), np.asarray(row), characters, float(confidence))
                for row, characters, confidence in zip(codes, per_character, confidences)
            )
        return readings

    def read_one(self, image) -> Reading:
        """Reads one raw image (height, width, channels)."""
        return self.read(np.asarray(image)[None])[0]

    def evaluate(self, images, true_codes, batch_size: int | None = DEFAULT_BATCH_SIZE) -> dict:
        """Scores the reader on images with known class codes; see `evaluate_predictions`."""
        return evaluate_predictions(true_codes, self.codes(images, batch_size))

    def _call(self, images):
        """One model call on one batch of raw images, through `transform` when there is one."""
        images = np.asarray(images)
        if self.transform is not None:
            images = self.transform(images)
        elif images.dtype != np.uint8:
            images = images.astype("float32", copy=False)
        expected = self.model.input_shape
        if isinstance(expected, tuple):  # A list: a model of several inputs, left to Keras to check.
            expected = expected[1:]
            if images.ndim != len(expected) + 1 or any(
                want not in (None, got) for want, got in zip(expected, images.shape[1:])
            ):
                raise ValueError(
                    f"Model {self.model.name!r} takes images of shape (images, {', '.join(map(str, expected))}). "
                    f"Received: {images.shape}"
                )
        outputs = self.model.predict_on_batch(images)
        # Converted by hand, not with keras.tree: that would sort a dict's keys, and a dict of heads is read in
        # the model's own order (`models.decoding.position_scores`).
        if isinstance(outputs, dict):
            return {key: np.asarray(value) for key, value in outputs.items()}
        if isinstance(outputs, (list, tuple)):
            return [np.asarray(value) for value in outputs]
        return np.asarray(outputs)


def load_reader(path: str | Path, alphabet: Alphabet | None = None) -> Reader:
    """A `Reader` of the `.keras` file at `path` (loaded in safe mode by `models.io.load_model`).

    Raises:
        FileNotFoundError: No such file; the message says how to get a model.
        ValueError: The file is not a usable model, or it records another alphabet than `alphabet`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file not found: {path}. {MISSING_MODEL_HINT}")
    return Reader(load_model(path), alphabet)


def batches(images, batch_size: int | None):
    """Consecutive slices of at most `batch_size` images (one slice of all of them for None); none when empty."""
    if batch_size is None:
        yield images
        return
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be at least 1. Received: batch_size={batch_size}")
    for start in range(0, len(images), int(batch_size)):
        yield images[start : start + int(batch_size)]


def evaluate_predictions(true_codes, predicted_codes) -> dict:
    """Per-position accuracies, their mean and whole-CAPTCHA accuracy, as plain floats (6 decimals)."""
    per_position = position_accuracies(true_codes, predicted_codes)
    return {
        "position_accuracies": [round(float(value), ACCURACY_DECIMALS) for value in per_position],
        "mean_accuracy": round(float(per_position.mean()), ACCURACY_DECIMALS),
        "whole_accuracy": round(sequence_accuracy(true_codes, predicted_codes), ACCURACY_DECIMALS),
        "images": int(len(true_codes)),
    }


def evaluate_model(model, images, codes, alphabet: Alphabet, batch_size: int = DEFAULT_BATCH_SIZE) -> dict:
    """Scores `model` on raw images with known class codes (images, length); see `evaluate_predictions`.

    Args:
        model: A kit model (its recorded alphabet must be `alphabet`) or one that records none.
        images: Raw images (images, height, width, 3), uint8.
        codes: The true class codes.
        alphabet: The characters and label length.
        batch_size: Images per model call.
    """
    return Reader(model, alphabet).evaluate(images, codes, batch_size)


def add_verdict(result: dict, threshold: float = PASS_THRESHOLD) -> dict:
    """Adds the PASS/FAIL verdict to an `evaluate_predictions` result: every position must reach `threshold`."""
    passed = all(accuracy >= threshold for accuracy in result["position_accuracies"])
    return {**result, "threshold": threshold, "passed": passed}


def format_accuracies(result: dict, position_name: str = "digit") -> str:
    """One line: 'digits 0.9120 0.9300 0.9250 0.9080 | mean 0.9188 | whole 0.7120' ("characters" for letters)."""
    positions = " ".join(f"{value:.4f}" for value in result["position_accuracies"])
    return f"{position_name}s {positions} | mean {result['mean_accuracy']:.4f} | whole {result['whole_accuracy']:.4f}"


def save_figures(data, predicted, alphabet: Alphabet, folder: Path, model_name: str) -> list[str]:
    """What `evaluate.py --figures` draws: the confusion matrix and a grid of up to 12 misread images.

    Args:
        data: The labelled images read (`images`, `codes`, `labels`).
        predicted: The codes read, one row per image.

    Returns:
        The paths written.
    """
    from core.figures import plot_confusion, plot_samples

    confusion = plot_confusion(
        confusion_counts(data.codes, predicted, len(alphabet.characters)),
        alphabet.characters,
        folder / "confusion.png",
        title=f"{model_name}: character confusions on {len(data)} images",
    )
    texts = [alphabet.decode(codes) for codes in predicted]
    wrong = [index for index, text in enumerate(texts) if text != data.labels[index]][:12]
    paths = [str(confusion)]
    if wrong:
        errors = plot_samples(
            [data.images[index] for index in wrong],
            [data.labels[index] for index in wrong],
            folder / "errors.png",
            predictions=[texts[index] for index in wrong],
            columns=3,
            title=f"{model_name}: misread CAPTCHAs",
        )
        paths.append(str(errors))
    return paths
