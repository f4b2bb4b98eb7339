"""`--set KEY=VALUE` / `--set TASK.KEY=VALUE`: task settings over each task's defaults."""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Iterable, Mapping

import yaml

from cmg_eval.errors import CmgError


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Keep the default's type: ints stay ints, numbers may be written as 1e-3, lists stay lists."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(default, list):
        if isinstance(value, list):
            return value
        if isinstance(value, (int, float)):
            return [value]
    elif isinstance(default, str) and isinstance(value, str):
        return value
    elif default is None:
        return value
    raise CmgError(f"--set {where}: {value!r} is not a valid value (expected {type(default).__name__} like {default!r})")


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


Rules = dict[str, tuple[Callable[[Any], bool], str]]   # key -> (accepts the value, what is expected)

# The downstream head trainer's settings (in every head-training task): values that would leave a head untrained
# (no epoch, no step size, gradients clipped to nothing) or crash it midway are refused before any work.
HEAD_TRAINING: Rules = {
    "epochs": (lambda v: isinstance(v, int) and v >= 1, "a whole number >= 1"),
    "batch_size": (lambda v: isinstance(v, int) and v >= 1, "a whole number >= 1"),
    "lr": (_positive, "a finite number > 0"),
    "paper_lr": (_positive, "a finite number > 0"),
    "gamma": (_positive, "a finite number > 0"),
    "clip_grad": (_positive, "a finite number > 0"),
    "encode_mode": (lambda v: v in ("eval", "train"), "eval or train"),
    "milestones": (lambda v: isinstance(v, list) and all(isinstance(m, int) and not isinstance(m, bool) and m >= 0
                                                          for m in v), "a list of whole numbers >= 0"),
}


def check_setting(key: str, value: Any, where: str, rules: Rules) -> None:
    """Every number finite; a key with a rule within it."""
    if isinstance(value, float) and not math.isfinite(value):
        raise CmgError(f"--set {where}: {value!r} is not a finite number")
    rule = rules.get(key)
    if rule is not None and not rule[0](value):
        raise CmgError(f"--set {where}: {key} must be {rule[1]} (a head must train), got {value!r}")


def parse_assignment(text: str) -> tuple[str | None, str, Any]:
    """`[TASK.]KEY=VALUE` -> (task or None, key, YAML-parsed value)."""
    target, sep, raw = text.partition("=")
    if not sep or not target:
        raise CmgError(f"--set {text}: expected KEY=VALUE or TASK.KEY=VALUE")
    task, _, key = target.rpartition(".")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return task or None, key, value


def resolve(defaults: Mapping[str, Mapping[str, Any]], assignments: Iterable[str],
            rules: Rules | None = None) -> dict[str, dict[str, Any]]:
    """Per-task settings: defaults overridden by assignments; an unknown key or task, a non-finite number or a
    value outside its rule is an error."""
    settings = {name: copy.deepcopy(dict(values)) for name, values in defaults.items()}
    for text in assignments:
        task, key, value = parse_assignment(text)
        if task is not None and task not in settings:
            raise CmgError(f"--set {text}: task {task!r} is not in this run (running: {', '.join(settings)})")
        names = [task] if task else [name for name, values in settings.items() if key in values]
        if not names or any(key not in settings[name] for name in names):
            known = sorted({k for name in (names or settings) for k in settings[name]})
            raise CmgError(f"--set {text}: unknown setting {key!r} (known: {', '.join(known)})")
        for name in names:
            settings[name][key] = _coerce(value, defaults[name][key], text)
            check_setting(key, settings[name][key], text, rules or {})
    return settings
