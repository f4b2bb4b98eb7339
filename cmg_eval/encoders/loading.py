"""Safe checkpoint loading and the rule that decides which encoder reads a checkpoint."""

from __future__ import annotations

import hashlib
import importlib
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from cmg_eval import registry
from cmg_eval.encoders.base import LoadedModel, UnifiedEncoder
from cmg_eval.errors import CmgError
from cmg_eval.io import folder_name


def sha256_file(path: str | Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint without executing code: `weights_only=True`, memory-mapped."""
    path = Path(path)
    if not path.is_file():
        raise CmgError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CmgError(f"{path}: not a loadable checkpoint (torch.load weights_only=True): {first}") from None
    if not isinstance(ckpt, dict):
        raise CmgError(f"{path}: expected a checkpoint dict, found {type(ckpt).__name__}")
    return ckpt



def user_factory(spec: str):
    """Import `package.module:factory`."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise CmgError(f"--encoder {spec}: cannot import module {module_name!r}: {error}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise CmgError(f"--encoder {spec}: module {module_name!r} has no callable {attr!r}")
    return factory


def family_for(ckpt: Mapping[str, Any], path: Path, encoder_name: str | None) -> str:
    """A checkpoint's `method` field decides, else --encoder, else its key layout."""
    method = ckpt.get("method")
    if isinstance(method, str) and method:
        return method
    if encoder_name:
        return encoder_name
    for name in registry.encoders.names():
        matches = getattr(registry.encoders.get(name), "layout_matches", None)
        if matches is not None and matches(ckpt):
            return name
    raise CmgError(f"{path}: no 'method' field and no known key layout; name the encoder with --encoder")


def load_encoder(path: str | Path, encoder_name: str | None = None) -> tuple[UnifiedEncoder, str, int]:
    """(encoder, family name, checkpoint epoch) for a checkpoint file."""
    path = Path(path)
    if encoder_name and ":" in encoder_name:
        # A user model owns its file format: the factory gets the path, not a loaded dict.
        encoder = user_factory(encoder_name)(str(path))
        if not isinstance(encoder, UnifiedEncoder):
            missing = [a for a in ("encode", "output_dim", "modalities", "readouts") if not hasattr(encoder, a)]
            if missing:
                raise CmgError(f"--encoder {encoder_name}: returned object lacks {', '.join(missing)}")
        return encoder, encoder_name, -1
    ckpt = load_checkpoint(path)
    name = family_for(ckpt, path, encoder_name)
    family = registry.encoders.get(name)
    encoder = family.from_checkpoint(ckpt, source=str(path))
    epoch = ckpt.get("epoch", -1)
    return encoder, name, int(epoch) if isinstance(epoch, (int, float)) else -1


# A row label names folders under --out (predictions/, jobs/): letters, digits and `_ . + -`, starting with a
# letter or digit, so no label can be a path; readouts are encoder-defined names and may also hold `:`.
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
READOUT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,99}")


def label_from_stem(stem: str) -> str:
    """A label derived from a file name: every other character becomes `_`."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", stem).lstrip("_.+-")[:100] or "model"


def parse_ckpt_spec(spec: str) -> tuple[str, str | None, str]:
    """`[LABEL[@READOUT]=]PATH` -> (label, readout, path); the row label is `LABEL@READOUT` as written
    (e.g. `srcid@layer1`), the file stem without a label. A label outside the safe set is refused."""
    head, sep, path = spec.partition("=")
    if not sep:
        head, path = "", spec
    label, _, readout = head.partition("@")
    if label and not LABEL.fullmatch(label):
        raise CmgError(f"--ckpt {spec}: label {label!r} is not a safe folder name, expected letters, digits and "
                       f"_ . + - (at most 100, starting with a letter or digit)")
    if readout and not READOUT.fullmatch(readout):
        raise CmgError(f"--ckpt {spec}: readout {readout!r} is not a readout name, expected letters, digits and "
                       f"_ . : + -")
    return head if label else label_from_stem(Path(path).stem), readout or None, path


def check_labels(labels: list[str], where: str = "--ckpt") -> None:
    """Row labels name folders under --out: each a safe name, no two on one folder (case-insensitive file
    systems included), checked before anything is loaded."""
    for label in labels:
        name, _, readout = label.partition("@")
        if not LABEL.fullmatch(name) or (readout and not READOUT.fullmatch(readout)):
            raise CmgError(f"{where}: row label {label!r} is not a safe folder name, expected LABEL[@READOUT] of "
                           f"letters, digits and _ . + -")
    seen: dict[str, str] = {}
    for label in labels:
        folder = folder_name(label).casefold()
        if folder in seen:
            if seen[folder] == label:
                raise CmgError(f"{where} labels must be unique, {label} repeats (use LABEL=PATH)")
            raise CmgError(f"{where} labels {seen[folder]!r} and {label!r} would share one folder under --out "
                           f"({folder_name(label)}, on a case-insensitive file system), expected distinct names")
        seen[folder] = label


def load_model(spec: str, encoder_name: str | None = None) -> LoadedModel:
    label, readout, path = parse_ckpt_spec(spec)
    if not Path(path).is_file():
        raise CmgError(f"{path}: checkpoint file not found")
    encoder, method, epoch = load_encoder(path, encoder_name)
    chosen = encoder.resolve_readout(readout) if isinstance(encoder, UnifiedEncoder) else (readout or encoder.default_readout)
    return LoadedModel(label=label, encoder=encoder, readout=chosen, path=str(path), sha256=sha256_file(path),
                       method=method, checkpoint_epoch=epoch)
