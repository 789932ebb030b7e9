"""Reads unlabelled CAPTCHA images (files and folders of them) and writes what a model reads, with confidences.

    python predict.py new_captchas/ --model my_model.keras --output predictions.csv
    python predict.py one.png two.jpg more_captchas/

Each CSV row holds the file name, the text read and the model's confidence
in it (the probability it gives that text: the product of the per-position
maxima, or of the greedy CTC path). A folder stands for the images directly
inside it, in file-name order. Images of another size than the model's
input are resized to it. The alphabet comes from the model file.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from core.alphabet import add_alphabet_arguments, alphabet_from_arguments
from core.files import atomic_path
from core.quiet import load_keras
from data.labels import IMAGE_SUFFIXES, is_image_file, list_image_files


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders of images to read")
    parser.add_argument("--model", default="my_model.keras", help="a .keras file (default: %(default)s)")
    parser.add_argument("--output", default="predictions.csv", help="CSV file to write (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per prediction batch")
    parser.add_argument("--show", type=int, default=5, help="rows to print (default: %(default)s)")
    add_alphabet_arguments(parser, purpose="for models that record no alphabet: ")
    return parser


def image_paths(paths) -> list[Path]:
    """The image files named by `paths`: files as given, folders by the images directly inside them.

    Raises:
        FileNotFoundError: A path does not exist.
        ValueError: A file is not an image, a folder holds none, or nothing is left.
    """
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            images = list_image_files(path)
            if not images:
                raise ValueError(f"No images found in {path} (image types: {', '.join(IMAGE_SUFFIXES)}).")
            found.extend(images)
        elif path.is_file():
            if not is_image_file(path):
                raise ValueError(f"{path} is not an image file (image types: {', '.join(IMAGE_SUFFIXES)}).")
            found.append(path)
        else:
            raise FileNotFoundError(f"No such image file or folder: {path}")
    return found


def predict_files(reader, paths: list[Path], batch_size: int = 256) -> list[dict]:
    """Reads image files with a `models.reader.Reader`, decoding and resizing them a batch at a time.

    Returns:
        One dict per image, in order: filename, prediction, confidence.
    """
    import numpy as np

    from data.dataset import decode_image

    size = None if None in reader.image_size else reader.image_size
    rows = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images = [decode_image(path, size=size) for path in chunk]
        for path, image in zip(chunk, images):
            if image.shape != images[0].shape:  # Only where the model leaves its input size open.
                raise ValueError(
                    f"The model takes any size, but the images read together must share one: {path} is "
                    f"{image.shape[:2]} (height, width), {chunk[0]} is {images[0].shape[:2]}."
                )
        readings = reader.read(np.stack(images))
        rows.extend(
            {"filename": path.name, "prediction": reading.text, "confidence": round(reading.confidence, 6)}
            for path, reading in zip(chunk, readings)
        )
    return rows


def write_predictions(rows: list[dict], path: str | Path) -> Path:
    """Writes the rows of `predict_files` as CSV, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["filename", "prediction", "confidence"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def main(argv=None) -> Path:
    """Reads the images; returns the CSV file written."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1. Received: {args.batch_size}")
    try:
        paths = image_paths(args.paths)
        load_keras()
        from models.reader import load_reader

        reader = load_reader(args.model, alphabet_from_arguments(args, optional=True))
        rows = predict_files(reader, paths, args.batch_size)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        path = write_predictions(rows, args.output)
    except OSError as error:  # A folder in the way, a file where a folder should be, no permission.
        print(f"error: cannot write {args.output}: {error.strerror or error}", file=sys.stderr)
        sys.exit(2)
    for row in rows[: args.show]:
        print(f"  {row['filename']}: {row['prediction']} ({row['confidence']:.3f})")
    print(f"{len(rows)} predictions written to {path}")
    return path


if __name__ == "__main__":
    main()
