"""What a benchmark ran on, for its result file: the same cores can be of another CPU from one machine to the next."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), or the platform's processor string elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """E.g. 'x86_64, Intel(R) Xeon(R) Processor, 2 CPU cores, Python 3.11.7'."""
    return f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def boot_id() -> str:
    """This boot of this machine (Linux), or '' elsewhere: two hosts can report the same CPU model name at
    different speeds, and a figure timed on one does not hold on the other."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
