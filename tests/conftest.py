"""Shared fixtures: where the real data lives, and small generated datasets in every format."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facial_emotion import settings
from facial_emotion.labels import EMOTIONS, FERPLUS_COLUMNS

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACIAL_EMOTION_SHARED", REPO.parent / "shared"))
MEDIA = SHARED / "media"
DATASETS = SHARED / "datasets"
ARTIFACTS = Path(os.environ.get("FACIAL_EMOTION_ARTIFACTS", REPO / "test-artifacts"))


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``facial-emotion ARGS...`` in a child process of this interpreter, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "facial_emotion", *args], capture_output=True, text=True, timeout=timeout
    )


def need_shared(*parts: str) -> Path:
    """The path under ../shared, or skip the test loudly when the real data is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"REAL DATA MISSING: {path} not found (set FACIAL_EMOTION_SHARED to the shared folder)")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dataset caches of generated data go to a temp folder, not the user's home."""
    monkeypatch.setenv("FACIAL_EMOTION_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    settings.reload()  # settings are read once per process: read them again with this variable


def synthetic_faces(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """48x48 uint8 'faces' whose class is easy to see (brightness level, which survives the
    augmentation's crops and warps, plus a bar at a class-specific height), so a net learns
    them in an epoch or two."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(EMOTIONS)
    rng.shuffle(labels)
    noise = rng.integers(-12, 13, size=(n, 48, 48))
    images = np.clip(20 + 32 * labels[:, None, None] + noise, 0, 255).astype(np.uint8)
    for i, c in enumerate(labels):
        y = 4 + 6 * c
        images[i, y : y + 5, 6:42] = 250
    return images, labels


def write_fer_csv(path: Path, images: np.ndarray, labels: np.ndarray, usages: list[str]) -> Path:
    lines = ["emotion,pixels,Usage"]
    for img, lab, use in zip(images, labels, usages, strict=True):
        lines.append(f"{lab},{' '.join(map(str, img.ravel()))},{use}")
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    """A FER-2013-format csv: 280 Training + 70 PublicTest rows."""
    images, labels = synthetic_faces(350)
    usages = ["Training"] * 280 + ["PublicTest"] * 70
    return write_fer_csv(tmp_path / "fer2013.csv", images, labels, usages)


@pytest.fixture
def tiny_kaggle(tmp_path: Path) -> Path:
    """ROOT/{train,test}/<emotion>/*.png|jpg of various sizes and colours."""
    images, labels = synthetic_faces(140, seed=1)
    root = tmp_path / "kaggle"
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        split = "train" if i < 105 else "test"
        folder = root / split / EMOTIONS[lab]
        folder.mkdir(parents=True, exist_ok=True)
        if i % 3 == 0:  # a bigger colour image: readers must convert it to 48x48 gray
            big = cv2.cvtColor(cv2.resize(img, (96, 96)), cv2.COLOR_GRAY2BGR)
            cv2.imwrite(str(folder / f"{split}_{i}.jpg"), big)
        else:
            cv2.imwrite(str(folder / f"{split}_{i}.png"), img)
    return root


def write_ferplus(path: Path, n: int, usages: list[str], blank_rows: set[int] = frozenset()) -> Path:
    rng = np.random.default_rng(2)
    lines = ["Usage,Image name," + ",".join(FERPLUS_COLUMNS)]
    for i in range(n):
        votes = rng.multinomial(10, [0.3, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.04, 0.03, 0.03])
        name = "" if i in blank_rows else f"fer{i:07d}.png"
        if i in blank_rows:
            votes = np.array([0] * 9 + [10])
        lines.append(f"{usages[i]},{name}," + ",".join(map(str, votes)))
    path.write_text("\n".join(lines) + "\n")
    return path


def model_with_description(tmp_path: Path, name: str, **changes: object) -> Path:
    """The built-in fast model's graph with its description changed: a model that says one thing and
    computes another."""
    from facial_emotion.inference.classifier import EmotionClassifier
    from facial_emotion.model_file import builtin_model_path, write_model

    source = builtin_model_path("fast")
    out = tmp_path / f"{name}.onnx"
    write_model(out, source.read_bytes(), {**EmotionClassifier(source).metadata, **changes})
    return out


def cpu_seconds(pid: int) -> float:
    """CPU seconds a process has used (utime + stime), 0 when it is gone: a child under way."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def poll(check, timeout_s: float = 10.0) -> bool:
    """True once ``check()`` is; False after ``timeout_s``. (Playwright's wait_for_function evaluates
    a string in the page, which the page's CSP forbids; a child process is watched the same way.)"""
    import time

    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
