"""Codebook diagnostics (spec 5): code usage and perplexity per modality, dead codes, and how often
paired inputs of two modalities land on the same code.

Works for every encoder with `encode_indices` (B, T, L): each of the L code columns (RVQ levels,
SRCID layers) is reported on its own. Paired inputs are clips seen in every modality, e.g. the
VGGSound-AVEL40k pretraining set (`paired_inputs`).
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from cmg_eval.encoders.base import LoadedModel, UnifiedEncoder, finite_activations, finite_float32
from cmg_eval.errors import CmgError, UnsupportedModality

BATCH = 64


def code_counts(encoder: UnifiedEncoder) -> list[int] | None:
    """Codes per column from `codebook()`: (n, D) one table, (L, n, D) one per column."""
    table = encoder.codebook()
    if table is None:
        return None
    return [table.shape[-2]] * (table.shape[0] if table.dim() == 3 else 1)


def encode_all(encoder: UnifiedEncoder, modality: str, inputs: np.ndarray | torch.Tensor) -> np.ndarray | None:
    """(N, T, L) int64 indices, encoded in batches; inputs checked finite as float32 and the continuous features
    inside the encoder finite (a NaN one would land on a valid-looking code)."""
    parts = []
    for start in range(0, len(inputs), BATCH):
        where = f"codebook {modality} inputs {start}..{min(start + BATCH, len(inputs)) - 1}"
        batch = torch.from_numpy(finite_float32(np.asarray(inputs[start:start + BATCH]), where))
        with torch.inference_mode(), finite_activations(encoder.name, where):
            codes = encoder.encode_indices(modality, batch)
        if codes is None:
            return None
        parts.append(codes.numpy())
    return np.concatenate(parts)


def usage(indices: np.ndarray, n_codes: int | None) -> dict[str, float]:
    """Distinct codes used, their share of the codebook, and the perplexity exp(H) of the code histogram."""
    values, counts = np.unique(indices, return_counts=True)
    p = counts / counts.sum()
    out = {"used": int(len(values)), "perplexity": float(np.exp(-(p * np.log(p)).sum()))}
    if n_codes:
        out["usage"] = len(values) / n_codes
    return out


def mode_codes(indices: np.ndarray) -> np.ndarray:
    """(N, T) -> (N,) the most frequent code of each item (ties: the lowest index)."""
    return np.array([np.bincount(row).argmax() for row in indices])


def agreement(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """Share of paired segments (same item, same step) and of items (mode code) with the same code."""
    out = {"clip_mode": float(np.mean(mode_codes(first) == mode_codes(second)))}
    if first.shape == second.shape:
        out["segment"] = float(np.mean(first == second))
    return out


def diagnostics(encoder: UnifiedEncoder, paired_inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Per code column: usage per modality, dead codes (used by no modality), cross-modal agreement.

    `paired_inputs` maps modality -> (N, T, ...) inputs whose items are paired across modalities.
    """
    lengths = {len(v) for v in paired_inputs.values()}
    if len(lengths) != 1:
        raise CmgError(f"codebook diagnostics: paired inputs differ in item counts ({sorted(lengths)})")
    indices = {}
    for modality, inputs in paired_inputs.items():
        if modality not in encoder.modalities:
            continue
        try:
            found = encode_all(encoder, modality, inputs)
        except UnsupportedModality:
            continue
        if found is None:
            raise CmgError(f"encoder {encoder.name!r} exposes no codes (encode_indices returns None)")
        indices[modality] = found
    if not indices:
        raise CmgError(f"encoder {encoder.name!r}: none of {', '.join(paired_inputs)} can be encoded")
    n_columns = next(iter(indices.values())).shape[-1]
    counts = code_counts(encoder) or [None] * n_columns
    columns = []
    for k in range(n_columns):
        column = {m: idx[..., k] for m, idx in indices.items()}
        used = set(np.unique(np.concatenate([c.ravel() for c in column.values()])).tolist())
        n_codes = counts[k] if k < len(counts) else counts[0]
        columns.append({
            "column": k + 1, "n_codes": n_codes,
            "modalities": {m: usage(c, n_codes) for m, c in column.items()},
            "dead_codes": None if n_codes is None else n_codes - len(used),
            "agreement": {f"{a}-{b}": agreement(column[a], column[b]) for a, b in combinations(column, 2)},
        })
    return {"encoder": encoder.name, "n_items": lengths.pop(), "columns": columns}


def paired_inputs(data_root: str | Path, max_items: int = 256) -> dict[str, np.ndarray] | None:
    """The first `max_items` VGGSound-AVEL40k clips in every modality, or None if the set is absent."""
    from cmg_eval.train.data import FOLDER, load_pretrain_set

    if not (Path(data_root) / FOLDER / "data" / "vggsound-avel40k.csv").is_file():
        return None
    dataset = load_pretrain_set(data_root, preload=False)
    batch = dataset.batch(np.arange(min(max_items, len(dataset))))
    return {m: t.numpy() for m, t in batch.items()}


def codebook_report(models: list[LoadedModel], data_root: str | Path, max_items: int = 256) -> dict[str, Any]:
    """Diagnostics of every model with codes, by row label (for a run's `meta`); {} without paired data.

    Codes do not depend on the readout, so rows of one checkpoint (`srcid`, `srcid@layer1`) share one encoding."""
    inputs = paired_inputs(data_root, max_items)
    if inputs is None:
        return {}
    by_checkpoint: dict[tuple[str, str], dict[str, Any]] = {}
    report = {}
    for m in models:
        if hasattr(m.encoder, "encode_indices") and getattr(m.encoder, "code_readout", None):
            key = (m.sha256, m.encoder.name)
            if key not in by_checkpoint:
                by_checkpoint[key] = diagnostics(m.encoder, inputs)
            report[m.label] = by_checkpoint[key]
    return report
