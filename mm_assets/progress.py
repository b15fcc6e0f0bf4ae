"""Progress of long steps: a periodic log line everywhere (the Dagster UI shows it), and updates for
whoever listens in this process (the live bars of `mm-assets run`, which executes its runs in process:
see terminal.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Update:
    stage: str  # "embed clip", "chunk 20261126-…"
    done: int
    total: int
    unit: str
    seconds: float
    finished: bool


_listeners: list[Callable[[Update], None]] = []


@contextmanager
def listening(listener: Callable[[Update], None]) -> Iterator[None]:
    """Send every step's progress in this process to ``listener`` while the block runs."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


class Progress:
    SHOW_EVERY_S = 0.2  # listeners are told at most this often (a terminal redraw is cheap, not free)

    def __init__(
        self, total: int, desc: str, log: Callable[[str], None] | None = None, every_s: float = 10.0, unit="item"
    ):
        self.total, self.desc, self.log, self.every_s, self.unit = total, desc, log, every_s, unit
        self.done, self.start = 0, time.monotonic()
        self.last_log = self.last_shown = self.start

    def __call__(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.log and now - self.last_log >= self.every_s:
            rate = self.done / max(now - self.start, 1e-9)
            left = f", {(self.total - self.done) / rate:.0f} s left" if rate > 0 else ""
            self.log(f"{self.desc}: {self.done:,}/{self.total:,} {self.unit}s ({rate:,.1f}/s{left})")
            self.last_log = now
        if now - self.last_shown >= self.SHOW_EVERY_S:
            self._show(finished=False)
            self.last_shown = now

    def _show(self, finished: bool) -> None:
        update = Update(self.desc, self.done, self.total, self.unit, time.monotonic() - self.start, finished)
        for listener in list(_listeners):
            listener(update)

    def __enter__(self) -> Progress:
        self._show(finished=False)
        return self

    def __exit__(self, *exc) -> None:
        self._show(finished=True)
