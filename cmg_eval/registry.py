"""Registries of encoders, tasks and pretraining methods: filled by decorators and by entry points."""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Callable, Generic, TypeVar

from cmg_eval.errors import CmgError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object, filled by `register`, built-in packages and an entry-point group."""

    def __init__(self, kind: str, group: str, builtin_packages: tuple[str, ...]):
        self.kind = kind
        self.group = group
        self.builtin_packages = builtin_packages
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise CmgError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorate

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for package_name in self.builtin_packages:
            package = importlib.import_module(package_name)
            for module in pkgutil.iter_modules(package.__path__):
                if not module.name.startswith("_"):
                    importlib.import_module(f"{package_name}.{module.name}")
        for entry in entry_points(group=self.group):
            obj = entry.load()
            self._items.setdefault(entry.name, obj)

    def get(self, name: str) -> T:
        self._load()
        if name not in self._items:
            raise CmgError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})")
        return self._items[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)


encoders: Registry = Registry("encoder", "cmg_eval.encoders", ("cmg_eval.encoders",))
tasks: Registry = Registry("task", "cmg_eval.tasks", ("cmg_eval.tasks",))   # the repository's tasks/ folder
methods: Registry = Registry("method", "cmg_eval.methods", ("cmg_eval.train.methods",))

register_encoder = encoders.register
register_task = tasks.register
register_method = methods.register
