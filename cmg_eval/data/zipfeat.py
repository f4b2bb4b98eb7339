"""Feature zips of the public releases: `<id>.zip` holding one pickled numpy array.

Pickles are untrusted: they are read by an unpickler that admits only what a numpy array
needs, so a pickle of anything else is refused and nothing in it is executed.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from cmg_eval.errors import CmgError

# What pickle.dumps(np.ndarray) references, across numpy 1.x and 2.x.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("codecs", "encode"),
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals a plain numpy array pickle uses."""

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name} (only numpy arrays are admitted)")


def load_numpy_pickle(data: bytes, where: str) -> np.ndarray:
    """Unpickle bytes that must hold one numpy array."""
    try:
        value = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as error:
        raise CmgError(f"{where}: not a pickled numpy array ({error})") from None
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
        raise CmgError(f"{where}: pickle holds {type(value).__name__}, expected a numeric numpy array")
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
