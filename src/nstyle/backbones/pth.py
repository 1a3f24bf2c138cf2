"""Read a PyTorch state dict saved in the legacy (pre-1.6, non-zip) format, without PyTorch.

Why not ``torch.load``: the ImageNet EfficientNet-Lite0 weights ship as such a file, and
installing PyTorch for one read would mean gigabytes (a plain ``pip install torch`` brings a
CUDA build). The format is small: pickles for a magic number, a protocol version and system
info; then the state dict pickle, whose tensors point at storages by key; then the list of
storage keys; then each storage's raw little-endian bytes, preceded by its element count.

Unpickling only admits the handful of globals a state dict needs, so a hostile file cannot
run code the way a plain ``pickle.load`` would let it.
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class PthError(ValueError):
    """The file is not a legacy PyTorch state dict this reader understands."""


@dataclass(frozen=True)
class _StorageType:
    dtype: Any


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: Any


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, offset, size, stride, *_ignored) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    return data


class _Unpickler(pickle.Unpickler):
    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise PthError(f"unexpected object {module}.{name} in a state dict") from None

    def persistent_load(self, saved_id: Any) -> _StorageRef:
        if not (isinstance(saved_id, tuple) and saved_id and saved_id[0] == "storage"):
            raise PthError(f"unexpected persistent id {saved_id!r}")
        storage_type, key = saved_id[1], saved_id[2]
        if not isinstance(storage_type, _StorageType):
            raise PthError(f"unexpected storage type {storage_type!r}")
        return _StorageRef(str(key), storage_type.dtype)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a legacy ``.pth`` state dict as a numpy array, keyed as in PyTorch."""
    with open(path, "rb") as f:
        return _read(f)


def _read(f: BinaryIO) -> dict[str, np.ndarray]:
    try:
        if pickle.load(f) != MAGIC:
            raise PthError("not a legacy PyTorch file (bad magic number; zip-format files are not supported)")
        pickle.load(f)  # protocol version
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise PthError("big-endian PyTorch files are not supported")
        state = _Unpickler(f).load()
        keys = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as e:
        raise PthError(f"not a readable PyTorch file: {e}") from None
    refs = {k: v for k, v in state.items() if isinstance(v, _TensorRef)}
    dtypes = {ref.storage.key: ref.storage.dtype for ref in refs.values()}
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        (count,) = struct.unpack("<q", f.read(8))
        dtype = np.dtype(dtypes.get(key, np.float32))
        data = f.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise PthError("file ends inside a tensor: truncated download?")
        storages[key] = np.frombuffer(data, dtype=dtype)
    out = {}
    for name, ref in refs.items():
        flat = storages[ref.storage.key]
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[ref.offset :], shape=ref.shape, strides=tuple(s * itemsize for s in ref.stride)
        )
        out[name] = np.array(view)  # a contiguous copy, independent of the file buffer
    return out
