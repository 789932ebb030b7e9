"""Shared fixtures: a handful of real generated CAPTCHAs, made once per test session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

from data.generate import generate_folder  # noqa: E402


@pytest.fixture(scope="session")
def captcha_folders(tmp_path_factory):
    """(train, val) folders of 24 and 12 multicolorcaptcha images."""
    root = tmp_path_factory.mktemp("captchas")
    train = generate_folder(root / "train", 24, seed="test/train", workers=1, progress=False)
    val = generate_folder(root / "val", 12, seed="test/val", workers=1, progress=False)
    return train, val


@pytest.fixture(scope="session")
def labelled_folder(tmp_path_factory):
    """A henan-4digit-like folder: 30 small ImageCaptchas of 3 characters named N.png, and labels.txt beside.

    Returns:
        (images folder, labels file, Alphabet).
    """
    from data.alphabet import Alphabet
    from data.generate import get_generator
    from data.labels import label_from_filename, list_image_files

    root = tmp_path_factory.mktemp("labelled")
    alphabet = Alphabet("0123456789ABCDEF", 3)
    generator = get_generator("imagecaptcha", width=72, height=32, alphabet=alphabet)
    generated = generate_folder(
        root / "generated", 30, seed="test/labelled", workers=1, progress=False, generator=generator
    )
    images = root / "images"
    images.mkdir()
    lines = []
    for index, path in enumerate(list_image_files(generated)):
        path.rename(images / f"{index}.png")
        lines.append(f"{index}.png {label_from_filename(path)}")
    labels = root / "labels.txt"
    labels.write_text("\n".join(lines) + "\n")
    return images, labels, alphabet
