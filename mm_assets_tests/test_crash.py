"""A run killed with SIGKILL mid-embedding or mid-rebuild is completed by rerunning it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mm_assets.config_loading import load_settings
from mm_assets.store.segments import read_generation
from mm_assets_tests.corpus import gradient
from mm_assets_tests.helpers import db_rows


def start_run(home: Path, model: Path, source: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mm_assets.cli", "--home", str(home), "--model", str(model), "run", str(source)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_when(process: subprocess.Popen, appears, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not appears():
        assert process.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def many_images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        gradient(200, 150, seed=i).save(folder / f"img_{i}.png")
    return folder


def test_killed_mid_embedding_then_rerun_completes(tmp_path, tiny_clip):
    home, source = tmp_path / "home", many_images(tmp_path / "src", 400)
    run = start_run(home, tiny_clip, source)
    shards = home / "shards" / "embeddings"
    kill_when(run, lambda: any(p.name.endswith(".tmp") for p in shards.rglob("*")) if shards.exists() else False)

    assert not list(shards.rglob("*.parquet")), "a killed embedding leaves no shard that looks complete"
    assert not (home / "vectors" / "current.json").exists(), "nothing is served before the first update"
    assert start_run(home, tiny_clip, source).wait() == 0
    settings = load_settings(home=home, model=str(tiny_clip))
    table = db_rows(settings, "SELECT table_name FROM encoders")[0][0]
    assert db_rows(settings, f"SELECT count(*), count(DISTINCT chunk_id) FROM {table}")[0] == (400, 400)


def test_killed_mid_rebuild_keeps_serving_the_last_complete_state(tmp_path, tiny_clip):
    home, source = tmp_path / "home", many_images(tmp_path / "src", 20)
    assert start_run(home, tiny_clip, source).wait() == 0
    settings = load_settings(home=home, model=str(tiny_clip))
    before = db_rows(settings, "SELECT count(*) FROM chunks")[0][0]

    for i in range(200):
        gradient(120, 90, seed=1000 + i).save(source / f"more_{i}.png")
    run = start_run(home, tiny_clip, source)
    segments = home / "vectors" / "segments"
    kill_when(run, lambda: any(p.name.endswith(".building") for p in segments.iterdir()))
    assert db_rows(settings, "SELECT count(*) FROM chunks")[0][0] == before, "the old generation still answers"

    assert start_run(home, tiny_clip, source).wait() == 0
    assert db_rows(settings, "SELECT count(*) FROM chunks")[0][0] == before + 200


def test_two_runs_started_together_on_a_new_home_both_finish_and_later_runs_work(tmp_path, tiny_clip, monkeypatch):
    """They share Dagster's storage (created on first use) and the shard store; each file is served once."""
    monkeypatch.delenv("DAGSTER_HOME")  # the default instance, inside the new home
    home, source = tmp_path / "home", many_images(tmp_path / "src", 30)
    runs = [start_run(home, tiny_clip, source) for _ in range(2)]
    assert [r.wait(timeout=600) for r in runs] == [0, 0]
    assert start_run(home, tiny_clip, source).wait(timeout=600) == 0
    settings = load_settings(home=home, model=str(tiny_clip))
    rows = db_rows(settings, "SELECT count(*), count(DISTINCT path) FROM files")
    assert rows == [(30, 30)]
    (table,) = [t for (t,) in db_rows(settings, "SELECT table_name FROM encoders")]
    assert db_rows(settings, f"SELECT count(*), count(DISTINCT chunk_id) FROM {table}") == [(30, 30)]


def test_ten_kills_at_random_points_then_a_clean_run_serve_every_file_once(tmp_path, tiny_clip):
    """kill -9 anywhere (imports, discovery, ingest, chunking, embedding, the rebuild), ten times, new
    files arriving in between; then one clean run."""
    import random

    from mm_assets.search.query import search

    home, source = tmp_path / "home", many_images(tmp_path / "src", 30)
    rng = random.Random(7)
    for round_ in range(10):
        for i in range(3):
            gradient(160, 120, seed=5000 + 10 * round_ + i).save(source / f"new_{round_}_{i}.png")
        run = start_run(home, tiny_clip, source)
        time.sleep(rng.uniform(0.5, 9.0))
        run.kill()
        run.wait()
    clean = subprocess.run(
        [sys.executable, "-m", "mm_assets.cli", "--home", str(home), "--model", str(tiny_clip), "run", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert clean.returncode == 0, clean.stderr[-3000:]
    settings = load_settings(home=home, model=str(tiny_clip))
    images = sorted(source.glob("*.png"))
    assert db_rows(settings, "SELECT count(*), count(DISTINCT path) FROM files") == [(len(images), len(images))]
    (table,) = [t for (t,) in db_rows(settings, "SELECT table_name FROM encoders")]
    assert db_rows(settings, f"SELECT count(*), count(DISTINCT chunk_id) FROM {table}") == [(len(images),) * 2]
    for image in images[::7]:
        assert search(settings.db_path, image=image, k=1)[0].path == str(image)
    leftovers = [p for p in home.rglob(".*") if p.suffix in (".tmp", ".building") or ".building" in p.name]
    assert not leftovers, "what the killed writers left is cleaned up"
    served = {f"{p.parent.name}/{p.name}" for p in settings.db_path.glob("*/*")}
    assert served == read_generation(settings.db_path).files(), "only the files of the generation served"
