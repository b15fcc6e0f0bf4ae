"""Where a benchmark writes its files: one folder under the system temp dir, removed when the
benchmark exits (a 400-photo run writes about 2 GB; left behind they fill the disk within a day of
benchmarking). `MM_BENCH_KEEP=1` keeps it for a look afterwards."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path


def scratch_dir(prefix: str) -> Path:
    work = Path(tempfile.mkdtemp(prefix=prefix))
    if os.environ.get("MM_BENCH_KEEP") == "1":
        print(f"scratch folder kept: {work}")
        return work
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    # A benchmark stopped with `kill` or `timeout` cleans up too (atexit runs on SystemExit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    return work
