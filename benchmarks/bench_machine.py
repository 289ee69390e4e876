"""What a benchmark records about where it ran, and how it writes its results, in one place for every
script in benchmarks/."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

from facial_emotion.results.files import atomic_write_bytes
from facial_emotion.training.machine import cpu_flags, cpuinfo_text

REPO = Path(__file__).resolve().parents[1]
# The CPU features that change our speed: SIMD width for onnxruntime, native bf16 for training.
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def describe_machine() -> dict:
    """Date, commit, CPU model, cores, CPU_FEATURES present, OS, Python, load."""
    cpuinfo = cpuinfo_text()
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    flags = cpu_flags(cpuinfo)
    # "-dirty": the measured files had uncommitted changes
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit or "unknown",
        "cpu": names[0] if names else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "cpu_features": [f for f in CPU_FEATURES if f in flags],
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


def write_results(out: Path, results: dict, markdown: str | None = None) -> None:
    """``results`` as JSON at ``out`` (and ``markdown`` beside it as .md), each written to a temp file
    and renamed: an interrupted benchmark leaves the previous results whole."""
    atomic_write_bytes(out, (json.dumps(results, indent=2) + "\n").encode())
    written = [str(out)]
    if markdown is not None:
        atomic_write_bytes(out.with_suffix(".md"), markdown.encode())
        written.append(str(out.with_suffix(".md")))
    print(f"wrote {' and '.join(written)}")
