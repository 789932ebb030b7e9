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
