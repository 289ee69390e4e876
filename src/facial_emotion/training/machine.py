"""The machine a run trains on, as the model's metadata records it."""

from __future__ import annotations

import os
from pathlib import Path


def training_machine(precision: str) -> str:
    """CPU model, cores and precision, e.g. "AMD EPYC 9R14, 2 cores, fp32"."""
    try:
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
    except OSError:
        names = []
    return f"{names[0] if names else 'unknown CPU'}, {os.cpu_count()} cores, {precision}"
