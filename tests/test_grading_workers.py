"""A Dask worker's validation images: the grader's own copy on the grader's machine, its own decode elsewhere."""

import socket

import numpy as np
import pytest

from core.alphabet import Alphabet
from data.dataset import load_labelled_folder
from grading import distributed
from grading.course import grading_images, read_private_copy, write_private_copy
from grading.grades import GradingOptions

# One xdist worker runs every grading test: they share job slots, CPUs and sandbox users.
pytestmark = pytest.mark.xdist_group("grading")


@pytest.fixture
def grader_copy(captcha_folders, tmp_path, monkeypatch):
    """The grader's private copy of the validation folder, a fresh worker state, and a task's spec."""
    val_folder = captcha_folders[1]
    loaded = load_labelled_folder(val_folder, Alphabet(), cache=False)
    val = grading_images(loaded.images, loaded.codes, loaded.labels)
    folder = write_private_copy(val, tmp_path / "grader")
    monkeypatch.setattr(distributed, "_worker_state", {"lock": distributed.threading.Lock(), "images": {}})
    options = GradingOptions(data_folders={"capts_val": val_folder})
    spec = {
        "labels": None,
        "strict": False,
        "val_sha256": val.sha256,
        "grader_copy": {"host": socket.gethostname(), "folder": str(folder)},
    }
    return options, spec, folder


def test_a_worker_on_the_grader_machine_maps_the_grader_copy(grader_copy, monkeypatch):
    options, spec, folder = grader_copy
    decoded = []
    monkeypatch.setattr(distributed, "write_private_copy", lambda *args: decoded.append(args) or folder)
    images, sha256 = distributed._worker_images(options, Alphabet(), spec)
    assert images == folder and sha256 == spec["val_sha256"] and decoded == []  # nothing decoded again


@pytest.mark.parametrize("case", ["another machine", "changed copy", "no copy"])
def test_otherwise_a_worker_decodes_its_own(grader_copy, case):
    options, spec, folder = grader_copy
    if case == "another machine":
        spec["grader_copy"]["host"] = "elsewhere"
    elif case == "changed copy":
        images = np.load(folder / "images.npy")
        images[0, 0, 0] ^= 1
        np.save(folder / "images.npy", images)
    else:
        spec["grader_copy"] = None
    own, sha256 = distributed._worker_images(options, Alphabet(), spec)
    assert own != folder and sha256 == spec["val_sha256"]  # decoded from the course folder: the true images
    assert read_private_copy(own, expected_sha256=spec["val_sha256"]).sha256 == sha256


def test_the_grading_clusters_settings_are_dask_settings_that_change_its_defaults():
    import dask
    import distributed as dask_distributed  # noqa: F401  (loads its defaults into dask.config)

    settings = distributed.dask_settings()
    assert settings["distributed.scheduler.allowed-failures"] == 0
    assert settings["distributed.worker.profile.enabled"] is False
    for key, value in settings.items():
        default = dask.config.get(key)  # A misspelt key raises KeyError: Dask would ignore it.
        assert value != default, key
        assert type(value) is type(default), key
