"""Knowledge distillation from finished models (``train --teacher A.onnx,B.onnx --distill W``).

The teachers' ten-crop probabilities on every training face are computed once with the inference
stack (onnxruntime), averaged over the teachers, softened by a temperature and blended into the
soft targets. Offline targets cost nothing per step: a teacher forward pass on each augmented batch
would slow a 2-core CPU run by about a third."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import torch

from facial_emotion.data import DatasetError
from facial_emotion.training.config import TrainConfig, teacher_paths

log = logging.getLogger(__name__)

TEACHER_TARGETS = "teacher_targets.npz"  # cached in the run folder: a resumed run does not redo them


def is_distilled(cfg: TrainConfig) -> bool:
    """Whether a run learns from teachers: the one test the loop and the export both use."""
    return cfg.distill > 0 and bool(teacher_paths(cfg.teacher))


def teacher_probabilities(spec: str, faces: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean ten-crop probabilities of the teachers in ``spec`` (comma list of ONNX files), (N, classes)."""
    from facial_emotion.inference.classifier import EmotionClassifier
    from facial_emotion.model_file import ModelFileError

    paths = teacher_paths(spec)
    total = np.zeros((len(faces), num_classes), dtype=np.float64)
    for path in paths:
        try:
            teacher = EmotionClassifier(path)
        except ModelFileError as e:
            raise DatasetError(f"--teacher: {e}") from None
        if len(teacher.classes) != num_classes or teacher.face_size != faces.shape[-1]:
            raise DatasetError(
                f"--teacher {path}: {len(teacher.classes)} classes on {teacher.face_size}px faces, "
                f"this run trains {num_classes} classes on {faces.shape[-1]}px faces"
            )
        log.info("teacher %s: ten-crop probabilities of %d training faces", path, len(faces))
        total += teacher.predict(faces, tta=True, calibrated=False)  # as the recipe was measured
    return (total / len(paths)).astype(np.float32)


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """p ** (1 / T), renormalised: softmax(logits / T) for a single crop's probabilities."""
    p = np.power(np.clip(probs, 1e-8, 1.0), 1.0 / temperature)
    return p / p.sum(axis=1, keepdims=True)


def attach_teacher(
    targets: torch.Tensor, faces: np.ndarray, spec: str, weight: float, temperature: float, out: Path
) -> torch.Tensor:
    """target = (1 - weight) * target + weight * softened teacher probabilities."""
    from facial_emotion.results.files import atomic_write_bytes

    cache = out / TEACHER_TARGETS
    probs = None
    if cache.exists():
        with np.load(cache) as saved:
            if str(saved["teachers"]) == spec and saved["probs"].shape == tuple(targets.shape):
                probs = saved["probs"]  # else another run's teachers or faces: compute them again
    if probs is None:
        probs = teacher_probabilities(spec, faces, targets.shape[1])
        buf = io.BytesIO()
        np.savez(buf, probs=probs, teachers=np.array(spec))
        atomic_write_bytes(cache, buf.getvalue())
    agree = float((probs.argmax(1) == targets.numpy().argmax(1)).mean())
    log.info("teachers agree with %.1f %% of the training labels", 100 * agree)
    return (1 - weight) * targets + weight * torch.from_numpy(soften(probs, temperature))
