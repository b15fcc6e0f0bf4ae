"""`mm-assets run` at a terminal: live progress per stage and a summary, without the libraries' noise."""

import os
import pty
import select
import subprocess
import sys
import time

NOISE = (
    " - dagster - ",  # Dagster-format log lines
    "Loading weights",
    "torchvision",
    "telemetry",
    "dagster.yaml",
    "Warning",
    "Traceback",
)


def run_in_terminal(args: list[str], env: dict, timeout_s: float = 300) -> str:
    """Run the CLI with a pseudo-terminal as its stdout and stderr; everything it wrote."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "mm_assets.cli", *args], stdout=follower, stderr=follower, env=env, close_fds=True
    )
    os.close(follower)
    out, deadline = b"", time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            out += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(leader)
    assert process.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def test_run_in_a_terminal_shows_progress_and_a_summary_and_no_noise(tmp_path, source, bad_reasons, tiny_clip):
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}  # a new user: no Dagster instance yet
    env.update(COLUMNS="120", TERM="xterm")
    out = run_in_terminal(["--home", str(tmp_path / "home"), "--model", str(tiny_clip), "run", str(source)], env)
    for stage in ("ingest", "chunk", "embed clip"):
        assert stage in out, f"no progress for {stage}:\n{out}"
    assert "files/s" in out and "chunks/s" in out, "rates per stage"
    assert "files: " in out and " added" in out and f"{len(bad_reasons)} quarantined" in out
    assert "quarantined " in out and "decompression bomb" in out and "empty file" in out, "each with its reason"
    assert "chunks written: " in out and "vectors computed: " in out and "time per stage: " in out
    for noise in NOISE:
        assert noise not in out, f"{noise!r} printed:\n{out}"

    # the other commands a person types next are as quiet
    base = ["--home", str(tmp_path / "home"), "--model", str(tiny_clip)]
    for command in (["search", "a photo", "--k", "3"], ["eval"]):  # a model load; a Dagster run
        out = run_in_terminal([*base, *command], env)
        for noise in NOISE:
            assert noise not in out, f"mm-assets {command[0]}: {noise!r} printed:\n{out}"


def test_off_a_terminal_a_run_prints_a_plain_line_when_each_stage_starts_and_ends(tmp_path, source, tiny_clip):
    """cron, systemd, `> log`: no bars, no control codes, but a line per stage."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    run = subprocess.run(
        [sys.executable, "-m", "mm_assets.cli", "--home", str(tmp_path / "home"), "--model", str(tiny_clip)]
        + ["run", str(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    for stage, unit in (("ingest", "files"), ("chunk", "files"), ("embed clip", "chunks")):
        started = [line for line in lines if line.startswith(f"{stage}: started")]
        done = [line for line in lines if line.startswith(f"{stage}: done")]
        assert started and done, f"no plain lines for {stage}:\n{run.stderr}"
        assert f" {unit} in " in done[0] and f"{unit}/s" in done[0], done[0]
    assert "\x1b" not in run.stderr + run.stdout, "no terminal control codes in a log"
    assert "vectors computed: " in run.stdout, "the summary as at a terminal"


def test_off_a_terminal_a_long_stage_says_where_it_is_between_its_start_and_end(monkeypatch):
    import io

    from mm_assets.progress import Update
    from mm_assets.terminal import LiveProgress

    monkeypatch.setattr(LiveProgress, "PLAIN_EVERY_S", 0.2)
    log = io.StringIO()
    with LiveProgress(log) as live:
        live(Update("embed clip", 0, 400, "chunk", 0.0, False))
        live(Update("embed clip", 10, 400, "chunk", 1.0, False))
        deadline = time.monotonic() + 10
        while log.getvalue().count("\n") < 3 and time.monotonic() < deadline:  # started, then running lines
            time.sleep(0.05)
        live(Update("embed clip", 400, 400, "chunk", 40.0, True))
    lines = log.getvalue().splitlines()
    assert lines[0] == "embed clip: started, 0/400 chunks in 0 s"
    running = [line for line in lines if line.startswith("embed clip: running, 10/400 chunks")]
    assert len(running) >= 2, lines
    assert lines[-1] == "embed clip: done, 400/400 chunks in 40 s, 10.0 chunks/s"
