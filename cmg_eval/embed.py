"""`cmg-eval embed`: an encoder's outputs for given inputs, to compare adapters number for number."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from cmg_eval.data.h5 import ALWAYS_READABLE, MAX_INFLATION
from cmg_eval.encoders.base import INPUT_TAIL, LoadedModel, finite_activations, finite_float32
from cmg_eval.errors import CmgError
from cmg_eval.io import atomic_write


NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def read_inputs(path: Path, modality: str) -> np.ndarray:
    """The array keyed by the modality name in an npz (no pickles), as float32. Its header's shape and dtype are
    checked against the member's size and the modality's layout before anything is allocated."""
    where = f"{path}: array {modality!r}"
    if not Path(path).is_file():
        raise CmgError(f"{path}: missing input file (expected an npz with array {modality!r})")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n.removesuffix(".npy") for n in archive.namelist()]
            if modality not in names:
                raise CmgError(f"{path}: no array {modality!r} (found: {', '.join(names) or 'nothing'})")
            info = archive.getinfo(f"{modality}.npy")
            check_member(info, where)
            with archive.open(info) as handle:
                shape, fortran, dtype = read_npy_header(handle, where)
                check_layout(shape, dtype, modality, where)
                declared, available = int(np.prod(shape)) * dtype.itemsize, info.file_size - handle.tell()
                if declared > available:
                    raise CmgError(f"{where} declares shape {shape} {dtype} ({declared} bytes), but its member holds "
                                   f"{available} bytes (refused before reading)")
                data = bytearray(declared)
                count = handle.readinto(data)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise CmgError(f"{path}: not a readable npz ({error})") from None
    if count != declared:
        raise CmgError(f"{where} holds {count} of its {declared} bytes, expected a complete array")
    array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
    return finite_float32(array, where)


def check_member(info: zipfile.ZipInfo, where: str) -> None:
    """Stored or deflated, inflating no more than compression can: a bomb is refused before it is read."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CmgError(f"{where}: compression method {info.compress_type}, expected a stored or deflated npz")
    if info.file_size > ALWAYS_READABLE and info.file_size > MAX_INFLATION * info.compress_size:
        raise CmgError(f"{where}: declares {info.file_size} bytes unpacked from {info.compress_size}, more than "
                       f"compression gives (refused before reading)")


def read_npy_header(handle, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(handle)
    if version not in NPY_HEADERS:
        raise CmgError(f"{where}: npy format version {version}, expected 1.0 or 2.0")
    return NPY_HEADERS[version](handle)


def check_layout(shape: tuple[int, ...], dtype: np.dtype, modality: str, where: str) -> None:
    tail = INPUT_TAIL[modality]
    if len(shape) != 2 + len(tail) or tuple(shape[2:]) != tail:
        raise CmgError(f"{where} has shape {shape}, expected (B, T, {', '.join(map(str, tail))})")
    if dtype.kind not in "fiu" or dtype.hasobject:
        raise CmgError(f"{where} has dtype {dtype}, expected real numbers (float or integer)")


@torch.no_grad()
def embed_arrays(model: LoadedModel, modality: str, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """`vq` (the chosen readout), `pre_vq` (quantizer input, if any) and `indices` (codes, if any), each checked
    finite, as are the features inside the encoder."""
    encoder = model.encoder
    feats = torch.from_numpy(np.ascontiguousarray(finite_float32(inputs, f"{modality} inputs")))
    with finite_activations(model.label, f"{modality} inputs"):
        outputs = {"vq": encoder.encode(modality, feats, model.readout).numpy()}
        if "pre_vq" in encoder.readouts:
            outputs["pre_vq"] = encoder.encode(modality, feats, "pre_vq").numpy()
        if encoder.code_readout is not None:
            outputs["indices"] = encoder.encode_indices(modality, feats).numpy()
    for name, array in outputs.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise CmgError(f"encoder {model.label!r}: non-finite {name} outputs for {modality} inputs, expected "
                           f"finite numbers")
    return outputs


def write_outputs(path: Path, outputs: dict[str, np.ndarray]) -> None:
    def write(partial: Path) -> None:
        with open(partial, "wb") as handle:
            np.savez(handle, **outputs)

    atomic_write(path, write)
