"""Writes PyTorch checkpoints without PyTorch, for the tests of `models.torch_checkpoint`.

Mirrors what `torch.save` writes for a dict of tensors: each tensor pickles as
a call of the global `torch._utils._rebuild_tensor_v2` on a persistent
storage reference `("storage", torch.FloatStorage, key, "cpu", numel)`, an
offset, a size, strides, `requires_grad` and an empty `OrderedDict` of hooks.
`pickle`'s pure-Python pickler writes the globals by name, since `torch`
cannot be imported to look them up.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

from models.torch_checkpoint import LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION

STORAGE_NAMES = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}


class GlobalName:
    """A global written into the pickle by module and name only."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # The pickler only accepts callables as reduce functions; never called.
        raise NotImplementedError


class StorageReference:
    def __init__(self, key: str, data: np.ndarray):
        self.key, self.data = key, data


class FakeTensor:
    """Pickles like a torch tensor of `array`; `transposed_storage` stores it in reversed axis order."""

    def __init__(self, key: str, array: np.ndarray, transposed_storage: bool = False):
        array = np.asarray(array)
        self.size = array.shape
        if transposed_storage and array.ndim > 1:
            data = np.ascontiguousarray(array.transpose(*reversed(range(array.ndim))))
            # Element strides of the original axes in the reversed-order buffer.
            self.stride = tuple(int(np.prod(array.shape[:axis])) for axis in range(array.ndim))
        else:
            data = np.array(array, order="C")  # (ascontiguousarray would make a scalar 1-d)
            self.stride = tuple(step // array.itemsize for step in data.strides)
        self.storage = StorageReference(key, data.reshape(-1))

    def __reduce__(self):
        rebuild = GlobalName("torch._utils", "_rebuild_tensor_v2")
        return rebuild, (self.storage, 0, self.size, self.stride, False, collections.OrderedDict())


class CheckpointPickler(pickle._Pickler):
    """Pickler that writes `GlobalName`s as globals and storages as persistent ids."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file):
        super().__init__(file, protocol=2)
        self.storages: dict[str, StorageReference] = {}

    def persistent_id(self, obj):
        if isinstance(obj, StorageReference):
            self.storages[obj.key] = obj
            storage_type = GlobalName("torch", STORAGE_NAMES[obj.data.dtype])
            return ("storage", storage_type, obj.key, "cpu", obj.data.size)
        return None

    def save_global_name(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))

    dispatch[GlobalName] = save_global_name


def tensors(state: dict[str, np.ndarray], transposed_storage: bool = False) -> collections.OrderedDict:
    """The state dict with every array wrapped as a `FakeTensor` whose storage key is its index."""
    return collections.OrderedDict(
        (name, FakeTensor(str(index), array, transposed_storage)) for index, (name, array) in enumerate(state.items())
    )


def _pickle(obj) -> tuple[bytes, dict]:
    buffer = io.BytesIO()
    pickler = CheckpointPickler(buffer)
    pickler.dump(obj)
    return buffer.getvalue(), pickler.storages


def write_zip_checkpoint(path, obj) -> None:
    """`torch.save`'s zip format (PyTorch 1.6 and later)."""
    data, storages = _pickle(obj)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data)
        archive.writestr("archive/byteorder", "little")
        for key, storage in storages.items():
            archive.writestr(f"archive/data/{key}", storage.data.astype(storage.data.dtype.newbyteorder("<")).tobytes())
        archive.writestr("archive/version", "3\n")


def write_legacy_checkpoint(path, obj) -> None:
    """`torch.save`'s legacy format (before PyTorch 1.6), as the EfficientNet-Lite0 checkpoint."""
    data, storages = _pickle(obj)
    system_information = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4}}
    with open(path, "wb") as file:
        for header in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, system_information):
            pickle.dump(header, file, protocol=2)
        file.write(data)
        pickle.dump(list(storages), file, protocol=2)
        for storage in storages.values():
            file.write(struct.pack("<q", storage.data.size))
            file.write(storage.data.astype(storage.data.dtype.newbyteorder("<")).tobytes())
