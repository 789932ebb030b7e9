"""The CAPTCHA viewer of `inference.py`: CAPTCHA after CAPTCHA read by a model, `n` next, `q` quit.

    session = Session(Reader(model), draw=lambda index: make_captcha("inference/7", index, generator),
                      views=[TextView()])
    run_text(session, sys.stdin)          # one line per CAPTCHA in the terminal
    run_window(session, length=4)         # or a matplotlib window driven by key presses

A `Session` draws each CAPTCHA with the function it is given (the entry point
chooses the generator, so this module needs nothing from `data/`), reads it
with a `models.reader.Reader`, keeps a `Tally` and shows the result in its
views: `TextView` prints one line, `WindowView` redraws a figure in place.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

from core.alphabet import Alphabet

NEXT_KEYS = ("n", "", " ", "enter", "right")
QUIT_KEYS = ("q", "escape")
KEYS_HELP = "n (or Enter) next, q quit"


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
        """The counts and both accuracies, for a command's result."""
        return {
            "seen": self.seen,
            "whole_correct": self.whole_correct,
            "whole_accuracy": self.whole_accuracy,
            "characters_correct": self.characters_correct,
            "characters_seen": self.characters_seen,
            "character_accuracy": self.character_accuracy,
        }


def marked_text(reading_codes, correct, alphabet: Alphabet) -> str:
    """The text read with each wrong character in brackets and `_` for one not read: 4[7]21, 48[_]1.

    Positions rightly left unread (after a label shorter than the longest) show nothing.
    """
    characters = [alphabet.characters[code] if code >= 0 else "_" for code in reading_codes]
    return "".join(
        character if right else f"[{character}]"
        for character, code, right in zip(characters, reading_codes, correct)
        if code >= 0 or not right
    )


def format_confidences(confidences) -> str:
    return " ".join("  -  " if np.isnan(value) else f"{value:.2f}" for value in confidences)


def format_tally(tally) -> str:
    return (
        f"seen {tally.seen}, whole right {tally.whole_correct} ({100 * tally.whole_accuracy:.1f}%), "
        f"characters right {tally.characters_correct}/{tally.characters_seen} ({100 * tally.character_accuracy:.1f}%)"
    )


class Session:
    """One viewing session: draws CAPTCHA after CAPTCHA, reads it, keeps the tally; keys drive it.

    Both modes use it: the window calls `handle_key` from its key handler, the
    terminal for each line of standard input.

    Args:
        reader: A `models.reader.Reader`.
        draw: Function of the CAPTCHA's index (0, 1, ...) returning (PIL image or array, its text).
        views: Objects with `show(session)` (called after each CAPTCHA) and `hint(text)`.
    """

    def __init__(self, reader, draw, views=()):
        self.reader, self.draw = reader, draw
        self.views = list(views)
        self.tally = Tally()
        self.image = self.truth = self.reading = self.correct = None

    def next(self) -> None:
        """Draws the next CAPTCHA, reads it, counts it and shows it."""
        self.image, self.truth = self.draw(self.tally.seen)
        self.reading = self.reader.read_one(np.asarray(self.image))
        self.correct = self.tally.add(self.reader.alphabet.encode(self.truth), self.reading.codes)
        for view in self.views:
            view.show(self)

    def handle_key(self, key: str | None) -> bool:
        """Acts on one key or command line: next (`n`, Enter), quit (`q`); others only get a hint.

        Returns:
            False when the session should end, True otherwise.
        """
        key = (key or "").strip().lower()
        if key in QUIT_KEYS:
            return False
        if key in NEXT_KEYS:
            self.next()
        else:
            for view in self.views:
                view.hint(f"unknown key {key!r}: {KEYS_HELP}")
        return True

    def line(self) -> str:
        """The current CAPTCHA in one line: truth, text read with wrong characters marked, confidences, tally."""
        verdict = "right" if self.correct.all() else "WRONG"
        marked = marked_text(self.reading.codes, self.correct, self.reader.alphabet)
        return (
            f"#{self.tally.seen}  truth {self.truth}  read {marked}  {verdict}  "
            f"confidences {format_confidences(self.reading.character_confidences)}  |  {format_tally(self.tally)}"
        )


class TextView:
    """Prints one line per CAPTCHA (and hints) to a stream."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def show(self, session: Session) -> None:
        print(session.line(), file=self.stream, flush=True)

    def hint(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class WindowView:
    """Draws the CAPTCHA, the truth, the text read and the tally on a matplotlib figure, redrawn in place.

    Args:
        figure: A matplotlib figure (pyplot's for a window, any for tests).
        length: Characters per CAPTCHA (one column of texts each).
    """

    def __init__(self, figure, length: int):
        self.figure = figure
        self.image_axes = figure.add_axes((0.03, 0.38, 0.94, 0.52))
        self.image_axes.set_axis_off()
        self.image_artist = None
        self.title = figure.text(0.5, 0.95, "", ha="center", va="center", fontsize=13, weight="bold")
        left, step = 0.5 - 0.06 * (length - 1) / 2, 0.06
        figure.text(left - 0.09, 0.30, "truth", ha="right", va="center", fontsize=10, color="dimgray")
        figure.text(left - 0.09, 0.22, "read", ha="right", va="center", fontsize=10, color="dimgray")
        figure.text(left - 0.09, 0.15, "confidence", ha="right", va="center", fontsize=10, color="dimgray")
        positions = [left + step * index for index in range(length)]
        self.truth_texts = [figure.text(x, 0.30, "", ha="center", va="center", fontsize=16) for x in positions]
        self.read_texts = [
            figure.text(x, 0.22, "", ha="center", va="center", fontsize=16, weight="bold") for x in positions
        ]
        self.confidence_texts = [figure.text(x, 0.15, "", ha="center", va="center", fontsize=9) for x in positions]
        self.tally_text = figure.text(0.5, 0.07, "", ha="center", va="center", fontsize=10)
        self.hint_text = figure.text(0.5, 0.02, KEYS_HELP, ha="center", va="center", fontsize=9, color="dimgray")

    def show(self, session: Session) -> None:
        image = np.asarray(session.image)
        if self.image_artist is None or self.image_artist.get_array().shape != image.shape:
            self.image_axes.clear()
            self.image_axes.set_axis_off()
            self.image_artist = self.image_axes.imshow(image)
        else:
            self.image_artist.set_data(image)
        alphabet = session.reader.alphabet
        right = bool(session.correct.all())
        self.title.set_text(f"CAPTCHA #{session.tally.seen}: " + ("read right" if right else "read wrong"))
        self.title.set_color("forestgreen" if right else "firebrick")
        for index, code in enumerate(session.reading.codes):
            color = "forestgreen" if session.correct[index] else "firebrick"
            self.truth_texts[index].set_text(session.truth[index])
            self.read_texts[index].set_text(alphabet.characters[code] if code >= 0 else "_")
            self.read_texts[index].set_color(color)
            confidence = session.reading.character_confidences[index]
            self.confidence_texts[index].set_text("-" if np.isnan(confidence) else f"{confidence:.2f}")
            self.confidence_texts[index].set_color(color)
        self.tally_text.set_text(format_tally(session.tally))
        self.hint_text.set_text(KEYS_HELP)
        self.figure.canvas.draw_idle()

    def hint(self, text: str) -> None:
        self.hint_text.set_text(text)
        self.figure.canvas.draw_idle()

    def connect(self, session: Session) -> None:
        """Sends the figure's key presses to `session`; `q` closes the window."""

        def on_key(event):
            if event.key is None or (len(event.key) > 1 and event.key not in NEXT_KEYS + QUIT_KEYS):
                return  # Modifier keys (shift, control) arrive on their own; they are not commands.
            if not session.handle_key(event.key):
                import matplotlib.pyplot as pyplot

                pyplot.close(self.figure)

        manager = getattr(self.figure.canvas, "manager", None)
        if manager is not None and getattr(manager, "key_press_handler_id", None) is not None:
            # matplotlib's own keys (q closes, s saves, ...) would act beside ours.
            self.figure.canvas.mpl_disconnect(manager.key_press_handler_id)
        self.figure.canvas.mpl_connect("key_press_event", on_key)


def display_available() -> bool:
    """True when a window can open: a display is set and matplotlib has an interactive backend."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import matplotlib
    from matplotlib.backends import BackendFilter, backend_registry

    interactive = {name.lower() for name in backend_registry.list_builtin(BackendFilter.INTERACTIVE)}
    return matplotlib.get_backend().lower() in interactive


def run_text(session: Session, lines) -> None:
    """Shows the first CAPTCHA, then one command per line of `lines` until `q` or the end of input."""
    session.next()
    for line in lines:
        if not session.handle_key(line):
            break


def run_window(session: Session, length: int) -> None:
    """Opens a matplotlib window driven by key presses; returns when it is closed."""
    import matplotlib.pyplot as pyplot

    figure = pyplot.figure("captcha-kit inference", figsize=(7, 4.6))
    view = WindowView(figure, length)
    view.connect(session)
    session.views.insert(0, view)
    session.next()
    pyplot.show()
