"""`cmg-eval embed`: an encoder's outputs for given inputs, to compare adapters number for number."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from cmg_eval.encoders.base import INPUT_TAIL, LoadedModel
from cmg_eval.errors import CmgError
from cmg_eval.io import atomic_write


def read_inputs(path: Path, modality: str) -> np.ndarray:
    """The array keyed by the modality name in an npz (no pickles)."""
    if not Path(path).is_file():
        raise CmgError(f"{path}: missing input file (expected an npz with array {modality!r})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if modality not in archive.files:
                raise CmgError(f"{path}: no array {modality!r} (found: {', '.join(archive.files) or 'nothing'})")
            array = archive[modality]
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise CmgError(f"{path}: not a readable npz ({error})") from None
    tail = INPUT_TAIL[modality]
    if array.ndim != 2 + len(tail) or tuple(array.shape[2:]) != tail:
        raise CmgError(f"{path}: array {modality!r} has shape {array.shape}, expected (B, T, {', '.join(map(str, tail))})")
    if not np.isfinite(array).all():
        raise CmgError(f"{path}: array {modality!r} holds non-finite values")
    return array.astype(np.float32, copy=False)


@torch.no_grad()
def embed_arrays(model: LoadedModel, modality: str, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """`vq` (the chosen readout), `pre_vq` (quantizer input, if any) and `indices` (codes, if any)."""
    encoder = model.encoder
    feats = torch.from_numpy(np.ascontiguousarray(inputs))
    outputs = {"vq": encoder.encode(modality, feats, model.readout).numpy()}
    if "pre_vq" in encoder.readouts:
        outputs["pre_vq"] = encoder.encode(modality, feats, "pre_vq").numpy()
    if encoder.code_readout is not None:
        outputs["indices"] = encoder.encode_indices(modality, feats).numpy()
    return outputs


def write_outputs(path: Path, outputs: dict[str, np.ndarray]) -> None:
    def write(partial: Path) -> None:
        with open(partial, "wb") as handle:
            np.savez(handle, **outputs)

    atomic_write(path, write)
