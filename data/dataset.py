"""Reads a folder of labelled CAPTCHA images into arrays, decoding each PNG once.

The decoded `uint8` images are cached outside the folder, under
`core.files.cache_directory()` (`$CAPTCHA_KIT_CACHE`, else
`~/.cache/captcha-kit`) in `images/<key>/`, the key a hash of the folder's
absolute path. The cache is reused while the folder's listing (each file's
name, label, size and modification time) is the one it was made from, and
rebuilt when a file is added, removed or rewritten, so training epochs and
repeated evaluations never decode PNGs again, and a data folder is never
written to. Writing a cache is said once on stderr, with its size.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.alphabet import Alphabet
from core.files import atomic_path, cache_directory
from data.labels import IMAGE_SUFFIXES, find_labelled_images, list_image_files

CACHE_VERSION = 4  # 2: the index lists unusable files; 3: kept outside the folder; 4: transparency as seen


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


def as_seen(image: Image.Image) -> tuple[Image.Image, bool]:
    """The image as a person sees it, in RGB: transparent pixels composited onto its background.

    A plain `convert("RGB")` paints transparent pixels black (a dotted CAPTCHA
    on a transparent background becomes dark digits on black), whereas a
    browser shows them on its white page. So an image with an alpha channel,
    or a palette or colour marked transparent, is composited onto white, as
    browsers do (they ignore a file's own background colour). Every reader
    of the kit goes through this: folders for training, evaluation,
    prediction and grading (`decode_image`), and the web service's uploads.

    Returns:
        (the RGB image, whether any pixel was transparent).
    """
    if not (image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info):
        return image.convert("RGB"), False
    image = image.convert("RGBA")
    if image.getchannel("A").getextrema()[0] == 255:  # An alpha channel, but every pixel opaque.
        return image.convert("RGB"), False
    return Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB"), True


def decode_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decodes one image file to an RGB uint8 array of shape (height, width, 3), as a person sees it (`as_seen`).

    Args:
        path: Image file.
        size: Optional (height, width) to resize to; without it the image
            keeps its own size.
    """
    try:
        with Image.open(path) as image:
            image, _ = as_seen(image)
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
    strict: bool = True,
    corrections: str | Path | None = None,
) -> LabelledImages:
    """Loads every labelled image of `folder`.

    Args:
        folder: Folder of images named by label, or with a labels file.
        alphabet: The characters and label length to expect.
        labels_file: Optional `FILENAME LABEL` file.
        image_size: (height, width) every image must have; None takes the
            size of the first image (strict) or the most common size (not
            strict) and requires the others to match it.
        cache: Read and write the decoded-image cache (see the module docstring).
        workers: Decoding processes (default: every CPU core).
        strict: Raise a `ValueError` naming the first bad file (True, the
            default for training), or skip bad files (invalid labels, files
            that do not decode, images of another size, labels-file entries
            without an image) and list them in `skipped` with the reason.
        corrections: Optional `FILENAME WRONG RIGHT` file of confirmed label
            errors (`data.labels.apply_corrections`).

    Returns:
        A `LabelledImages`.
    """
    folder = Path(folder)
    found = find_labelled_images(folder, alphabet, labels_file, strict=strict, corrections=corrections)
    fingerprint = _fingerprint(found.paths, found.labels, image_size)
    cache_dir = cache_folder(folder, "labelled")
    cached = _read_cache(cache_dir, fingerprint) if cache else None
    if cached is None:
        if image_size is None and not strict:
            image_size = _most_common_size(found.paths)
        images, problems = _decode_all(found.paths, image_size, workers)
        if cache:
            _write_cache(cache_dir, fingerprint, images, problems, folder)
    else:
        images, problems = cached
    if problems and strict:
        raise ValueError(problems[0][1])
    bad = {index for index, _ in problems}
    kept = [index for index in range(len(found.paths)) if index not in bad]
    if not kept:
        raise ValueError(f"No readable labelled images in {folder}; first problem: {problems[0][1]}")
    labels = [found.labels[index] for index in kept]
    return LabelledImages(
        images=images,
        labels=labels,
        codes=alphabet.encode_many(labels),
        filenames=[found.paths[index].name for index in kept],
        skipped=found.skipped + [(found.paths[index].name, reason) for index, reason in problems],
    )


@dataclass
class UnlabelledImages:
    """Images (N, height, width, 3) uint8 without labels, and the paths they came from."""

    images: np.ndarray
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.paths)


def load_unlabelled_folder(
    folder: str | Path,
    image_size: tuple[int, int] | None = None,
    exclude=(),
    cache: bool = True,
    workers: int | None = None,
) -> UnlabelledImages:
    """Loads every image of `folder`, whatever its name, for semi-supervised training.

    Images of another size than `image_size` are skipped (unlabelled data is
    plentiful; one odd file should not stop a run). The decoded images are
    cached like the labelled ones (see the module docstring), apart from them.

    Args:
        folder: Folder of images.
        image_size: (height, width) to keep; None: the size of the first image.
        exclude: Paths to leave out (e.g. the labelled images of the same folder).
        cache: Read and write the decoded-image cache.
        workers: Decoding processes (default: every CPU core).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Unlabelled image folder not found: {folder}")
    excluded = {Path(path).resolve() for path in exclude}
    paths = [path for path in list_image_files(folder) if path.resolve() not in excluded]
    if not paths:
        raise ValueError(f"No unlabelled images in {folder} (image types: {', '.join(IMAGE_SUFFIXES)}).")
    fingerprint = _fingerprint(paths, [""] * len(paths), image_size)
    cache_dir = cache_folder(folder, "unlabelled")
    cached = _read_cache(cache_dir, fingerprint) if cache else None
    if cached is None:
        images, problems = _decode_all(paths, image_size, workers)
        if cache:
            _write_cache(cache_dir, fingerprint, images, problems, folder)
    else:
        images, problems = cached
    bad = {index for index, _ in problems}
    return UnlabelledImages(images=images, paths=[path for index, path in enumerate(paths) if index not in bad])


def cache_folder(folder: str | Path, kind: str = "labelled") -> Path:
    """Where the decoded images of `folder` are cached: one folder per data folder (by absolute path) and kind.

    Args:
        folder: The data folder.
        kind: "labelled" or "unlabelled" (the two loaders keep separate caches).
    """
    key = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:20]
    return cache_directory() / "images" / f"{key}-{kind}"


def describe_skipped(loaded: LabelledImages, folder: str | Path, examples: int = 3) -> str:
    """One line that counts the skipped files of `folder` and names the first few, or '' when none."""
    if not loaded.skipped:
        return ""
    shown = "; ".join(f"{name}: {reason}" for name, reason in loaded.skipped[:examples])
    more = f"; and {len(loaded.skipped) - examples} more" if len(loaded.skipped) > examples else ""
    return f"Skipped {len(loaded.skipped)} files of {folder}/ ({shown}{more})."


def _most_common_size(paths: list[Path]) -> tuple[int, int] | None:
    """The most common (height, width) among the readable image headers, None when none reads."""
    sizes = Counter()
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes[(image.height, image.width)] += 1
        except (UnidentifiedImageError, OSError, SyntaxError):
            continue
    return sizes.most_common(1)[0][0] if sizes else None


def _decode_all(paths: list[Path], image_size, workers) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Decodes `paths` in order: (images of the good files, [(index, problem) of the bad ones])."""
    if image_size is None:
        first = _decode_checked((paths[0], None))
        # An unreadable first file gets a size no image has, so that every
        # file is reported; without strictness this happens only when no
        # file of the folder has a readable header.
        image_size = (0, 0) if isinstance(first, str) else first.shape[:2]
    workers = min(workers or os.cpu_count() or 1, max(1, len(paths) // 256))
    images = np.empty((len(paths), *image_size, 3), dtype=np.uint8)
    problems, kept = [], 0
    jobs = ((path, image_size) for path in paths)
    with contextlib.ExitStack() as stack:
        if workers == 1:
            decoded = map(_decode_checked, jobs)
        else:
            decoded = stack.enter_context(Pool(workers)).imap(_decode_checked, jobs, chunksize=128)
        for index, image in enumerate(decoded):
            if isinstance(image, str):
                problems.append((index, image))
            else:
                images[kept] = image
                kept += 1
    return images[:kept], problems


def _decode_checked(job) -> np.ndarray | str:
    """The decoded image, or a sentence saying why the file cannot be used (returned, not raised,
    so that one bad file does not abort a worker pool)."""
    path, image_size = job
    try:
        image = decode_image(path)
    except ValueError as error:
        return str(error)
    if image_size is not None and image.shape[:2] != tuple(image_size):
        return (
            f"Image {path} has size {image.shape[:2]} (height, width); "
            f"expected {tuple(image_size)} like the rest of its folder."
        )
    return image


def _read_cache(cache_dir: Path, fingerprint: str) -> tuple[np.ndarray, list[tuple[int, str]]] | None:
    try:
        index = json.loads((cache_dir / "index.json").read_text())
        if index.get("fingerprint") != fingerprint:
            return None
        problems = [(int(position), str(reason)) for position, reason in index.get("problems", [])]
        # Memory-mapped: pages are read as batches need them and shared with other processes.
        return np.load(cache_dir / "images.npy", mmap_mode="r"), problems
    except (FileNotFoundError, json.JSONDecodeError, ValueError, TypeError, OSError):
        return None


def _write_cache(cache_dir: Path, fingerprint: str, images: np.ndarray, problems, folder: Path) -> None:
    """Writes the cache atomically (a half-written cache is never read) and says so once on stderr."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        (cache_dir / "index.json").unlink(missing_ok=True)  # Invalidate before replacing.
        with atomic_path(cache_dir / "images.npy") as temporary:
            np.save(temporary, images)
        with atomic_path(cache_dir / "index.json") as temporary:
            index = {
                "fingerprint": fingerprint,
                "folder": str(Path(folder).resolve()),
                "shape": list(images.shape),
                "problems": problems,
            }
            temporary.write_text(json.dumps(index))
    except OSError:
        return  # A read-only cache still loads; it just decodes again next time.
    size = (cache_dir / "images.npy").stat().st_size
    print(
        f"Cached the {len(images)} decoded images of {folder}/ in {cache_dir}/ ({size / 1e6:.1f} MB; "
        "CAPTCHA_KIT_CACHE moves it; safe to delete).",
        file=sys.stderr,
    )
