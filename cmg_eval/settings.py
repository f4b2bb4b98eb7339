"""`--set KEY=VALUE` / `--set TASK.KEY=VALUE`: task settings over each task's defaults."""

from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping

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


def resolve(defaults: Mapping[str, Mapping[str, Any]], assignments: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per-task settings: defaults overridden by assignments; an unknown key or task is an error."""
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
    return settings
