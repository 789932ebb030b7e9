"""Reads a folder of labelled CAPTCHA images into arrays, decoding each PNG once.

The decoded `uint8` images are cached in `<folder>/.cache/` and reused until
the folder changes (a file added, removed or rewritten), so training epochs
and repeated evaluations never decode PNGs again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from data.alphabet import Alphabet
from data.files import atomic_path
from data.labels import find_labelled_images

CACHE_DIR = ".cache"
CACHE_VERSION = 1


@dataclass
class LabelledImages:
    """Images (N, height, width, 3) uint8, their labels as text and class codes."""

    images: np.ndarray
    labels: list[str]
    codes: np.ndarray
    filenames: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)


def decode_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decodes one image file to an RGB uint8 array of shape (height, width, 3).

    Args:
        path: Image file.
        size: Optional (height, width) to resize to; without it the image
            keeps its own size.
    """
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"Cannot decode image {path}: {error}") from error


def _fingerprint(paths: list[Path], labels: list[str], size) -> str:
    digest = hashlib.sha1(f"v{CACHE_VERSION} size={size}".encode())
    for path, label in zip(paths, labels):
        stat = path.stat()
        digest.update(f"{path.name}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def load_labelled_folder(
    folder: str | Path,
    alphabet: Alphabet,
    labels_file: str | Path | None = None,
    image_size: tuple[int, int] | None = None,
    cache: bool = True,
    workers: int | None = None,
) -> LabelledImages:
    """Loads every labelled image of `folder`.

    Args:
        folder: Folder of images named by label, or with a labels file.
        alphabet: The characters and label length to expect.
        labels_file: Optional `FILENAME LABEL` file.
        image_size: (height, width) every image must have; None accepts the
            size of the first image and requires all others to match it.
        cache: Read and write the decoded-image cache in `<folder>/.cache/`.
        workers: Decoding processes (default: every CPU core).

    Returns:
        A `LabelledImages`.
    """
    folder = Path(folder)
    found = find_labelled_images(folder, alphabet, labels_file)
    fingerprint = _fingerprint(found.paths, found.labels, image_size)
    cache_dir = folder / CACHE_DIR
    images = _read_cache(cache_dir, fingerprint) if cache else None
    if images is None:
        images = _decode_all(found.paths, image_size, workers)
        if cache:
            _write_cache(cache_dir, fingerprint, images)
    return LabelledImages(
        images=images,
        labels=found.labels,
        codes=alphabet.encode_many(found.labels),
        filenames=[path.name for path in found.paths],
        skipped=found.skipped,
    )


def _decode_all(paths: list[Path], image_size, workers) -> np.ndarray:
    if image_size is None:
        image_size = decode_image(paths[0]).shape[:2]
    workers = min(workers or os.cpu_count() or 1, max(1, len(paths) // 256))
    images = np.empty((len(paths), *image_size, 3), dtype=np.uint8)
    if workers == 1:
        decoded = map(_decode_checked, ((path, image_size) for path in paths))
        for index, image in enumerate(decoded):
            images[index] = image
    else:
        with Pool(workers) as pool:
            decoded = pool.imap(_decode_checked, ((path, image_size) for path in paths), chunksize=128)
            for index, image in enumerate(decoded):
                images[index] = image
    return images


def _decode_checked(job) -> np.ndarray:
    path, image_size = job
    image = decode_image(path)
    if image.shape[:2] != tuple(image_size):
        raise ValueError(
            f"Image {path} has size {image.shape[:2]} (height, width); "
            f"expected {tuple(image_size)} like the rest of its folder."
        )
    return image


def _read_cache(cache_dir: Path, fingerprint: str) -> np.ndarray | None:
    try:
        index = json.loads((cache_dir / "index.json").read_text())
        if index.get("fingerprint") != fingerprint:
            return None
        # Memory-mapped: pages are read as batches need them and shared with other processes.
        return np.load(cache_dir / "images.npy", mmap_mode="r")
    except (FileNotFoundError, json.JSONDecodeError, ValueError, OSError):
        return None


def _write_cache(cache_dir: Path, fingerprint: str, images: np.ndarray) -> None:
    """Writes the cache atomically: a half-written cache is never read."""
    try:
        cache_dir.mkdir(exist_ok=True)
        (cache_dir / "index.json").unlink(missing_ok=True)  # Invalidate before replacing.
        with atomic_path(cache_dir / "images.npy") as temporary:
            np.save(temporary, images)
        with atomic_path(cache_dir / "index.json") as temporary:
            temporary.write_text(json.dumps({"fingerprint": fingerprint, "shape": list(images.shape)}))
    except OSError:
        pass  # A read-only folder still loads; it just decodes again next time.
