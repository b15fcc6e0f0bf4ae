"""What `mm-assets run` and `demo` show a person at the terminal: a live bar per stage (items, rate,
time left) while the runs execute, and nothing of the libraries' own chatter. Off a terminal (cron,
systemd, CI logs, a redirect), plain lines instead: one when a stage starts, one when it ends, and
one at least every 30 s of a stage between them."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from typing import TextIO

from huggingface_hub.utils import disable_progress_bars
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from mm_assets.progress import Update


def quiet_libraries() -> None:
    """No download or weight-loading bars, no library warnings, no telemetry: the CLI says what
    happened itself (the full event log is in the Dagster instance)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    disable_progress_bars()  # transformers reads this when it is first imported
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("DAGSTER_TELEMETRY_DISABLED", "1")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    warnings.filterwarnings("ignore")
    logging.getLogger("dagster").setLevel(logging.ERROR)


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        rate = task.fields["rate"]
        return Text(f"{rate:7.1f} {task.fields['unit']}s/s" if rate else "", style="progress.data.speed")


def _terminal() -> TextIO:
    """The real terminal, kept before Dagster captures the steps' stdout and stderr."""
    try:
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    except (AttributeError, OSError, ValueError):  # stderr replaced by something without a descriptor
        return sys.stderr


def plain_line(update: Update) -> str:
    """A stage's progress as one line of text."""
    rate = f", {update.done / update.seconds:.1f} {update.unit}s/s" if update.done and update.seconds > 0 else ""
    state = "done" if update.finished else "started" if not update.done else "running"
    return f"{update.stage}: {state}, {update.done:,}/{update.total:,} {update.unit}s in {update.seconds:.0f} s{rate}"


class LiveProgress:
    """One bar per stage, fed by the steps' Progress updates (mm_assets.progress.listening); off a
    terminal, plain lines."""

    PLAIN_EVERY_S = 30.0  # off a terminal, a running stage says where it is at least this often

    def __init__(self, stream: TextIO | None = None):
        self.owned = stream is None  # a descriptor of our own, closed at the end
        self.stream = stream or _terminal()
        self.console = Console(file=self.stream, highlight=False)
        self.bars = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            _Rate(),
            TimeRemainingColumn(compact=True, elapsed_when_finished=True),
            console=self.console,
            disable=not self.console.is_terminal,
        )
        self.tasks: dict[str, int] = {}  # stage -> its latest bar
        self.finished: set[int] = set()
        self.plain = not self.console.is_terminal
        # Off a terminal: each running stage's latest update, when it came, and when a line last told it.
        self._running: dict[int, tuple[Update, float, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="plain-progress", daemon=True)

    def __call__(self, update: Update) -> None:
        task = self.tasks.get(update.stage)
        if task is None or task in self.finished:  # a new stage, or the same stage of the next batch
            task = self.tasks[update.stage] = self.bars.add_task(
                update.stage, total=update.total, unit=update.unit, rate=None
            )
        rate = update.done / update.seconds if update.done and update.seconds > 0 else None
        self.bars.update(task, completed=update.done, total=update.total, rate=rate)
        if self.plain:
            self._plain(task, update)
        if update.finished:
            self.bars.stop_task(task)
            self.finished.add(task)

    def _plain(self, task: int, update: Update) -> None:
        with self._lock:
            if update.finished:
                self._running.pop(task, None)
                self._write(update)
            elif task not in self._running:
                self._running[task] = (update, time.monotonic(), time.monotonic())
                self._write(update)
            else:
                self._running[task] = (update, time.monotonic(), self._running[task][2])

    def _tick(self) -> None:
        """A line for each stage that has run PLAIN_EVERY_S without one (a slow file, a long epoch)."""
        while not self._stop.wait(min(1.0, self.PLAIN_EVERY_S / 4)):
            with self._lock:
                now = time.monotonic()
                for task, (update, received, told) in list(self._running.items()):
                    if now - told >= self.PLAIN_EVERY_S:
                        seconds = update.seconds + (now - received)  # the stage went on since its update
                        self._write(Update(update.stage, update.done, update.total, update.unit, seconds, False))
                        self._running[task] = (update, received, now)

    def _write(self, update: Update) -> None:
        print(plain_line(update), file=self.stream, flush=True)

    def __enter__(self) -> LiveProgress:
        self.bars.start()
        if self.plain:
            self._ticker.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        self.bars.stop()
        if self.owned and self.stream is not sys.stderr:
            self.stream.close()
