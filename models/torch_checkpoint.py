"""Reads the tensors of a PyTorch checkpoint (`torch.save` of a state dict) with numpy, without PyTorch.

    state = read_torch_checkpoint("efficientnet-lite0-57934424.pth")
    state["_conv_stem.weight"].shape  # (32, 3, 3, 3), a numpy array

A `.pth` file is a pickle, and unpickling runs whatever callables the file
names: a crafted checkpoint can run `os.system`. This reader is a security
boundary. Its unpickler accepts only the globals that rebuilding tensors
needs (`ALLOWED_GLOBALS`: the tensor rebuild function, the storage types,
`OrderedDict`) and raises `pickle.UnpicklingError` naming any other global
before anything is called. Tensors are rebuilt as numpy arrays, after
checking that their shape and strides stay inside their storage.

Both formats of `torch.save` are read:
- the zip format (PyTorch 1.6 and later): `<name>/data.pkl` holds the
  pickle, and each storage is the raw little-endian entry `<name>/data/<key>`;
- the legacy format (before 1.6; the EfficientNet-Lite0 checkpoint uses it):
  pickles of the magic number, the protocol version and system information,
  then the object's pickle, then the list of storage keys, then for each key
  an int64 element count followed by the storage's raw bytes.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# PyTorch's legacy storage classes and the numpy types of their elements (little-endian).
STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",  # numpy has no bfloat16: read as bits, widened to float32 after.
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class StorageType:
    """Stands for one of PyTorch's storage classes (`torch.FloatStorage`, ...) while unpickling."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])

    def __repr__(self):
        return f"torch.{self.name}"


class Storage:
    """A flat array of one dtype; its data arrives later in the legacy format."""

    def __init__(self, storage_type: StorageType, key: str, numel: int):
        self.storage_type, self.key, self.numel = storage_type, key, int(numel)
        self.data: np.ndarray | None = None

    def fill(self, raw: bytes) -> None:
        needed = self.numel * self.storage_type.dtype.itemsize
        if len(raw) < needed:
            raise ValueError(f"Storage {self.key!r} holds {len(raw)} bytes; expected {needed}.")
        self.data = np.frombuffer(raw, dtype=self.storage_type.dtype, count=self.numel)


class TensorReference:
    """A tensor to rebuild from its storage once every storage has been read."""

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, Storage):
            raise pickle.UnpicklingError(f"A tensor refers to {type(storage).__name__}, not to a storage.")
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)
        if len(self.size) != len(self.stride) or min((*self.size, *self.stride, self.offset), default=0) < 0:
            raise pickle.UnpicklingError(f"Bad tensor layout: size {self.size}, stride {self.stride}.")
        # The highest element index the tensor reads must lie inside its storage.
        if all(self.size):
            last = self.offset + sum((length - 1) * step for length, step in zip(self.size, self.stride))
            if last >= self.storage.numel:
                raise pickle.UnpicklingError(
                    f"Tensor of size {self.size}, stride {self.stride}, offset {self.offset} reads past its "
                    f"storage of {self.storage.numel} elements."
                )

    def to_numpy(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise ValueError(f"The checkpoint holds no data for storage {self.storage.key!r}.")
        itemsize = data.dtype.itemsize
        array = np.lib.stride_tricks.as_strided(
            data[self.offset :] if data.size else data,
            shape=self.size,
            strides=[step * itemsize for step in self.stride],
            writeable=False,
        ).copy()
        if self.storage.storage_type.name == "BFloat16Storage":
            array = (array.astype("<u4") << 16).view("<f4")
        return array.astype(array.dtype.newbyteorder("="))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *metadata):
    """Stands for `torch._utils._rebuild_tensor_v2`: the call `torch.save` records for each tensor."""
    return TensorReference(storage, storage_offset, size, stride)


# The only globals a checkpoint may name: (module, name) -> what the name stands for here.
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{("torch", name): StorageType(name) for name in STORAGE_DTYPES},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a checkpoint, refusing every global outside `ALLOWED_GLOBALS`.

    Args:
        file: The binary pickle stream.
        storages: Dict filled with the storages the pickle refers to, by key.
        read_storage: Called with a storage key to get its bytes at once (the
            zip format), or None when the data follows the pickle (legacy).
    """

    def __init__(self, file, storages: dict | None = None, read_storage=None):
        super().__init__(file)
        self.storages = {} if storages is None else storages
        self.read_storage = read_storage

    def find_class(self, module, name):
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(
                f"Refused global {module}.{name}: a tensor checkpoint only needs "
                f"{', '.join(sorted(f'{m}.{n}' for m, n in ALLOWED_GLOBALS))}."
            )
        if isinstance(allowed, StorageType):
            # A fresh one each time: a pickle's BUILD opcode could otherwise alter the shared instance.
            return StorageType(allowed.name)
        return allowed

    def persistent_load(self, saved_id):
        if not isinstance(saved_id, tuple) or not saved_id or saved_id[0] not in ("storage", b"storage"):
            raise pickle.UnpicklingError(f"Refused persistent id {saved_id!r}: only storages are read.")
        if len(saved_id) < 5:
            raise pickle.UnpicklingError(f"Bad storage id {saved_id!r}.")
        storage_type, key, _location, numel = saved_id[1:5]
        view = saved_id[5] if len(saved_id) > 5 else None
        if not isinstance(storage_type, StorageType):
            raise pickle.UnpicklingError(f"Bad storage type {storage_type!r} in {saved_id!r}.")
        if view is not None:
            raise pickle.UnpicklingError(f"Storage views (legacy, {saved_id!r}) are not supported.")
        key = key.decode("ascii") if isinstance(key, bytes) else str(key)
        if key not in self.storages:
            storage = Storage(storage_type, key, numel)
            if self.read_storage is not None:
                storage.fill(self.read_storage(key))
            self.storages[key] = storage
        return self.storages[key]


def read_torch_checkpoint(path: str | Path) -> dict:
    """The object a `.pth` file holds (usually a state dict), with tensors as numpy arrays.

    Args:
        path: A file written by `torch.save`, in the zip or the legacy format.

    Returns:
        The unpickled object: dicts (and lists, tuples) whose tensors are numpy arrays.

    Raises:
        FileNotFoundError: No such file.
        pickle.UnpicklingError: The file names a global other than those
            tensors need (e.g. `posix.system`), or a malformed tensor.
        ValueError: The file is not a PyTorch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    storages: dict[str, Storage] = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            result = _read_zip(archive, storages, path)
    else:
        with open(path, "rb") as file:
            result = _read_legacy(file, storages, path)
    return _materialize(result)


def _read_zip(archive: zipfile.ZipFile, storages: dict, path: Path):
    pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
    if len(pickles) != 1:
        raise ValueError(f"{path} is a zip file but not a PyTorch checkpoint (no single data.pkl entry).")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder_entry = f"{prefix}byteorder"
    if byteorder_entry in archive.namelist() and archive.read(byteorder_entry).strip() != b"little":
        raise ValueError(f"{path} was saved big-endian; only little-endian checkpoints are read.")

    def read_storage(key: str) -> bytes:
        try:
            return archive.read(f"{prefix}data/{key}")
        except KeyError:
            raise ValueError(f"{path} lacks the data of storage {key!r} ({prefix}data/{key}).") from None

    with archive.open(pickles[0]) as file:
        return RestrictedUnpickler(io.BytesIO(file.read()), storages, read_storage).load()


def _read_legacy(file, storages: dict, path: Path):
    try:
        magic_number = RestrictedUnpickler(file).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError) as error:
        if isinstance(error, pickle.UnpicklingError) and "Refused" in str(error):
            raise
        raise ValueError(f"{path} is not a PyTorch checkpoint: {error}") from error
    if magic_number != LEGACY_MAGIC_NUMBER:
        raise ValueError(f"{path} is not a PyTorch checkpoint (no zip archive, no legacy magic number).")
    protocol_version = RestrictedUnpickler(file).load()
    if protocol_version != LEGACY_PROTOCOL_VERSION:
        raise ValueError(f"{path}: unsupported legacy protocol version {protocol_version!r}.")
    system_information = RestrictedUnpickler(file).load()
    if not isinstance(system_information, dict) or not system_information.get("little_endian", False):
        raise ValueError(f"{path} was saved big-endian or without system information; not supported.")
    result = RestrictedUnpickler(file, storages).load()
    keys = RestrictedUnpickler(file).load()
    if not isinstance(keys, list):
        raise ValueError(f"{path}: expected the list of storage keys after the object, got {type(keys).__name__}.")
    for key in keys:
        key = key.decode("ascii") if isinstance(key, bytes) else str(key)
        if key not in storages:
            raise ValueError(f"{path}: data for storage {key!r}, which no tensor uses.")
        storage = storages[key]
        header = file.read(8)
        if len(header) != 8:
            raise ValueError(f"{path} ends before the data of storage {key!r}.")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise ValueError(f"{path}: storage {key!r} holds {numel} elements; the pickle said {storage.numel}.")
        storage.fill(file.read(numel * storage.storage_type.dtype.itemsize))
    return result


def _materialize(node):
    if isinstance(node, TensorReference):
        return node.to_numpy()
    if isinstance(node, dict):
        return type(node)((key, _materialize(value)) for key, value in node.items())
    if isinstance(node, list | tuple):
        return type(node)(_materialize(value) for value in node)
    return node
