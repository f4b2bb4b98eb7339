"""The unified-encoder contract every model implements, and the check-model validator."""

from __future__ import annotations

from abc import ABC, abstractmethod
import types
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from cmg_eval.constants import FEATURE_TAILS, MAX_TEXT_TOKENS
from cmg_eval.errors import CmgError, UnsupportedModality

MODALITIES = ("video", "audio", "text")
SHORT = {"video": "V", "audio": "A", "text": "T"}


class UnifiedEncoder(ABC):
    """Maps each supported modality into one shared space: `encode -> (B, T, D)` float32.

    Implementations run in eval mode, are deterministic and never mutate their state.
    """

    name: str = "encoder"
    modalities: tuple[str, ...] = ()
    readouts: tuple[str, ...] = ("default",)
    default_readout: str = "default"
    # The readout whose rows are codebook entries selected by `encode_indices` (None: no codes).
    code_readout: str | None = None

    @abstractmethod
    def output_dim(self, readout: str | None = None) -> int:
        """Width D of `encode(..., readout)`."""

    @abstractmethod
    def encode(self, modality: str, feats: torch.Tensor, readout: str | None = None) -> torch.Tensor:
        """(B, T, *FEATURE_TAILS[modality]) -> (B, T, D) float32."""

    def encode_indices(self, modality: str, feats: torch.Tensor) -> torch.Tensor | None:
        """(B, T, L) int64 code indices, or None when the encoder has no codes."""
        return None

    def codebook(self) -> torch.Tensor | None:
        """The code table (float32), or None."""
        return None

    def lookup_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Rows of `code_readout` for given `encode_indices` output."""
        raise NotImplementedError

    def resolve_readout(self, readout: str | None) -> str:
        readout = readout or self.default_readout
        if readout not in self.readouts:
            raise CmgError(f"encoder {self.name!r} has no readout {readout!r} (known: {', '.join(self.readouts)})")
        return readout

    def check_input(self, modality: str, feats: Any) -> torch.Tensor:
        """Validate a batch against the modality's input layout; return it as a float tensor."""
        if modality not in MODALITIES:
            raise CmgError(f"unknown modality {modality!r} (known: {', '.join(MODALITIES)})")
        if modality not in self.modalities:
            raise UnsupportedModality(f"encoder {self.name!r} does not support {modality} (supports: {', '.join(self.modalities)})")
        feats = torch.as_tensor(feats)
        tail = FEATURE_TAILS[modality]
        if feats.dim() != 2 + len(tail) or tuple(feats.shape[2:]) != tail or feats.shape[1] < 1:
            raise CmgError(f"{modality} input has shape {tuple(feats.shape)}, expected (B, T, {', '.join(map(str, tail))})")
        if modality == "text" and feats.shape[1] > MAX_TEXT_TOKENS:
            raise CmgError(f"text input has {feats.shape[1]} tokens, expected at most {MAX_TEXT_TOKENS}")
        if not feats.is_floating_point():
            feats = feats.float()
        return feats


# ---------------------------------------------------------------- the contract a loaded encoder must meet

REQUIRED = ("modalities", "readouts", "output_dim", "encode")   # what every encoder object must have (docs/encoders.md)


class ContractEncoder(UnifiedEncoder):
    """A duck-typed encoder (not a `UnifiedEncoder` subclass) with the optional parts of the contract filled in:
    `name` (where it came from), `default_readout` (its first readout), `code_readout` (None: no codes)."""

    def __init__(self, inner: Any, where: str):
        self.inner = inner
        self.name = str(getattr(inner, "name", where))
        self.modalities = tuple(inner.modalities)
        self.readouts = tuple(inner.readouts)
        self.default_readout = getattr(inner, "default_readout", None) or self.readouts[0]
        self.code_readout = getattr(inner, "code_readout", None)

    def output_dim(self, readout: str | None = None) -> int:
        return self.inner.output_dim(self.resolve_readout(readout))

    def encode(self, modality: str, feats: torch.Tensor, readout: str | None = None) -> torch.Tensor:
        return self.inner.encode(modality, feats, self.resolve_readout(readout))

    def encode_indices(self, modality: str, feats: torch.Tensor) -> torch.Tensor | None:
        method = getattr(self.inner, "encode_indices", None)
        return method(modality, feats) if method is not None else None

    def codebook(self) -> torch.Tensor | None:
        method = getattr(self.inner, "codebook", None)
        return method() if method is not None else None

    def lookup_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.inner.lookup_codes(indices)


def conform(encoder: Any, where: str) -> UnifiedEncoder:
    """`encoder` checked against the contract (one-line error naming what is missing or wrong), as a
    `UnifiedEncoder` whose every attribute the rest of cmg-eval uses is present."""
    missing = [a for a in REQUIRED if not hasattr(encoder, a)]
    missing += [a for a in ("output_dim", "encode") if hasattr(encoder, a) and not callable(getattr(encoder, a))]
    if missing:
        raise CmgError(f"{where}: the encoder object ({type(encoder).__name__}) lacks {', '.join(missing)} "
                       f"(required: modalities, readouts, output_dim(readout), encode(modality, feats, readout))")
    modalities, readouts = encoder.modalities, encoder.readouts
    if isinstance(modalities, str) or not modalities or not set(modalities) <= set(MODALITIES):
        raise CmgError(f"{where}: modalities is {modalities!r}, expected a non-empty tuple of {', '.join(MODALITIES)}")
    if isinstance(readouts, str) or not readouts or not all(isinstance(r, str) and r for r in readouts):
        raise CmgError(f"{where}: readouts is {readouts!r}, expected a non-empty tuple of names")
    adapted = encoder if isinstance(encoder, UnifiedEncoder) else ContractEncoder(encoder, where)
    if adapted.default_readout not in adapted.readouts:
        raise CmgError(f"{where}: default_readout {adapted.default_readout!r} is not one of its readouts "
                       f"{tuple(adapted.readouts)!r}")
    if adapted.code_readout is not None:
        lacking = [a for a in ("encode_indices", "lookup_codes") if not callable(getattr(encoder, a, None))]
        if adapted.code_readout not in adapted.readouts or lacking:
            lacks = f" (lacks {', '.join(lacking)})" if lacking else ""
            raise CmgError(f"{where}: code_readout {adapted.code_readout!r} needs to be one of its readouts and "
                           f"encode_indices and lookup_codes methods{lacks}")
    return adapted


def tensor_holders(value: Any) -> Iterator[tuple[Any, Any, Any]]:
    """(container, key, item) for each attribute, dict value or list item of a plain object, dict or list."""
    if isinstance(value, dict):
        yield from ((value, key, item) for key, item in list(value.items()))
    elif isinstance(value, list):
        yield from ((value, index, item) for index, item in enumerate(value))
    elif isinstance(value, tuple):
        yield from ((None, index, item) for index, item in enumerate(value))
    elif hasattr(value, "__dict__") and not isinstance(value, (type, types.ModuleType, types.FunctionType,
                                                               types.MethodType, torch.nn.Module, torch.Tensor)):
        yield from ((value, name, item) for name, item in list(vars(value).items()))


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


def all_finite(values: torch.Tensor | np.ndarray) -> bool:
    """Whether every element is finite. A sum is finite only if every element is, and one sum is many times
    cheaper than a boolean array: the elements are looked at one by one only when the sum is not finite
    (a non-finite element, or finite ones whose sum overflows)."""
    if isinstance(values, torch.Tensor):
        return bool(torch.isfinite(values.sum())) or bool(torch.isfinite(values).all())
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(values.sum())) or bool(np.isfinite(values).all())


@contextmanager
def finite_activations(encoder: str, inputs: str) -> Iterator[None]:
    """Meanwhile every torch module's floating output must be finite. A quantizer maps NaN or inf continuous
    features (NaN weights, an overflow) to a valid-looking code, so they are refused where they appear."""
    def check(module: torch.nn.Module, args: Any, output: Any) -> None:
        for tensor in _tensors(output):
            if tensor.is_floating_point() and not all_finite(tensor):
                raise CmgError(f"encoder {encoder!r}: non-finite values out of its {type(module).__name__} module on "
                               f"{inputs}, expected finite features before quantization (NaN or inf weights, or "
                               f"an overflow)")

    handle = torch.nn.modules.module.register_module_forward_hook(check)
    try:
        yield
    finally:
        handle.remove()


def finite_float32(array: Any, where: str) -> np.ndarray:
    """Inputs as the float32 the encoders compute in, checked after the cast (1e300 in float64 is inf in
    float32); complex, string, object and boolean arrays are refused."""
    array = np.asarray(array)
    if array.dtype.kind not in "fiu":
        raise CmgError(f"{where}: dtype {array.dtype}, expected real numbers (float or integer)")
    with np.errstate(over="ignore"):   # an overflow is reported below, as a non-finite value
        cast = array.astype(np.float32, copy=False)
    if not all_finite(cast):
        item = int(np.flatnonzero(~np.isfinite(cast.reshape(len(cast), -1)).all(1))[0])
        raise CmgError(f"{where}: non-finite values in item {item} (as float32), expected finite numbers within "
                       f"float32 range")
    return cast


@dataclass
class LoadedModel:
    """An encoder with the facts a report records about where it came from."""

    label: str
    encoder: UnifiedEncoder
    readout: str
    path: str
    sha256: str
    method: str
    checkpoint_epoch: int = -1

    @property
    def identity(self) -> str:
        """What decides the embeddings: file content, encoder family and readout."""
        return f"{self.sha256}:{self.method}:{self.readout}"


# ---------------------------------------------------------------- check-model validator


@dataclass
class CheckResult:
    check: str
    modality: str
    ok: bool
    detail: str


def _state_snapshot(obj: Any) -> dict[str, torch.Tensor]:
    """Copies of every tensor the encoder holds: its modules' parameters and buffers, bare tensors."""
    snapshot: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def visit(prefix: str, value: Any) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, torch.nn.Module):
            for key, tensor in value.state_dict(keep_vars=True).items():
                snapshot[f"{prefix}.{key}"] = tensor.detach().clone()
        elif isinstance(value, torch.Tensor):
            snapshot[prefix] = value.detach().clone()
        else:
            for _, key, item in tensor_holders(value):
                visit(f"{prefix}.{key}", item)

    for _, name, value in tensor_holders(obj):
        visit(name, value)
    if isinstance(obj, torch.nn.Module):
        visit("self", obj)
    return snapshot


def example_inputs(modality: str, batch: int = 3, steps: int = 10, seed: int = 0) -> torch.Tensor:
    """Generated inputs of the modality's layout (non-negative like ReLU features)."""
    generator = torch.Generator().manual_seed(seed)
    steps = min(steps, MAX_TEXT_TOKENS) if modality == "text" else steps
    return torch.randn((batch, steps, *FEATURE_TAILS[modality]), generator=generator).abs()


def check_model(encoder: UnifiedEncoder, batch: int = 3, steps: int = 10) -> list[CheckResult]:
    """Run the contract checks on generated inputs; never raises for a failing check."""
    results: list[CheckResult] = []

    def record(check: str, modality: str, fn) -> Any:
        try:
            value = fn()
        except Exception as error:  # a failing check is a verdict, not a crash
            results.append(CheckResult(check, modality, False, f"{type(error).__name__}: {error}"))
            return None
        results.append(CheckResult(check, modality, value is None or value is True, "" if value in (None, True) else str(value)))
        return value

    record("declares modalities", "-", lambda: True if set(encoder.modalities) <= set(MODALITIES) and encoder.modalities
           else f"modalities {encoder.modalities!r} not a non-empty subset of {MODALITIES}")
    record("default readout declared", "-", lambda: True if encoder.default_readout in encoder.readouts
           else f"{encoder.default_readout!r} not in {encoder.readouts!r}")
    before = _state_snapshot(encoder)
    for modality in encoder.modalities:
        feats = example_inputs(modality, batch, steps)
        expected_steps = feats.shape[1] if modality != "text" else MAX_TEXT_TOKENS
        for readout in encoder.readouts:
            tag = f"{modality}@{readout}"
            first = record("encodes", tag, lambda: encoder.encode(modality, feats, readout) is not None)
            if first is None and not results[-1].ok:
                continue
            out1 = encoder.encode(modality, feats.clone(), readout)
            out2 = encoder.encode(modality, feats.clone(), readout)
            dim = encoder.output_dim(readout)
            record("shape (B,T,D)", tag, lambda: True if tuple(out1.shape) in {(batch, feats.shape[1], dim), (batch, expected_steps, dim)}
                   else f"got {tuple(out1.shape)}, expected ({batch}, {expected_steps}, {dim})")
            record("dtype float32", tag, lambda: True if out1.dtype == torch.float32 else f"got {out1.dtype}")
            record("finite", tag, lambda: True if torch.isfinite(out1).all() else "non-finite values in output")
            record("deterministic", tag, lambda: True if torch.equal(out1, out2)
                   else f"two calls differ by up to {(out1.double() - out2.double()).abs().max().item():.3g}")
        if encoder.code_readout is not None:
            def codes_are_rows() -> bool | str:
                indices = encoder.encode_indices(modality, feats)
                rows = encoder.lookup_codes(indices)
                out = encoder.encode(modality, feats, encoder.code_readout)
                if rows.shape != out.shape:
                    return f"lookup shape {tuple(rows.shape)} differs from output {tuple(out.shape)}"
                gap = (rows.double() - out.double()).abs().max().item()
                return True if gap <= 1e-6 else f"outputs are up to {gap:.3g} away from their codebook rows"
            record("outputs are codebook rows", f"{modality}@{encoder.code_readout}", codes_are_rows)
    after = _state_snapshot(encoder)

    def unchanged() -> bool | str:
        changed = sorted(k for k in before if k not in after or not torch.equal(before[k], after[k]))
        changed += sorted(k for k in after if k not in before)
        return True if not changed else f"changed: {', '.join(changed[:5])}"

    record("parameters and buffers unchanged", "-", unchanged)
    return results
