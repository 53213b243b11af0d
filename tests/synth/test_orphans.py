"""A synthesis server killed outright (SIGKILL, OOM) leaves no composition worker behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _workers(pid: int) -> list[int]:
    found = []
    for child in _children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.append(child)
    return found


def test_workers_exit_when_the_server_is_killed(data_root: Path) -> None:
    library = data_root / "mnfinder" / "val.json"
    serve = [sys.executable, "-m", "synthloc", "synth", "serve", "--library", str(library)]
    server = subprocess.Popen(
        [*serve, "--port", "0", "--metrics-port", "-1", "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while len(workers) < 2 and time.monotonic() < deadline:
            assert server.poll() is None, "the server died at startup"
            time.sleep(0.5)
            workers = _workers(server.pid)
        assert len(workers) == 2, "the server never started its 2 workers"
        time.sleep(1.0)  # the workers' initializer has run once they composed the warm-up
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    deadline = time.monotonic() + 15
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} outlived their killed server"
