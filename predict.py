"""Reads the CAPTCHAs of a folder of unlabelled images and writes what a model reads, with confidences.

    python predict.py new_captchas/ --model my_model.keras --output predictions.csv

Each CSV row holds the file name, the text read and the model's confidence
in it (the probability it gives that text: the product of the per-position
maxima, or of the greedy CTC path). Images of another size than the model's
input are resized to it. The alphabet comes from the model file.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # Keep TensorFlow's start-up chatter out of the report.

import numpy as np  # noqa: E402

from core.alphabet import Alphabet, add_alphabet_arguments, alphabet_from_arguments  # noqa: E402
from core.files import atomic_path  # noqa: E402
from data.dataset import decode_image  # noqa: E402
from data.labels import list_image_files  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="folder of images to read")
    parser.add_argument("--model", default="my_model.keras", help="a .keras file (default: %(default)s)")
    parser.add_argument("--output", default="predictions.csv", help="CSV file to write (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per prediction batch")
    parser.add_argument("--show", type=int, default=5, help="rows to print (default: %(default)s)")
    add_alphabet_arguments(parser, purpose="for models that record no alphabet: ")
    return parser


def predict_folder(model, folder, alphabet: Alphabet, batch_size: int = 256) -> list[dict]:
    """Reads every image of `folder`.

    Returns:
        One dict per image, in file-name order: filename, prediction, confidence.
    """
    from models.decoding import decode_with_confidence

    paths = list_image_files(folder)
    if not paths:
        raise ValueError(f"No images found in {folder}.")
    size = tuple(model.input_shape[1:3])
    images = np.stack([decode_image(path, size=None if None in size else size) for path in paths])
    outputs = model.predict(images, batch_size=batch_size, verbose=0)
    codes, confidences = decode_with_confidence(outputs, alphabet)
    return [
        {"filename": path.name, "prediction": alphabet.decode(row), "confidence": round(float(confidence), 6)}
        for path, row, confidence in zip(paths, codes, confidences)
    ]


def write_predictions(rows: list[dict], path: str | Path) -> Path:
    """Writes the rows of `predict_folder` as CSV, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["filename", "prediction", "confidence"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def main(argv=None) -> Path:
    args = build_parser().parse_args(argv)
    from models.io import load_model, model_alphabet

    try:
        model = load_model(args.model)
        alphabet = model_alphabet(model, alphabet_from_arguments(args, optional=True))
        rows = predict_folder(model, args.folder, alphabet, args.batch_size)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    path = write_predictions(rows, args.output)
    for row in rows[: args.show]:
        print(f"  {row['filename']}: {row['prediction']} ({row['confidence']:.3f})")
    print(f"{len(rows)} predictions written to {path}")
    return path


if __name__ == "__main__":
    main()
