"""Progress of long work: the rich bar on a terminal, plain lines every N seconds otherwise (batch jobs, logs)."""

from __future__ import annotations

import os
import time
from datetime import timedelta

from rich.console import Console
from rich.progress import Progress, ProgressColumn, Task, TaskID

INTERVAL_ENV = "CMG_EVAL_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0


def clock(seconds: float | None) -> str:
    return "?" if seconds is None else str(timedelta(seconds=int(seconds)))


def plain_line(task: Task) -> str:
    """`description: 120/800 (15%), elapsed 0:01:02, ETA 0:05:51, <losses>`: one line for a log file."""
    done = f"{task.completed:.0f}" + (f"/{task.total:.0f} ({task.percentage:.0f}%)" if task.total else "")
    eta = f", ETA {clock(task.time_remaining)}" if task.total else ""
    losses = task.fields.get("losses")
    return f"{task.description}: {done}, elapsed {clock(task.elapsed)}{eta}" + (f", {losses}" if losses else "")


class PlainProgress(Progress):
    """A `Progress` that prints `plain_line` of each task every `interval` seconds instead of drawing a bar."""

    def __init__(self, *columns: str | ProgressColumn, console: Console, interval: float, disable: bool = False):
        super().__init__(*columns, console=console, transient=True, disable=True)
        self.interval, self.silent, self._printed = interval, disable, {}

    def add_task(self, description: str, *args, **kwargs) -> TaskID:
        task_id = super().add_task(description, *args, **kwargs)
        self._printed[task_id] = time.monotonic()
        return task_id

    def update(self, task_id: TaskID, *args, **kwargs) -> None:
        super().update(task_id, *args, **kwargs)
        self._maybe_print(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_print(task_id)

    def _maybe_print(self, task_id: TaskID) -> None:
        now = time.monotonic()
        if self.silent or now - self._printed.get(task_id, now) < self.interval:
            return
        self._printed[task_id] = now
        with self._lock:
            task = self._tasks[task_id]
        self.console.print(plain_line(task), markup=False, highlight=False, soft_wrap=True)


def progress_display(*columns: str | ProgressColumn, console: Console, disable: bool = False) -> Progress:
    """The rich bar when `console` is a terminal; else plain lines every $CMG_EVAL_PROGRESS_SECONDS (default 30)."""
    if console.is_terminal:
        return Progress(*columns, console=console, transient=True, disable=disable)
    interval = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
    return PlainProgress(*columns, console=console, interval=interval, disable=disable)
