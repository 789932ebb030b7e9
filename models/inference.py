"""Reading CAPTCHAs fast, one image or a batch at a time: the call path of `inference.py` and the benchmark.

    reader = Reader(load_model("my_model.keras"))
    reading = reader.read_one(image)          # text, per-character confidences
    scores = reader.scores(images)            # the raw model outputs of a batch

`model.predict` wraps every call in a dataset, a callback list and a
progress loop: about 40-60 ms per call on our CPU, whatever the batch size.
`Reader` calls the model's compiled predict step on the array directly
(`model.predict_on_batch`, traced once per batch size), about 2-3 ms for one
image of the default model. The texts and confidences come from
`models.decoding`, the one decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from core.alphabet import Alphabet
from models.decoding import character_confidences, decode_with_confidence
from models.io import model_alphabet


@dataclass
class Reading:
    """What a model read in one image.

    Attributes:
        text: The characters read (shorter than the alphabet's length where a CTC model read fewer).
        codes: Class code per position, int (length,); -1 where no character was read.
        character_confidences: Probability of each read character, float (length,); NaN where none was read.
        confidence: Probability of the whole text (see `models.decoding.decode_with_confidence`).
    """

    text: str
    codes: np.ndarray
    character_confidences: np.ndarray
    confidence: float


class Reader:
    """Reads CAPTCHA images with a model through its fast call path.

    Args:
        model: A kit model (or any model whose output `models.decoding` reads).
        alphabet: For models that record no alphabet; checked against the recorded one otherwise.
    """

    def __init__(self, model: keras.Model, alphabet: Alphabet | None = None):
        self.model = model
        self.alphabet = model_alphabet(model, alphabet)

    @property
    def image_size(self) -> tuple:
        """(height, width) of the images the model takes; None for a dimension it leaves open."""
        return tuple(self.model.input_shape[1:3])

    def scores(self, images) -> np.ndarray:
        """The model's outputs for a batch of raw images (images, height, width, channels), values 0-255.

        `uint8` images (what `PIL` and the kit's datasets give) go to the
        model as they are: the compiled predict step casts them to float32,
        4x less data to copy than a float32 array converted here.
        """
        images = np.asarray(images)
        if images.dtype != np.uint8:
            images = images.astype("float32", copy=False)
        expected = self.model.input_shape[1:]
        if images.ndim != 4 or any(want not in (None, got) for want, got in zip(expected, images.shape[1:])):
            raise ValueError(
                f"Expected images of shape (images, {', '.join(map(str, expected))}). Received: {images.shape}"
            )
        return np.asarray(self.model.predict_on_batch(images))

    def read(self, images) -> list[Reading]:
        """Reads a batch of raw images; one `Reading` per image."""
        outputs = self.scores(images)
        codes, confidences = decode_with_confidence(outputs, self.alphabet)
        per_character = character_confidences(outputs, self.alphabet)
        return [
            Reading(self.alphabet.decode(row), np.asarray(row), characters, float(confidence))
            for row, characters, confidence in zip(codes, per_character, confidences)
        ]

    def read_one(self, image) -> Reading:
        """Reads one raw image (height, width, channels)."""
        return self.read(np.asarray(image)[None])[0]


@dataclass
class Tally:
    """Running counts of a reading session: CAPTCHAs seen, whole ones right, characters right."""

    seen: int = 0
    whole_correct: int = 0
    characters_correct: int = 0
    characters_seen: int = 0

    def add(self, true_codes, predicted_codes) -> np.ndarray:
        """Counts one CAPTCHA; returns which of its positions were read right (bool, (length,)).

        A position where neither the truth nor the reading has a character
        (code -1 on both sides: a short label read as short) is right but is
        not counted as a character.
        """
        true_codes, predicted_codes = np.asarray(true_codes), np.asarray(predicted_codes)
        if true_codes.shape != predicted_codes.shape or true_codes.ndim != 1:
            raise ValueError(
                f"Expected true and predicted codes of the same shape (length,). "
                f"Received: {true_codes.shape} and {predicted_codes.shape}"
            )
        correct = true_codes == predicted_codes
        self.seen += 1
        self.whole_correct += int(correct.all())
        characters = (true_codes >= 0) | (predicted_codes >= 0)
        self.characters_correct += int((correct & characters).sum())
        self.characters_seen += int(characters.sum())
        return correct

    @property
    def whole_accuracy(self) -> float:
        """Fraction of CAPTCHAs read entirely right (0 before the first)."""
        return self.whole_correct / self.seen if self.seen else 0.0

    @property
    def character_accuracy(self) -> float:
        """Fraction of characters read right (0 before the first)."""
        return self.characters_correct / self.characters_seen if self.characters_seen else 0.0

    def as_dict(self) -> dict:
        return {
            "seen": self.seen,
            "whole_correct": self.whole_correct,
            "whole_accuracy": self.whole_accuracy,
            "characters_correct": self.characters_correct,
            "characters_seen": self.characters_seen,
            "character_accuracy": self.character_accuracy,
        }
