"""Where the label of each image comes from: its file name or a labels file.

Three forms are accepted, so that folders made by the assignment's snippet,
by this kit and by other projects all read the same way:

- `4821.png`: the assignment's form, the whole stem is the label;
- `4821_000017.png`: the kit's form (label, underscore, a unique index), also
  used by most public CAPTCHA generators (`LABEL_anything.png`);
- a labels file with one `FILENAME LABEL` line per image (e.g. `0.jpg 5751`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.alphabet import Alphabet

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_image_files(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name."""
    return sorted(path for path in Path(folder).iterdir() if is_image_file(path))


def label_from_filename(path: str | Path) -> str:
    """The label a file name carries: the stem up to the first underscore."""
    return Path(path).stem.split("_", 1)[0]


def kit_filename(label: str, index: int, suffix: str = ".png") -> str:
    """The kit's own unique file name for image number `index`."""
    return f"{label}_{index:06d}{suffix}"


def read_labels_file(path: str | Path) -> dict[str, str]:
    """Reads `FILENAME LABEL` lines into a dict; blank lines and `#` comments are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Labels file not found: {path}")
    labels = {}
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{line_number}: expected 'FILENAME LABEL', received {line!r}")
        filename, label = parts
        if filename in labels and labels[filename] != label:
            raise ValueError(f"{path}:{line_number}: {filename} is labelled twice ({labels[filename]!r} and {label!r})")
        labels[filename] = label
    return labels


def read_corrections(path: str | Path) -> dict[str, tuple[str, str]]:
    """Reads `FILENAME WRONG RIGHT` lines (confirmed label errors) into {filename: (wrong, right)}.

    Blank lines and `#` comments are skipped.

    Raises:
        FileNotFoundError: No such file.
        ValueError: A line of another form, or a file corrected twice; the message names the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Label corrections file not found: {path}")
    corrections = {}
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3:
            raise ValueError(f"{path}:{line_number}: expected 'FILENAME WRONG RIGHT', received {line!r}")
        filename, wrong, right = parts
        if filename in corrections:
            raise ValueError(f"{path}:{line_number}: {filename} is corrected twice")
        corrections[filename] = (wrong, right)
    return corrections


def apply_corrections(candidates, corrections_file: str | Path):
    """(path, label) pairs with the confirmed corrections of `corrections_file` applied.

    A correction of a file that is not among `candidates` is left aside (one
    file may correct a whole set, and a folder hold part of it).

    Raises:
        ValueError: A file's label is not the wrong label its correction names (the corrections are for
            other labels).
    """
    corrections = read_corrections(corrections_file)
    corrected = []
    for path, label in candidates:
        if Path(path).name in corrections:
            wrong, right = corrections[Path(path).name]
            if label != wrong:
                raise ValueError(
                    f"{corrections_file}: {Path(path).name} is labelled {label!r}, not {wrong!r} as its correction "
                    "says; the corrections are for other labels."
                )
            label = right
        corrected.append((path, label))
    return corrected


@dataclass
class LabelledFiles:
    """Image paths with their labels, and the files that had to be skipped."""

    paths: list[Path]
    labels: list[str]
    skipped: list[tuple[str, str]]  # (file name, reason)


def find_labelled_images(
    folder: str | Path,
    alphabet: Alphabet,
    labels_file: str | Path | None = None,
    strict: bool = True,
    corrections: str | Path | None = None,
) -> LabelledFiles:
    """Lists the images of `folder` and their labels.

    Args:
        folder: The folder holding the images.
        alphabet: Labels are checked against it.
        labels_file: Optional `FILENAME LABEL` file; without it the labels come
            from the file names.
        strict: Raise on the first bad label (True) or skip and report it.
        corrections: Optional `FILENAME WRONG RIGHT` file of confirmed label
            errors, applied to the labels (`apply_corrections`).

    Returns:
        A `LabelledFiles` in file-name order.
    """
    candidates, skipped = _labelled_candidates(folder, labels_file, strict, corrections)
    paths, labels = [], []
    for path, label in candidates:
        problem = alphabet.check(label)
        if problem:
            message = f"label {label!r} of {path.name} {problem}"
            if strict:
                raise ValueError(
                    f"{folder}: {message}. Name images LABEL.png or LABEL_ANYTHING.png, "
                    "or pass a labels file with 'FILENAME LABEL' lines."
                )
            skipped.append((path.name, message))
            continue
        paths.append(path)
        labels.append(label)
    if not paths:
        raise ValueError(f"No labelled images found in {folder} (image types: {', '.join(IMAGE_SUFFIXES)}).")
    return LabelledFiles(paths=paths, labels=labels, skipped=skipped)


def labels_in_folder(
    folder: str | Path, labels_file: str | Path | None = None, corrections: str | Path | None = None
) -> list[str]:
    """The labels of the images of `folder`, as `find_labelled_images` reads them but unchecked: what
    `core.alphabet.alphabet_of_labels` reads the alphabet from."""
    return [label for _, label in _labelled_candidates(folder, labels_file, False, corrections)[0]]


def _labelled_candidates(folder, labels_file, strict, corrections) -> tuple[list[tuple[Path, str]], list]:
    """(path, label) for each image of `folder` that has a label, corrected; and the (name, reason) of the others."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder not found: {folder}")
    files = list_image_files(folder)
    skipped = []
    if labels_file is not None:
        named = read_labels_file(labels_file)
        missing = sorted(set(named) - {path.name for path in files})
        if missing:
            problem = f"{len(missing)} files named in {labels_file} are not in {folder} (first: {missing[0]})"
            if strict:
                raise FileNotFoundError(problem)
            skipped.extend((name, "named in the labels file but missing") for name in missing)
        candidates = []
        for path in files:
            if path.name in named:
                candidates.append((path, named[path.name]))
            else:
                skipped.append((path.name, f"not listed in {Path(labels_file).name}"))
    else:
        candidates = [(path, label_from_filename(path)) for path in files]
    if corrections is not None:
        candidates = apply_corrections(candidates, corrections)
    return candidates, skipped
