"""Shows random CAPTCHAs and what a model reads in them, one at a time: `n` next, `q` quit.

    python inference.py                              # the reference model, reference/reference.keras
    python inference.py --model my_model.keras       # any .keras file of the kit
    python inference.py --seed 7                     # a repeatable sequence of CAPTCHAs
    python inference.py --text                       # in the terminal: n or Enter next, q quit

Each CAPTCHA is drawn fresh, with multicolorcaptcha level 0 for models that
read its four digits on 256x144 images, and with ImageCaptcha at the
model's input size and alphabet for the others. The model reads it; the
truth, the text read (wrong characters marked), each character's confidence
and a running tally (CAPTCHAs seen, whole ones right, characters right) are
shown in a window, or printed one line per CAPTCHA in the terminal. The
terminal mode is chosen by itself when no display is available.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # Keep TensorFlow's start-up chatter out of the report.

import numpy as np  # noqa: E402

from core.alphabet import Alphabet, add_alphabet_arguments, alphabet_from_arguments  # noqa: E402
from data.generate import IMAGE_SIZE, MULTICOLOR_ALPHABET, get_generator, make_captcha  # noqa: E402

REFERENCE_MODEL = Path(__file__).resolve().parent / "reference" / "reference.keras"
NEXT_KEYS = ("n", "", " ", "enter", "right")
QUIT_KEYS = ("q", "escape")
KEYS_HELP = "n (or Enter) next, q quit"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default=None,
        help="a .keras file of the kit, any alphabet and length (default: the reference model, "
        "reference/reference.keras)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the CAPTCHA sequence, for a repeatable one (default: random)"
    )
    parser.add_argument(
        "--text",
        action="store_true",
        help="read keys from standard input and print one line per CAPTCHA instead of opening a window "
        "(chosen by itself when no display is available)",
    )
    add_alphabet_arguments(parser, purpose="for models that record no alphabet: ")
    return parser


def generator_for(alphabet: Alphabet, image_size):
    """multicolorcaptcha for four-digit 256x144 models, else ImageCaptcha at the model's size and alphabet."""
    height, width = image_size
    if alphabet == MULTICOLOR_ALPHABET and (height, width) in (IMAGE_SIZE, (None, None)):
        return get_generator("multicolorcaptcha")
    return get_generator("imagecaptcha", width=width, height=height, alphabet=alphabet)


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
    """One inference session: draws CAPTCHA after CAPTCHA, reads it, keeps the tally; keys drive it.

    Both modes use it: the window calls `handle_key` from its key handler, the
    terminal for each line of standard input.

    Args:
        reader: A `models.inference.Reader`.
        generator: From `data.generate.get_generator`.
        seed: Names the CAPTCHA sequence (`data.generate.make_captcha`).
        views: Objects with `show(session)` (called after each CAPTCHA) and `hint(text)`.
    """

    def __init__(self, reader, generator, seed, views=()):
        from models.inference import Tally

        self.reader, self.generator, self.seed = reader, generator, str(seed)
        self.views = list(views)
        self.tally = Tally()
        self.image = self.truth = self.reading = self.correct = None

    def next(self) -> None:
        """Draws the next CAPTCHA, reads it, counts it and shows it."""
        self.image, self.truth = make_captcha(f"inference/{self.seed}", self.tally.seen, self.generator)
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


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    from models.inference import Reader
    from models.io import load_model

    model_path = Path(args.model) if args.model else REFERENCE_MODEL
    try:
        if args.model is None and not model_path.is_file():
            raise FileNotFoundError(
                f"The reference model {model_path} is missing (it is trained and committed separately). "
                "--model PATH reads any .keras file of the kit, e.g. my_model.keras from `python train.py`."
            )
        model = load_model(model_path)
        reader = Reader(model, alphabet_from_arguments(args, optional=True))
        generator = generator_for(reader.alphabet, reader.image_size)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

    seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
    text_mode = args.text or not display_available()
    if not args.text and text_mode:
        print("No display (DISPLAY, WAYLAND_DISPLAY) or no interactive matplotlib backend: terminal mode.")
    print(
        f"{model_path}: reads {reader.alphabet.length} characters of {reader.alphabet.characters!r}; "
        f"CAPTCHAs from {generator.name}, seed {seed} (--seed {seed} repeats them); keys: {KEYS_HELP}",
        flush=True,
    )
    session = Session(reader, generator, seed, views=[TextView()])
    try:
        if text_mode:
            run_text(session, sys.stdin)
        else:
            run_window(session, reader.alphabet.length)
    except KeyboardInterrupt:  # Ctrl-C ends the session like q: the tally is still reported.
        print()
    print(f"Done: {format_tally(session.tally)}")
    return {
        "model": str(model_path),
        "seed": seed,
        "mode": "text" if text_mode else "window",
        **session.tally.as_dict(),
    }


if __name__ == "__main__":
    main()
