"""SRCID's warm start: layer 2 joins once layer 1's CLUB MI estimate has fallen near zero.

The estimate is smoothed (EMA over steps); layer 2 switches on at the first step, not before
`min_step`, after `patience` consecutive steps with |smoothed MI| <= `threshold`, or at `max_step`
if that never happens (the reason is recorded).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

SMOOTHING = 0.9


@dataclass
class Layer2Switch:
    threshold: float
    patience: int
    min_step: int
    max_step: int
    smoothed: float | None = None
    below: int = 0
    start_step: int | None = None   # first step whose loss includes layer 2
    reason: str | None = None

    @property
    def on(self) -> bool:
        return self.start_step is not None

    def observe(self, step: int, mi: float) -> bool:
        """Feed step `step`'s layer-1 MI; True when layer 2 is on from step `step + 1`."""
        if self.on:
            return True
        if not math.isnan(mi):
            self.smoothed = mi if self.smoothed is None else SMOOTHING * self.smoothed + (1 - SMOOTHING) * mi
            self.below = self.below + 1 if abs(self.smoothed) <= self.threshold else 0
        if step + 1 >= self.min_step and self.below >= self.patience:
            self.start_step, self.reason = step + 1, f"layer-1 MI within {self.threshold:g} for {self.patience} steps"
        elif step + 1 >= self.max_step:
            self.start_step, self.reason = step + 1, f"layer-1 MI still above {self.threshold:g} at max_step"
        return self.on

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
