"""The timing code every benchmark shares, so that facial-emotion and the `fer` peer are timed alike.

Imported by compare_fer.py and speed.py (the project's venv) and by peer_fer.py (fer's venv,
benchmarks/.peer-venv): it must import nothing but the standard library at module level, and nothing
of facial_emotion at all. OpenCV, which both venvs have, is imported only where a video is read, so
that the peer configures its threads before OpenCV loads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sized
from typing import Any


def rate(fn: Callable[[], object], units: int, seconds: float) -> float:
    """Calls of ``fn`` per second x units, after one warm-up call, over at least ``seconds`` and 3 calls."""
    fn()
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or n < 3:
        fn()
        n += 1
    return n * units / elapsed


def video_per_frame(path: str, analyze: Callable[[Any], Sized], max_frames: int = 0) -> dict:
    """Decode every frame of ``path`` with ``cv2.VideoCapture`` and ``analyze`` it (a frame in, the faces
    found out), timed from opening the file to the last frame; stops after ``max_frames`` (0: all).
    Frames read, seconds, fps, frames with a face and faces reported."""
    import cv2

    t0 = time.perf_counter()
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise ValueError(f"{path}: cannot open")
    frames = with_faces = faces = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        found = analyze(frame)
        frames += 1
        faces += len(found)
        with_faces += bool(found)
        if max_frames and frames >= max_frames:
            break
    cap.release()
    wall = time.perf_counter() - t0
    return {
        "frames": frames,
        "seconds": wall,
        "fps": frames / wall,
        "frames_with_faces": with_faces,
        "faces": faces,
    }
