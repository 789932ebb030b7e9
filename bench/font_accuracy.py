"""Which multicolorcaptcha fonts does a model misread? Per-font character accuracy on fresh images.

    python -m bench.font_accuracy reference/reference.keras
    python -m bench.font_accuracy my_model.keras --images 2000 --seed font_accuracy/1

multicolorcaptcha draws every character in a font picked uniformly from the
44 it bundles. This draws `--images` fresh CAPTCHAs (the library's uniform
choice, as in capts_val/), records the font of every character, reads them
with the model and reports the accuracy per font, worst first. It is the
measurement behind `core.multicolor.HARD_FONTS`, the fonts that
`train.py --hard-font-weight` shows a model more often, and it sums those
ten fonts and the others apart (`hard_fonts`, `other_fonts`: accuracy and
share of the errors), to show what a training change did to each. Writes
bench/results/font_accuracy_<model>.json (or `--output`) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from core import multicolor
from core.files import atomic_path
from core.quiet import load_keras
from data import generate

RESULTS = Path(__file__).resolve().parent / "results"


def draw_with_fonts(count: int, seed: str, captcha_generator=None):
    """`count` multicolorcaptcha images with their labels and the font of each character.

    `captcha_generator` is a `data.generate.MulticolorCaptcha` (default: the
    library's uniform choice of fonts).

    Returns:
        (uint8 images (count, 144, 256, 3), labels, fonts: one list of names per image).
    """
    captcha_generator = captcha_generator or generate.get_generator("multicolorcaptcha")
    images, labels, fonts = [], [], []
    for index in range(count):
        with generate.GenerationRecorder() as recorder:
            image, label = generate.make_captcha(seed, index, captcha_generator)
        if len(recorder.fonts) != len(label):
            raise RuntimeError(f"Recorded {len(recorder.fonts)} fonts for the {len(label)} characters of image {index}")
        images.append(np.asarray(image, dtype=np.uint8))
        labels.append(label)
        fonts.append(recorder.fonts)
    return np.stack(images), labels, fonts


def font_accuracies(labels, readings, fonts) -> list[dict]:
    """Characters and accuracy per font, worst first.

    Args:
        labels: True texts.
        readings: The texts read, in the same order.
        fonts: For each image, the font of each character.
    """
    counts = {}
    for label, reading, image_fonts in zip(labels, readings, fonts):
        for true, read, font in zip(label, reading, image_fonts):
            seen, correct = counts.get(font, (0, 0))
            counts[font] = (seen + 1, correct + int(true == read))
    rows = [
        {"font": font, "characters": seen, "accuracy": round(correct / seen, 4), "errors": seen - correct}
        for font, (seen, correct) in counts.items()
    ]
    return sorted(rows, key=lambda row: (row["accuracy"], row["font"]))


def font_groups(rows: list[dict], hard_fonts=multicolor.HARD_FONTS) -> dict:
    """Characters, accuracy and share of all errors of the hard fonts together and of the other fonts together.

    Args:
        rows: `font_accuracies` rows.
        hard_fonts: The fonts of the first group (default: `core.multicolor.HARD_FONTS`).
    """
    errors = sum(row["errors"] for row in rows)
    groups = {}
    for name, members in (
        ("hard_fonts", [row for row in rows if row["font"] in hard_fonts]),
        ("other_fonts", [row for row in rows if row["font"] not in hard_fonts]),
    ):
        characters = sum(row["characters"] for row in members)
        wrong = sum(row["errors"] for row in members)
        groups[name] = {
            "fonts": len(members),
            "characters": characters,
            "accuracy": round(1 - wrong / characters, 4) if characters else None,
            "share_of_errors": round(wrong / errors, 4) if errors else 0.0,
        }
    return groups


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .keras file that reads four-digit multicolorcaptcha images")
    parser.add_argument("--images", type=int, default=4000, help="fresh images to draw (default: %(default)s)")
    parser.add_argument("--seed", default="font_accuracy/0", help="names the image stream (default: %(default)s)")
    parser.add_argument("--output", help="JSON file (default: bench/results/font_accuracy_<model>.json)")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error(f"--images must be positive. Received: {args.images}")
    load_keras()
    from models.io import load_model, model_alphabet
    from models.reader import Reader

    model = load_model(args.model)
    alphabet = model_alphabet(model)
    started = time.time()
    images, labels, fonts = draw_with_fonts(args.images, args.seed)
    codes = Reader(model, alphabet).codes(images)
    readings = [alphabet.decode(row) for row in codes]
    rows = font_accuracies(labels, readings, fonts)
    errors = sum(row["errors"] for row in rows)
    characters = sum(row["characters"] for row in rows)
    result = {
        "benchmark": "per-font character accuracy on fresh multicolorcaptcha images",
        "command": "python -m bench.font_accuracy " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": str(args.model),
        "images": args.images,
        "seed": args.seed,
        "characters": characters,
        "accuracy": round(1 - errors / characters, 4),
        "seconds": round(time.time() - started, 1),
        **font_groups(rows),
        "fonts": rows,
    }
    output = Path(args.output) if args.output else RESULTS / f"font_accuracy_{Path(args.model).stem}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as temporary:
        temporary.write_text(json.dumps(result, indent=2) + "\n")

    print(f"{'accuracy':>8}  {'chars':>5}  {'share of errors':>15}  font")
    for row in rows:
        share = row["errors"] / errors if errors else 0.0
        print(f"{row['accuracy']:8.3f}  {row['characters']:5d}  {share:15.1%}  {row['font']}")
    for name in ("hard_fonts", "other_fonts"):
        group = result[name]
        print(
            f"{name.replace('_', ' ')} ({group['fonts']}): accuracy {group['accuracy']:.4f} over "
            f"{group['characters']} characters, {group['share_of_errors']:.1%} of the errors"
        )
    print(f"{characters} characters, accuracy {result['accuracy']:.4f}; written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
