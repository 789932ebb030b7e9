"""Rewrites a `.keras` file of an earlier kit version to load with plain Keras, weights and scores unchanged.

    python -m models.convert reference/stage2.keras runs/stage2_portable.keras
    python -m models.convert OLD.keras NEW.keras --data capts_val --images 512

Loads OLD through the kit (its legacy `ForegroundMap`, `Grayscale` and
`AlphabetTag` layers), rebuilds the network on Keras's built-in layers with
the same layer objects and weights (`models.layers.replace_legacy_layers`),
and saves it with `models.io.save_model`, which adds the `captcha_kit.json`
member (alphabet, lengths, kind of scores). It then loads NEW back and
compares both models' scores on the first `--images` images of `--data` (or,
without `--data`, on seeded random images of the model's input size), and
prints the largest absolute difference; above `--tolerance` it fails with
exit status 1. reference/reference.keras was made this way (reference/README.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from models.io import load_model, model_alphabet, save_model
from models.layers import has_legacy_layers

DEFAULT_TOLERANCE = 1e-5


def check_images(model, data: str | None, count: int, seed: int = 15) -> np.ndarray:
    """The images both models are scored on: the first `count` of the folder `data`, else seeded noise.

    Raises:
        ValueError: `count` below 1, or a folder whose images do not fit the model.
    """
    if count < 1:
        raise ValueError(f"`images` must be at least 1. Received: {count}")
    if data is None:
        shape = (count, *model.input_shape[1:])
        return np.random.default_rng(seed).integers(0, 256, size=shape).astype("float32")
    from data.dataset import load_labelled_folder

    images = load_labelled_folder(data, model_alphabet(model)).images[:count]
    if images.shape[1:] != tuple(model.input_shape[1:]):
        raise ValueError(f"{data} holds images of {images.shape[1:]}; the model takes {model.input_shape[1:]}.")
    return images.astype("float32")


def convert_file(
    source: str | Path,
    destination: str | Path,
    data: str | None = None,
    images: int = 256,
    batch_size: int = 64,
) -> dict:
    """Converts `source` to `destination` and measures how far the scores moved.

    Args:
        source: A `.keras` file (any the kit loads; one without legacy layers is re-saved as it is).
        destination: The `.keras` file to write (not `source` itself).
        data: Folder of labelled images to compare the scores on; None: random images.
        images: How many images to compare on.
        batch_size: Images per prediction batch.

    Returns:
        {"source", "destination", "had_legacy_layers", "images", "max_abs_difference"}.

    Raises:
        FileNotFoundError: No `source`.
        ValueError: `destination` is `source`, or a file or folder the kit cannot use.
    """
    source, destination = Path(source), Path(destination)
    if destination.resolve() == source.resolve():
        raise ValueError(f"Write the converted model to a new file, then replace the old one. Received: {destination}")
    old = load_model(source)
    batch = check_images(old, data, images)
    legacy = has_legacy_layers(old)
    save_model(old, destination)
    new = load_model(destination)
    if model_alphabet(new) != model_alphabet(old):
        raise ValueError(f"{destination} records {model_alphabet(new)}; {source} records {model_alphabet(old)}.")
    before = old.predict(batch, batch_size=batch_size, verbose=0)
    after = new.predict(batch, batch_size=batch_size, verbose=0)
    return {
        "source": str(source),
        "destination": str(destination),
        "had_legacy_layers": legacy,
        "images": len(batch),
        "max_abs_difference": float(np.max(np.abs(np.asarray(before) - np.asarray(after)))),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m models.convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="the .keras file saved by earlier versions of the kit")
    parser.add_argument("destination", help="the .keras file to write")
    check = parser.add_argument_group("score check")
    check.add_argument("--data", default=None, help="folder of labelled images to compare on (default: random images)")
    check.add_argument("--images", type=int, default=256, help="images to compare on (default: %(default)s)")
    check.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="largest absolute score difference accepted (default: %(default)s)",
    )
    return parser


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    try:
        result = convert_file(args.source, args.destination, data=args.data, images=args.images)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    result["passed"] = result["max_abs_difference"] <= args.tolerance
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
