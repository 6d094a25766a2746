"""The machine a benchmark ran on, as one line (imported by the benchmark scripts)."""

from __future__ import annotations

import os
import platform


def describe_machine() -> str:
    """Host, CPU model, usable cores and the Python version."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.node()}: {cpu}, {cores} usable cores, Python {platform.python_version()}"
