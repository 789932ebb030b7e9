"""The alphabet of a CAPTCHA task and the one label encoding the kit uses.

Every part of the kit (reading folders, training, evaluation, inference)
turns text into integer codes and back through an `Alphabet`, so there is
exactly one place that decides which characters exist and in which order.
"""

from __future__ import annotations

import argparse
import string

import numpy as np

DIGITS = "0123456789"
# The notebook's pool: digits and letters without the look-alikes l, o, I and O.
IMAGECAPTCHA58 = "0123456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"

# Named character sets for `--alphabet`; any other value is taken as the characters themselves.
ALPHABET_PRESETS = {
    "digits": DIGITS,
    "lowercase": string.ascii_lowercase,
    "uppercase": string.ascii_uppercase,
    "digits_lowercase": DIGITS + string.ascii_lowercase,
    "digits_uppercase": DIGITS + string.ascii_uppercase,
    "imagecaptcha58": IMAGECAPTCHA58,
}


def resolve_characters(name_or_characters: str) -> str:
    """The characters of a preset name (`digits`, `imagecaptcha58`, ...), or the argument itself.

    Args:
        name_or_characters: A key of `ALPHABET_PRESETS` or literal characters such as "0123456789ABC".

    Returns:
        The characters in class order.
    """
    if not name_or_characters:
        raise ValueError(
            f"`alphabet` must be a preset ({', '.join(ALPHABET_PRESETS)}) or literal characters. "
            f"Received: alphabet={name_or_characters!r}"
        )
    return ALPHABET_PRESETS.get(name_or_characters, name_or_characters)


def alphabet_from_options(
    alphabet: str | None = "digits", length: int | None = 4, min_length: int | None = None
) -> Alphabet:
    """The `Alphabet` that command-line options `--alphabet`, `--length` and `--min-length` name.

    None stands for the defaults: digits, 4 characters, and a minimum equal to
    the length (every label exactly `length` long).
    """
    return Alphabet(resolve_characters(alphabet or "digits"), 4 if length is None else length, min_length)


def add_alphabet_arguments(parser, purpose: str = "", default_characters: str = "digits") -> None:
    """Adds `--alphabet`, `--length` and `--min-length`: the one definition of the options that name an `Alphabet`.

    All three default to None, so `alphabet_from_arguments` can tell whether
    any was given (models record their own alphabet, generators have their own).

    Args:
        parser: An `argparse` parser (or argument group).
        purpose: Starts each help text, e.g. "for models that record no alphabet: ".
        default_characters: The preset the help names as the default.
    """
    group = parser.add_argument_group("alphabet") if isinstance(parser, argparse.ArgumentParser) else parser
    group.add_argument(
        "--alphabet",
        default=None,
        help=f"{purpose}the characters of the labels: a preset ({', '.join(ALPHABET_PRESETS)}) or the characters "
        f"themselves (default: {default_characters})",
    )
    group.add_argument(
        "--length",
        type=int,
        default=None,
        help=f"{purpose}characters per label, the longest with --min-length (default: 4)",
    )
    group.add_argument(
        "--min-length",
        type=int,
        default=None,
        help=f"{purpose}the shortest label, for labels of --min-length to --length characters; only sequence readers "
        "(crnn_ctc, cnn_seq2seq) read them (default: --length, every label one length)",
    )


def alphabet_from_arguments(args, default_characters: str = "digits", optional: bool = False) -> Alphabet | None:
    """The `Alphabet` that the options of `add_alphabet_arguments` name.

    Args:
        args: The parsed arguments.
        default_characters: The characters when `--alphabet` is not given.
        optional: Return None when none of the three options is given.
    """
    given = (args.alphabet, args.length, args.min_length)
    if optional and all(value is None for value in given):
        return None
    return alphabet_from_options(args.alphabet or default_characters, args.length, args.min_length)


def alphabet_of_labels(labels) -> tuple[str, int, int | None]:
    """The `--alphabet`, `--length` and `--min-length` that a set of labels needs, for folders that say nothing.

    The characters are the ten digits when the labels hold nothing else, a
    preset when they hold exactly its characters, and otherwise the
    characters found, in code-point order. The length is the longest label's,
    with a minimum only when lengths differ.

    Raises:
        ValueError: No labels.
    """
    labels = [label for label in labels if label]  # An empty label is refused later, with its file named.
    if not labels:
        raise ValueError("No labels to read an alphabet from.")
    found = set("".join(labels))
    if found <= set(DIGITS):
        characters = "digits"
    else:
        characters = next(
            (name for name, preset in ALPHABET_PRESETS.items() if set(preset) == found), "".join(sorted(found))
        )
    lengths = {len(label) for label in labels}
    return characters, max(lengths), (min(lengths) if len(lengths) > 1 else None)


class Alphabet:
    """Characters a CAPTCHA may contain and how many of them a label has.

    Labels are either all `length` characters long (the default) or, with
    `min_length`, anywhere from `min_length` to `length` characters, as in real
    CAPTCHAs of 4 to 6 characters. Codes always have `length` columns: a
    shorter label is padded with -1 ("no character"), which the CTC loss, the
    decoders and the metrics all read as the end of the text. Only models that
    read a sequence (CTC, seq2seq) can learn variable lengths; models with one
    head per position refuse them (`models.get_model`).

    Args:
        characters: The symbols in class order; class `i` is `characters[i]`.
        length: How many characters every label has; the longest label when `min_length` is given.
        min_length: The shortest label (default: `length`, i.e. fixed-length labels).
    """

    def __init__(self, characters: str = DIGITS, length: int = 4, min_length: int | None = None):
        if not characters or len(set(characters)) != len(characters):
            raise ValueError(
                f"`characters` must be a non-empty string without repeated symbols. Received: characters={characters!r}"
            )
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"`length` must be a positive integer. Received: length={length!r}")
        min_length = length if min_length is None else min_length
        if not isinstance(min_length, int) or not 1 <= min_length <= length:
            raise ValueError(
                f"`min_length` must be an integer from 1 to `length`={length}. Received: min_length={min_length!r}"
            )
        self.characters = characters
        self.length = length
        self.min_length = min_length
        self._index = {character: index for index, character in enumerate(characters)}

    @property
    def num_classes(self) -> int:
        return len(self.characters)

    @property
    def variable_length(self) -> bool:
        """True when labels may be shorter than `length` (`min_length` < `length`)."""
        return self.min_length < self.length

    def __repr__(self) -> str:
        minimum = f", min_length={self.min_length}" if self.variable_length else ""
        return f"Alphabet(characters={self.characters!r}, length={self.length}{minimum})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Alphabet) and self.get_config() == other.get_config()

    def get_config(self) -> dict:
        return {"characters": self.characters, "length": self.length, "min_length": self.min_length}

    def describe_length(self) -> str:
        """The allowed label lengths in words, for messages: "4" or "4 to 6"."""
        return f"{self.min_length} to {self.length}" if self.variable_length else str(self.length)

    def check(self, label: str) -> str | None:
        """Says what is wrong with `label`, or returns None when it is valid."""
        if not self.min_length <= len(label) <= self.length:
            return f"has {len(label)} characters; expected {self.describe_length()}"
        unknown = sorted({character for character in label if character not in self._index})
        if unknown:
            return f"has characters {''.join(unknown)!r} outside the alphabet {self.characters!r}"
        return None

    def encode(self, label: str) -> np.ndarray:
        """Turns a label such as "0427" into `length` class codes, e.g. [0, 4, 2, 7].

        A label shorter than `length` (variable-length alphabets) is padded
        with -1 at the end: "042" with length 5 gives [0, 4, 2, -1, -1].
        """
        problem = self.check(label)
        if problem:
            raise ValueError(f"Label {label!r} {problem}.")
        codes = np.full(self.length, -1, dtype=np.int32)
        codes[: len(label)] = [self._index[character] for character in label]
        return codes

    def encode_many(self, labels) -> np.ndarray:
        """Encodes a sequence of labels into an int32 array of shape (N, length), padded with -1."""
        codes = np.zeros((len(labels), self.length), dtype=np.int32)
        for row, label in enumerate(labels):
            codes[row] = self.encode(label)
        return codes

    def decode(self, codes) -> str:
        """Turns class codes back into text; the inverse of `encode`.

        Negative codes mean "no character" (the padding of a shorter label,
        or a CTC or seq2seq model that read fewer characters than `length`)
        and are skipped.
        """
        return "".join(self.characters[int(code)] for code in codes if int(code) >= 0)

    @property
    def position_name(self) -> str:
        """What one position holds, for reports: "digit" for digit-only alphabets, else "character"."""
        return "digit" if self.characters.isdigit() else "character"
