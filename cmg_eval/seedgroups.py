"""Rows that differ only by pretraining seed, grouped: mean and spread across pretraining seeds.

Convention: a row label `NAME+seedN[@READOUT]` (e.g. `dcid+seed44`, `srcid+seed44@layer1`) is model
NAME pretrained with seed N; its group is `NAME[@READOUT]`. A label without `+seedN` is a group of
one. The grouped document has the results schema: one row per (group, task, direction, metric) whose
`value` is the mean over the group's pretraining seeds of each member's (head-seed mean) value, `std`
the sample std across pretraining seeds, `n_seeds` the number of pretraining seeds, `head_std` the
mean head-seed std of the members and `members` each member's value, so the gate and the tables read
it like any run.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from cmg_eval.errors import CmgError

SEED_LABEL = re.compile(r"^(?P<name>.+)\+seed(?P<seed>\d+)$")


def split_label(label: str) -> tuple[str, int | None]:
    """`dcid+seed44` -> ("dcid", 44); `srcid+seed44@layer1` -> ("srcid@layer1", 44); others -> (label, None)."""
    name, at, readout = label.partition("@")
    found = SEED_LABEL.match(name)
    if not found:
        return label, None
    return found["name"] + at + readout, int(found["seed"])


def spread(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def grouped_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (group, task, direction, metric), in first-seen order."""
    members: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for row in results:
        group, _ = split_label(row["model"])
        members.setdefault((group, row["task"], row["direction"], row["metric"]), []).append(row)
    out = []
    for (group, *_), rows in members.items():
        values = [float(r["value"]) for r in rows]
        labels = [r["model"] for r in rows]
        if len(set(labels)) != len(labels):
            raise CmgError(f"row {labels[0]!r} {rows[0]['task']} {rows[0]['direction']} {rows[0]['metric']} "
                           f"appears twice; cannot group by pretraining seed")
        first = rows[0]
        out.append({**{k: v for k, v in first.items() if k not in ("per_seed", "ci_low", "ci_high")},
                    "model": group, "value": float(np.mean(values)), "std": spread(values), "n_seeds": len(rows),
                    "head_std": float(np.mean([float(r.get("std") or 0.0) for r in rows])),
                    "head_seeds": int(first.get("n_seeds") or 1), "members": dict(zip(labels, values)),
                    "ci_low": None, "ci_high": None})
    return out


def group_by_pretrain_seed(document: dict[str, Any]) -> dict[str, Any]:
    """The document with every `NAME+seedN` row folded into its group (paired tests dropped: they compare
    single models on the same items, not groups)."""
    meta = dict(document["meta"])
    groups: dict[str, dict[str, Any]] = {}
    for model in meta.get("models", []):
        group, seed = split_label(model["label"])
        entry = groups.setdefault(group, {**model, "label": group, "pretrain_seeds": []})
        if seed is not None:
            entry["pretrain_seeds"].append(seed)
    meta["models"] = list(groups.values())
    meta["grouped_by_pretrain_seed"] = True
    return {**document, "meta": meta, "results": grouped_rows(document["results"]), "comparisons": []}
