"""Feature zips of the public releases: `<id>.zip` holding one pickled numpy array.

Pickles are untrusted: they are read by an unpickler that admits only what a numpy array
needs, so a pickle of anything else is refused and nothing in it is executed.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from cmg_eval.errors import CmgError

# Numeric kinds a feature array may have: bool, signed and unsigned integers, floats.
NUMERIC_KINDS = "biuf"
BYTE_ORDERS = ("<", ">", "|", "=")


class _NdarrayType:
    """Stands for `numpy.ndarray` in a pickle: usable only as `_reconstruct`'s first argument, never called."""

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError("refused a numpy.ndarray(...) call (it allocates what the pickle does not carry)")


NDARRAY = _NdarrayType()


class _PickledDtype:
    """A numeric dtype as pickled (`numpy.dtype(code, align, copy)` then BUILD with its byte order)."""

    def __init__(self, code, align=False, copy=True, *_):
        try:
            dtype = np.dtype(code) if isinstance(code, str) else None
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise pickle.UnpicklingError(f"refused dtype {code!r:.40} (only bool, integer and float arrays are "
                                         f"admitted)")
        self.dtype = dtype

    def __setstate__(self, state) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in BYTE_ORDERS \
                or any(part is not None for part in state[2:5]):
            raise pickle.UnpicklingError(f"refused dtype state {state!r:.60} (expected a plain numeric dtype)")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


def _dtype(value) -> np.dtype:
    if not isinstance(value, _PickledDtype):
        raise pickle.UnpicklingError(f"refused dtype argument {type(value).__name__} (expected numpy.dtype)")
    return value.dtype


def _shape(value) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(type(d) is int and d >= 0 for d in value):
        raise pickle.UnpicklingError(f"refused shape {value!r:.60} (expected a tuple of sizes)")
    return value


def _array_from(data, dtype: np.dtype, shape: tuple[int, ...], order: str) -> np.ndarray:
    """A writable copy of the bytes the pickle carries, only if they are exactly the array's size."""
    if isinstance(data, str):
        data = data.encode("latin1")  # protocol 0-2 pickles of Python 2 carry the bytes as a latin1 string
    if isinstance(data, pickle.PickleBuffer):
        data = data.raw()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise pickle.UnpicklingError(f"refused array data of type {type(data).__name__} (expected bytes)")
    size = math.prod(shape) * dtype.itemsize
    if size != len(memoryview(data).cast("B")):
        raise pickle.UnpicklingError(f"array of shape {shape} and dtype {dtype} needs {size} bytes, "
                                     f"the pickle carries {len(memoryview(data).cast('B'))}")
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"refused array order {order!r:.10} (expected 'C' or 'F')")
    return np.frombuffer(bytearray(data), dtype=dtype).reshape(shape, order=order)


class _PickledArray:
    """What `_reconstruct(ndarray, (0,), b'b')` stands for: an empty array whose BUILD state brings
    shape, dtype, order and the raw bytes."""

    array: np.ndarray | None = None

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]  # (version, shape, dtype, is_fortran, data); version 0 pickles omit it
        if not isinstance(state, tuple) or len(state) != 4:
            raise pickle.UnpicklingError(f"refused array state {state!r:.60}")
        shape, dtype, fortran, data = state
        self.array = _array_from(data, _dtype(dtype), _shape(shape), "F" if fortran else "C")


def _reconstruct(subtype, shape, typecode) -> _PickledArray:
    """`numpy...multiarray._reconstruct`, admitted only for the empty placeholder numpy pickles create."""
    if subtype is not NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
        raise pickle.UnpicklingError(f"refused _reconstruct{(subtype, shape, typecode)!r:.60} (only the empty "
                                     f"ndarray placeholder of an array pickle is admitted)")
    return _PickledArray()


def _frombuffer(buffer, dtype, shape, order, axis_order=None) -> np.ndarray:
    """`numpy...numeric._frombuffer` (protocol 5): an array over the buffer the pickle carries; order 'K'
    stores an array contiguous in a permutation of its axes (e.g. a transposed one) in memory order."""
    if order != "K":
        return _array_from(buffer, _dtype(dtype), _shape(shape), order)
    shape = _shape(shape)
    if not isinstance(axis_order, (tuple, list)) or sorted(axis_order) != list(range(len(shape))) \
            or not all(type(axis) is int for axis in axis_order):
        raise pickle.UnpicklingError(f"refused _frombuffer axis order {axis_order!r:.40} (expected a permutation "
                                     f"of the {len(shape)} axes)")
    return _array_from(buffer, _dtype(dtype), shape, "C").transpose(axis_order)


def _scalar(dtype, data) -> np.generic:
    """`numpy...multiarray.scalar`: one value from exactly its bytes."""
    return _array_from(data, _dtype(dtype), (), "C")[()]


def _encode(text, encoding="utf-8", errors="strict") -> bytes:
    """`_codecs.encode`, as protocols 0-2 store bytes: latin1 text only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError(f"refused encode(..., {encoding!r:.20}) (only latin1 bytes are admitted)")
    return text.encode("latin1")


def _empty_bytes(*args) -> bytes:
    """`bytes()`, as protocols 0-2 store the data of an empty array."""
    if args:
        raise pickle.UnpicklingError("refused bytes(...) with arguments (only the empty bytes of an empty array)")
    return b""


# What pickle.dumps(np.ndarray) references under numpy 1.x and 2.x with protocols 0-5, each mapped to a
# stand-in that checks its arguments: nothing the pickle names is ever called.
ALLOWED_GLOBALS = {
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _reconstruct for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): _scalar for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _frombuffer for core in ("core", "_core")},
    ("numpy", "ndarray"): NDARRAY,
    ("numpy", "dtype"): _PickledDtype,
    ("_codecs", "encode"): _encode, ("codecs", "encode"): _encode,
    ("__builtin__", "bytes"): _empty_bytes, ("builtins", "bytes"): _empty_bytes,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals a plain numpy array pickle uses, each to a checking stand-in."""

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[module, name]
        raise pickle.UnpicklingError(f"refused global {module}.{name} (only numpy arrays are admitted)")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused persistent id (only numpy arrays are admitted)")


def load_numpy_pickle(data: bytes, where: str) -> np.ndarray:
    """Unpickle bytes that must hold one numpy array (any protocol 0-5, numpy 1.x or 2.x)."""
    try:
        value = NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as error:  # a hostile stream can fail in any way; none of it may escape as a traceback
        raise CmgError(f"{where}: not a pickled numpy array ({error})") from None
    if isinstance(value, _PickledArray):
        if value.array is None:
            raise CmgError(f"{where}: not a pickled numpy array (an array placeholder without its data)")
        value = value.array
    if not isinstance(value, np.ndarray) or value.dtype.kind not in NUMERIC_KINDS:
        kind = type(value).__name__ if not isinstance(value, np.generic) else f"a {value.dtype} scalar"
        raise CmgError(f"{where}: pickle holds {kind}, expected a numeric numpy array")
    return value


def _safe_member(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and not name.startswith("\\")


def read_feature_zip(path: str | Path, max_bytes: int | None = None) -> np.ndarray:
    """The array in `<id>.zip`; with several `.pkl` members the last one wins, as in the reference.

    `max_bytes` bounds the member's declared unpacked size (checked before it is read or inflated, so a small
    zip cannot inflate past what the expected array needs); only stored and deflated members are read, whose
    inflation zipfile stops at the declared size."""
    path = Path(path)
    if not path.is_file():
        raise CmgError(f"{path}: missing feature file (expected a zip holding one pickled numpy array)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            unsafe = [m for m in members if not _safe_member(m)]
            if unsafe:
                raise CmgError(f"{path}: refused member path {unsafe[0]!r} (absolute or with '..')")
            pickles = [m for m in members if m.endswith(".pkl")] or members
            if not pickles:
                raise CmgError(f"{path}: empty zip, expected one pickled numpy array")
            info = archive.getinfo(pickles[-1])
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise CmgError(f"{path}:{info.filename}: compression method {info.compress_type}, expected a stored "
                               f"or deflated member")
            if max_bytes is not None and info.file_size > max_bytes:
                raise CmgError(f"{path}:{info.filename}: declares {info.file_size} bytes unpacked, expected at most "
                               f"{max_bytes} for the expected array (refused before reading)")
            data = archive.read(info)
    except (zipfile.BadZipFile, OSError) as error:
        raise CmgError(f"{path}: not a readable zip ({error})") from None
    return load_numpy_pickle(data, f"{path}:{pickles[-1]}")


def write_feature_zip(path: str | Path, array: np.ndarray, member: str | None = None) -> None:
    """Write one array the way the release does: a zip with a single `.pkl` member."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(member or f"{path.stem}.pkl", pickle.dumps(np.asarray(array), protocol=4))
