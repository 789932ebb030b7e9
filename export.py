"""Writes a model file for use elsewhere: ONNX, a TensorFlow SavedModel, or a plain-Keras rewrite of an old file.

    python export.py reference/reference.keras --format onnx --output exported/reference.onnx
    python export.py reference/reference.keras --format saved_model --output exported/reference
    python export.py OLD.keras --format keras --output NEW.keras --check-data capts_val --check-images 512

`onnx` and `saved_model` (`models.export`) take what the `.keras` file takes,
the raw image as float32 pixel values 0-255, and give the same scores; the
kit's record of the model (alphabet, lengths, kind) goes with them. `keras`
(`models.convert`) rewrites a file saved by an earlier version of the kit on
Keras's built-in layers, weights unchanged, so that plain
`keras.models.load_model` opens it without the kit; it then scores both files
on the first `--check-images` images of `--check-data` (or on seeded random
images), prints the largest score difference and exits with status 1 when it
is above `--tolerance`.
"""

from __future__ import annotations

import argparse
import json
import sys

FORMATS = ("onnx", "saved_model", "keras")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="the .keras file to export")
    parser.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    parser.add_argument("--output", required=True, help="the .onnx file, SavedModel folder or .keras file to create")
    check = parser.add_argument_group("score check of --format keras")
    check.add_argument("--check-data", default=None, help="labelled images to compare on (default: random images)")
    check.add_argument("--check-images", type=int, default=256, help="images to compare on (default: %(default)s)")
    check.add_argument(
        "--tolerance", type=float, default=1e-5, help="largest score difference accepted (default: %(default)s)"
    )
    return parser


def check_images(model, folder: str | None, count: int):
    """The images both files are scored on: the first `count` of `folder`, else seeded noise of the input size."""
    import numpy as np

    if count < 1:
        raise ValueError(f"--check-images must be at least 1. Received: {count}")
    if folder is None:
        return np.random.default_rng(15).integers(0, 256, size=(count, *model.input_shape[1:])).astype("float32")
    from data.dataset import load_labelled_folder
    from models.io import model_alphabet

    images = load_labelled_folder(folder, model_alphabet(model), cache=False).images[:count]
    if images.shape[1:] != tuple(model.input_shape[1:]):
        raise ValueError(f"{folder} holds images of {images.shape[1:]}; the model takes {model.input_shape[1:]}.")
    return images.astype("float32")


def main(argv=None):
    """Returns the written path (onnx, saved_model) or the score check (keras, with "passed")."""
    args = build_parser().parse_args(argv)
    from core.quiet import load_keras

    load_keras()
    from models.convert import convert_file
    from models.export import export_model
    from models.io import load_model

    try:
        model = load_model(args.model)
        if args.format != "keras":
            path = export_model(model, args.output, args.format)
            print(f"Wrote {path} ({args.format}) from {args.model}")
            return path
        result = convert_file(args.model, args.output, check_images(model, args.check_data, args.check_images))
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    result["passed"] = result["max_abs_difference"] <= args.tolerance
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(1 if isinstance(outcome, dict) and not outcome["passed"] else 0)
