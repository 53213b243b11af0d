"""CPU time of a process tree from Linux's /proc, for the benchmarks' per-request CPU figures."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of process `pid` and of every process below it, by pid
    (empty without Linux's /proc)."""
    seconds: dict[int, float] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except FileNotFoundError:  # ended meanwhile
            continue
        seconds[p] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in tasks:
            with contextlib.suppress(FileNotFoundError):  # a thread ended meanwhile
                todo += [int(c) for c in (task / "children").read_text().split()]
    return seconds


def cpu_ms_per_item(before: dict[int, float], after: dict[int, float], images: int) -> float:
    """CPU ms per item (image, request) spent between two tree_cpu readings (processes in both)."""
    return sum(after[p] - before[p] for p in after.keys() & before.keys()) / images * 1000
