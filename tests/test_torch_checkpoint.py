"""The PyTorch checkpoint reader: both formats of tensors read right, and every other global refused unrun."""

import os
import pickle
import zipfile

import numpy as np
import pytest
from torch_checkpoint_writer import FakeTensor, tensors, write_legacy_checkpoint, write_zip_checkpoint

from models.torch_checkpoint import read_torch_checkpoint

WRITERS = {"zip": write_zip_checkpoint, "legacy": write_legacy_checkpoint}


def small_state():
    rng = np.random.default_rng(0)
    return {
        "conv.weight": rng.normal(size=(4, 3, 3, 3)).astype("float32"),
        "bn.running_var": rng.uniform(0.5, 2, size=4).astype("float32"),
        "bn.num_batches_tracked": np.array(7, dtype="int64"),
        "fc.weight": rng.normal(size=(2, 5)).astype("float32"),
    }


@pytest.mark.parametrize("format_name", sorted(WRITERS))
@pytest.mark.parametrize("transposed_storage", [False, True])
def test_reads_tensors_of_both_formats(format_name, transposed_storage, tmp_path):
    state = small_state()
    path = tmp_path / "small.pth"
    WRITERS[format_name](path, tensors(state, transposed_storage))
    read = read_torch_checkpoint(path)
    assert list(read) == list(state)
    for name, array in state.items():
        assert read[name].dtype == array.dtype and read[name].shape == array.shape
        np.testing.assert_array_equal(read[name], array)


def test_nested_dicts_and_shared_storage(tmp_path):
    weight = np.arange(6, dtype="float32").reshape(2, 3)
    tensor = FakeTensor("0", weight)
    path = tmp_path / "nested.pth"
    write_zip_checkpoint(path, {"state_dict": {"a": tensor, "b": tensor}, "epoch": 3})
    read = read_torch_checkpoint(path)
    assert read["epoch"] == 3
    np.testing.assert_array_equal(read["state_dict"]["b"], weight)


class RunsCommand:
    """What an attacker pickles: unpickling it calls os.system."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("format_name", sorted(WRITERS))
def test_refuses_code_in_crafted_pickle(format_name, tmp_path):
    marker = tmp_path / "pwned"
    payload = {"weight": RunsCommand(f"touch {marker}")}
    path = tmp_path / "evil.pth"
    if format_name == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", pickle.dumps(payload, protocol=2))
    else:
        WRITERS[format_name](path, payload)
    with pytest.raises(pickle.UnpicklingError, match=r"Refused global (posix|os|nt)\.system"):
        read_torch_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "module, name",
    [("builtins", "eval"), ("torch", "load"), ("torch._utils", "_rebuild_parameter"), ("collections", "deque")],
)
def test_refuses_globals_outside_the_list(module, name, tmp_path):
    # GLOBAL module name; EMPTY_TUPLE; REDUCE; STOP: calls the global with no arguments.
    data = pickle.PROTO + b"\x02" + pickle.GLOBAL + f"{module}\n{name}\n".encode() + b").R."
    path = tmp_path / "global.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data)
    with pytest.raises(pickle.UnpicklingError, match=f"Refused global {module}.{name}"):
        read_torch_checkpoint(path)


def test_refuses_tensor_reading_past_its_storage(tmp_path):
    tensor = FakeTensor("0", np.zeros((2, 3), "float32"))
    tensor.size = (4, 3)  # 12 elements from a storage of 6: would read foreign memory.
    path = tmp_path / "overrun.pth"
    write_zip_checkpoint(path, {"weight": tensor})
    with pytest.raises(pickle.UnpicklingError, match="reads past its storage"):
        read_torch_checkpoint(path)


def test_errors_for_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_torch_checkpoint(tmp_path / "missing.pth")
    text = tmp_path / "text.pth"
    text.write_bytes(pickle.dumps("hello", protocol=2))
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        read_torch_checkpoint(text)
    archive_path = tmp_path / "other.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(ValueError, match="no single data.pkl"):
        read_torch_checkpoint(archive_path)
