"""What `mm-assets run` and `demo` show a person at the terminal: a live bar per stage (items, rate,
time left) while the runs execute, and nothing of the libraries' own chatter."""

from __future__ import annotations

import logging
import os
import sys
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


class LiveProgress:
    """One bar per stage, fed by the steps' Progress updates (mm_assets.progress.listening)."""

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

    def __call__(self, update: Update) -> None:
        task = self.tasks.get(update.stage)
        if task is None or task in self.finished:  # a new stage, or the same stage of the next batch
            task = self.tasks[update.stage] = self.bars.add_task(
                update.stage, total=update.total, unit=update.unit, rate=None
            )
        rate = update.done / update.seconds if update.done and update.seconds > 0 else None
        self.bars.update(task, completed=update.done, total=update.total, rate=rate)
        if update.finished:
            self.bars.stop_task(task)
            self.finished.add(task)

    def __enter__(self) -> LiveProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.stop()
        if self.owned and self.stream is not sys.stderr:
            self.stream.close()
