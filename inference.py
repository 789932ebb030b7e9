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
terminal mode is chosen by itself when no display is available. The viewer
itself is `models.viewer`.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from core.alphabet import add_alphabet_arguments, alphabet_from_arguments
from core.quiet import load_keras

REFERENCE_MODEL = Path(__file__).resolve().parent / "reference" / "reference.keras"


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


def main(argv=None) -> dict:
    """Runs a viewing session; returns the model, seed, mode and the final tally (`models.viewer.Tally.as_dict`)."""
    args = build_parser().parse_args(argv)
    load_keras()
    from data.generate import generator_for, make_captcha
    from models.reader import load_reader
    from models.viewer import KEYS_HELP, Session, TextView, display_available, format_tally, run_text, run_window

    model_path = Path(args.model) if args.model else REFERENCE_MODEL
    try:
        if args.model is None and not model_path.is_file():
            raise FileNotFoundError(
                f"The reference model {model_path} is missing (it is trained and committed separately). "
                "--model PATH reads any .keras file of the kit, e.g. my_model.keras from `python train.py`."
            )
        reader = load_reader(model_path, alphabet_from_arguments(args, optional=True))
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
    session = Session(reader, lambda index: make_captcha(f"inference/{seed}", index, generator), views=[TextView()])
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
