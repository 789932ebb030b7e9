"""The grader's own copy of the validation images, out of every submission's reach, and its fingerprint.

The images are decoded from the course folder once, before any `train.py`
runs, into memory and into a private folder (mode 0700, outside anything a
sandbox mounts) that the grading processes map read-only. Nothing a
submission does can change what the models after it are scored on: the
folder it might write to is not the one scored from, and `fingerprint` is
checked again at the end of grading.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.files import atomic_path

IMAGES_FILE, CODES_FILE, INDEX_FILE = "images.npy", "codes.npy", "index.json"


@dataclass(frozen=True)
class GradingImages:
    """Validation images as the grader holds them.

    Attributes:
        images: (N, height, width, 3) uint8, never writable.
        codes: (N, length) class codes of the labels.
        labels: The label texts.
        sha256: `fingerprint(images, codes)`.
    """

    images: np.ndarray
    codes: np.ndarray
    labels: tuple[str, ...]
    sha256: str

    def __len__(self) -> int:
        return len(self.images)


def fingerprint(images: np.ndarray, codes: np.ndarray) -> str:
    """SHA-256 of the images' and codes' shapes and bytes (reads in blocks: no second copy in memory)."""
    digest = hashlib.sha256()
    for array in (images, codes):
        digest.update(f"{array.dtype}{array.shape}".encode())
        flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8) if array.size else np.zeros(0, np.uint8)
        for start in range(0, flat.size, 64 * 1024 * 1024):
            digest.update(flat[start : start + 64 * 1024 * 1024])
    return digest.hexdigest()


def grading_images(images, codes, labels) -> GradingImages:
    """An in-memory, read-only copy of decoded images (a memory-mapped cache is copied out of its file)."""
    images = np.array(images, dtype=np.uint8, copy=True)
    codes = np.array(codes, dtype=np.int64, copy=True)
    images.setflags(write=False)
    codes.setflags(write=False)
    return GradingImages(images, codes, tuple(labels), fingerprint(images, codes))


def write_private_copy(val: GradingImages, folder: str | Path) -> Path:
    """Writes the images to `folder` (created mode 0700, files 0600) for the grading processes to map."""
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for name, array in ((IMAGES_FILE, val.images), (CODES_FILE, val.codes)):
        with atomic_path(folder / name) as temporary:
            np.save(temporary, array)
            os.chmod(temporary, 0o600)
    with atomic_path(folder / INDEX_FILE) as temporary:
        temporary.write_text(json.dumps({"labels": list(val.labels), "sha256": val.sha256}))
    return folder


def read_private_copy(folder: str | Path, expected_sha256: str | None = None) -> GradingImages:
    """Maps a private copy read-only.

    Args:
        folder: Written by `write_private_copy`.
        expected_sha256: When given, the copy's contents are fingerprinted and must match.

    Raises:
        ValueError: The copy differs from what the grader decoded.
    """
    folder = Path(folder)
    images = np.load(folder / IMAGES_FILE, mmap_mode="r")
    codes = np.load(folder / CODES_FILE, mmap_mode="r")
    index = json.loads((folder / INDEX_FILE).read_text())
    sha256 = index["sha256"]
    if expected_sha256 is not None:
        sha256 = fingerprint(images, codes)
        if sha256 != expected_sha256:
            raise ValueError(f"The grader's copy of the validation images in {folder} changed: {sha256}")
    return GradingImages(images, codes, tuple(index["labels"]), sha256)


def copy_intact(folder: str | Path, expected_sha256: str) -> bool:
    """True when the private copy in `folder` still holds exactly the images fingerprinted `expected_sha256`."""
    try:
        read_private_copy(folder, expected_sha256)
    except (OSError, ValueError):
        return False
    return True


def folder_listing_hash(folder: str | Path) -> str:
    """SHA-256 of every file's relative path, size and modification time under `folder` (a cheap change check)."""
    digest = hashlib.sha256()
    folder = Path(folder)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            status = path.stat()
            digest.update(f"{path.relative_to(folder)}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()
