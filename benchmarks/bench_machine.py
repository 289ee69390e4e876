"""What a benchmark records about where it ran, and how it writes its results, in one place for every
script in benchmarks/."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from facial_emotion.results.files import atomic_write_bytes
from facial_emotion.training.machine import cpu_flags, cpuinfo_text

REPO = Path(__file__).resolve().parents[1]
# Taken when a benchmark imports this module, before its work: describe_machine() is called when the
# results are assembled, after the work, when the load average counts the benchmark itself.
LOAD_AT_START = list(os.getloadavg())
STARTED = time.strftime("%Y-%m-%d %H:%M:%S %Z")
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
    dirty = {}
    if commit.endswith("-dirty"):  # which uncommitted changes: a hash of the diff tells runs apart
        diff = subprocess.run(["git", "diff", "HEAD"], capture_output=True, cwd=REPO).stdout
        dirty = {"uncommitted_diff_sha256": hashlib.sha256(diff).hexdigest()[:16]}
    return {
        "started": STARTED,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),  # when the results were assembled
        "commit": commit or "unknown",
        "cpu": names[0] if names else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "cpu_features": [f for f in CPU_FEATURES if f in flags],
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": LOAD_AT_START,
        "load_average_at_end": list(os.getloadavg()),
        **dirty,
    }


def write_results(out: Path, results: dict, markdown: str | None = None) -> None:
    """``results`` as JSON at ``out`` (and ``markdown`` beside it as .md), each written to a temp file
    and renamed: an interrupted benchmark leaves the previous results whole. The command that made
    them is recorded in the JSON (``command``), so that each file says how to reproduce it."""
    results = {"command": shlex.join(["python", *sys.argv]), **results}
    atomic_write_bytes(out, (json.dumps(results, indent=2) + "\n").encode())
    written = [str(out)]
    if markdown is not None:
        atomic_write_bytes(out.with_suffix(".md"), markdown.encode())
        written.append(str(out.with_suffix(".md")))
    print(f"wrote {' and '.join(written)}")
