"""The synthetic benchmark: every task's folder, in the release formats, plus `oracle.pt`.

Each module of this package that defines `write(root, world, size, rng)` adds its datasets;
`synthesize` runs them all into one folder.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Callable

import numpy as np

from cmg_eval.data.synth.oracle import write_oracle
from cmg_eval.data.synth.world import World, name_seed
from cmg_eval.io import write_json

SIZES = ("tiny", "small", "full")
HELPERS = {"world", "oracle"}


def writers() -> dict[str, Callable]:
    """Dataset writers found in this package, by module name."""
    found = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name not in HELPERS:
            found[module.name] = importlib.import_module(f"{__name__}.{module.name}").write
    return dict(sorted(found.items()))


def synthesize(out: str | Path, size: str = "tiny", seed: int = 0, progress: Callable[[str], None] = lambda _: None) -> Path:
    """Write every dataset and `oracle.pt` into `out`; deterministic from `seed`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world = World(seed)
    written = {}
    for name, write in writers().items():
        progress(name)
        written[name] = write(out, world, size, np.random.default_rng(name_seed("dataset", name, seed)))
    progress("oracle")
    write_oracle(world, out / "oracle.pt")
    write_json(out / "synth.json", {"size": size, "seed": seed, "datasets": written})
    return out
