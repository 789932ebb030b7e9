"""Generates the assignment's CAPTCHA folders with `multicolorcaptcha`.

    python -m data.generate                      # capts_train/ and capts_val/
    python -m data.generate --train-count 2000 --val-count 500 --seed 7

Every image is seeded on its own (`seed/split/index`), so a folder is the same
whatever the number of worker processes, and an interrupted run continues
with `--resume` exactly where it stopped. multicolorcaptcha draws from
Python's global `random` and lists its fonts in file-system order; we sort the
font list so that the result does not depend on that order.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from functools import partial
from multiprocessing import Pool
from pathlib import Path

from data.alphabet import DIGITS, Alphabet
from data.files import atomic_path
from data.labels import kit_filename, list_image_files

MULTICOLOR_ALPHABET = Alphabet(DIGITS, 4)
IMAGE_SIZE = (144, 256)  # (height, width) of CaptchaGenerator(0)
DEFAULT_TRAIN_COUNT = 30_000
DEFAULT_VAL_COUNT = 5_000
MANIFEST_NAME = "dataset.json"

_generator = None


def _multicolor_generator():
    """One CaptchaGenerator per process, with its font list in a fixed order."""
    global _generator
    if _generator is None:
        from multicolorcaptcha import CaptchaGenerator

        _generator = CaptchaGenerator(0)
        _generator.l_fonts.sort()
    return _generator


def make_captcha(seed: str, index: int):
    """Draws CAPTCHA number `index` of the stream named `seed`.

    Returns:
        (PIL RGB image of 144x256, its four-digit label).
    """
    random.seed(f"{seed}/{index}")
    captcha = _multicolor_generator().gen_captcha_image(difficult_level=0)
    return captcha.image.convert("RGB"), captcha.characters


def _write_one(folder: Path, seed: str, index: int) -> str:
    image, label = make_captcha(seed, index)
    path = folder / kit_filename(label, index)
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG")
    return path.name


def generate_folder(
    folder: str | Path,
    count: int,
    seed: str | int = 0,
    workers: int | None = None,
    force: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Fills `folder` with `count` CAPTCHAs named `LABEL_INDEX.png`.

    Args:
        folder: Destination; created if missing.
        count: Number of images.
        seed: Names the random stream; the same seed gives the same images.
        workers: Processes to use (default: every CPU core).
        force: Delete the images already in `folder` first.
        resume: Keep the images of an interrupted run with the same seed and
            make only the missing ones.
        progress: Show a progress bar.

    Returns:
        The folder.
    """
    from tqdm import tqdm

    if count < 1:
        raise ValueError(f"`count` must be at least 1. Received: count={count}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "generator": "multicolorcaptcha==1.2.0",
        "captcha_size_num": 0,
        "difficult_level": 0,
        "seed": str(seed),
        "count": count,
    }
    # A run killed mid-write leaves its temporary files (never a half-written image under a real name).
    for leftover in folder.glob(".*.tmp*"):
        leftover.unlink(missing_ok=True)
    existing = list_image_files(folder)
    done = set()
    if existing:
        previous = read_manifest(folder)
        if resume and previous.get("seed") == str(seed) and previous.get("count") == count:
            done = {_kit_index(path.name) for path in existing}
        elif force:
            for path in existing:
                path.unlink()
            (folder / MANIFEST_NAME).unlink(missing_ok=True)
        else:
            raise FileExistsError(
                f"{folder} already holds {len(existing)} images. Pass --force to replace them"
                + (
                    ", or --resume with the same --seed and count to finish an interrupted run."
                    if previous.get("complete") is False
                    else "."
                )
            )
    _write_manifest(folder, {**manifest, "complete": False})

    indices = [index for index in range(count) if index not in done]
    workers = workers or os.cpu_count() or 1
    write = partial(_write_one, folder, str(seed))
    bar = tqdm(
        total=count,
        initial=count - len(indices),
        desc=f"Generating {folder}",
        unit="img",
        disable=not progress,
        file=sys.stdout,
    )
    if workers == 1:
        for index in indices:
            write(index)
            bar.update()
    else:
        with Pool(workers) as pool:
            for _ in pool.imap_unordered(write, indices, chunksize=64):
                bar.update()
    bar.close()
    _write_manifest(folder, {**manifest, "complete": True})
    return folder


def _kit_index(filename: str) -> int | None:
    """The index of a kit-named file (`LABEL_INDEX.png`), None for other names."""
    tail = Path(filename).stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() and "_" in filename else None


def read_manifest(folder: str | Path) -> dict:
    """The folder's `dataset.json` (seed, count, whether the run completed), or {} when there is none."""
    try:
        return json.loads((Path(folder) / MANIFEST_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_manifest(folder: Path, manifest: dict) -> None:
    with atomic_path(folder / MANIFEST_NAME) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2) + "\n")


def generate_assignment_data(
    train_dir="capts_train",
    val_dir="capts_val",
    train_count=DEFAULT_TRAIN_COUNT,
    val_count=DEFAULT_VAL_COUNT,
    seed=0,
    **options,
) -> None:
    """Generates both assignment folders from one seed (distinct streams for each)."""
    generate_folder(train_dir, train_count, seed=f"{seed}/train", **options)
    generate_folder(val_dir, val_count, seed=f"{seed}/val", **options)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-dir", default="capts_train", help="training folder (default: %(default)s)")
    parser.add_argument("--val-dir", default="capts_val", help="validation folder (default: %(default)s)")
    parser.add_argument(
        "--train-count", type=int, default=DEFAULT_TRAIN_COUNT, help="training images (default: %(default)s)"
    )
    parser.add_argument(
        "--val-count", type=int, default=DEFAULT_VAL_COUNT, help="validation images (default: %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed gives the same images (default: %(default)s)"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    parser.add_argument("--force", action="store_true", help="delete images already in the folders first")
    parser.add_argument("--resume", action="store_true", help="finish an interrupted run with the same seed and counts")
    args = parser.parse_args(argv)
    try:
        generate_assignment_data(
            args.train_dir,
            args.val_dir,
            args.train_count,
            args.val_count,
            seed=args.seed,
            workers=args.workers,
            force=args.force,
            resume=args.resume,
        )
    except (FileExistsError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    return Path(args.train_dir), Path(args.val_dir)


if __name__ == "__main__":
    main()
