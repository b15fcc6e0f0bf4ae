"""Progress for long steps: a bar on a terminal (CLI runs), a periodic log line everywhere (Dagster UI)."""

from __future__ import annotations

import time
from collections.abc import Callable

from tqdm import tqdm


class Progress:
    def __init__(self, total: int, desc: str, log: Callable[[str], None] | None = None, every_s: float = 10.0):
        self.bar = tqdm(total=total, desc=desc, unit="item", disable=None, leave=False, dynamic_ncols=True)
        self.total, self.desc, self.log, self.every_s = total, desc, log, every_s
        self.done, self.start, self.last_log = 0, time.monotonic(), time.monotonic()

    def __call__(self, n: int = 1) -> None:
        self.done += n
        self.bar.update(n)
        now = time.monotonic()
        if self.log and now - self.last_log >= self.every_s:
            rate = self.done / max(now - self.start, 1e-9)
            self.log(f"{self.desc}: {self.done}/{self.total} ({rate:.1f}/s)")
            self.last_log = now

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
