"""onnxruntime's process-wide settings, applied once before the first session is made.

Session options set each session's log level, but onnxruntime's environment logs before any session
exists: its telemetry start-up and device discovery print warnings to stderr (as a user who cannot
read /sys/class/drm, for one). The default logger is set to errors only and telemetry is switched
off (onnxruntime only sends it on Windows; elsewhere it is a no-op, and this keeps it that way).
"""

from __future__ import annotations

import contextlib
import functools


@functools.cache
def quiet_onnxruntime() -> None:
    import onnxruntime as ort

    with contextlib.suppress(AttributeError):  # both exist since onnxruntime 1.x; be safe
        ort.set_default_logger_severity(3)  # 3 = ERROR
        ort.disable_telemetry_events()
