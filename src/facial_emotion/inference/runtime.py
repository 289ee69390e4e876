"""onnxruntime's process-wide settings, applied once before the first session is made.

Session options set each session's log level, but onnxruntime's environment logs before any session
exists: its telemetry start-up and device discovery print warnings to stderr (as a user who cannot
read /sys/class/drm, for one). The default logger is set to errors only and telemetry is switched
off (onnxruntime only sends it on Windows; elsewhere it is a no-op, and this keeps it that way).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import onnxruntime as ort


@functools.cache
def quiet_onnxruntime() -> None:
    with contextlib.suppress(AttributeError):  # both exist since onnxruntime 1.x; be safe
        ort.set_default_logger_severity(3)  # 3 = ERROR
        ort.disable_telemetry_events()


def cpu_session(path: str | Path, threads: int) -> ort.InferenceSession:
    """An onnxruntime session on the CPU: ``threads`` intra-op threads (0 = onnxruntime's choice),
    one inter-op thread, errors-only logging, and the process-wide settings above applied first."""
    quiet_onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
