"""Knowledge distillation from finished models (``train --teacher A.onnx,B.onnx --distill W``).

The teachers' ten-crop probabilities on every training face are computed once with the inference
stack (onnxruntime), averaged over the teachers, softened by a temperature and blended into the
soft targets. Offline targets cost nothing per step: a teacher forward pass on each augmented batch
would slow a 2-core CPU run by about a third.

A teacher can also be a probabilities file (``--teacher probs.npz``, written by
``write_teacher_file``): the same probabilities computed elsewhere, for the same training faces (their
SHA-256 is in the file and checked). A GPU machine then trains a student without the teacher's model
file or the minutes its ten-crop predictions take (scripts/gpu_candidates.sh)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch

from facial_emotion.data import DatasetError
from facial_emotion.training.config import ConfigError, TrainConfig, teacher_paths

log = logging.getLogger(__name__)

TEACHER_TARGETS = "teacher_targets.npz"  # cached in the run folder: a resumed run does not redo them


def is_distilled(cfg: TrainConfig) -> bool:
    """Whether a run learns from teachers: the one test the loop and the export both use."""
    return cfg.distill > 0 and bool(teacher_paths(cfg.teacher))


def faces_digest(faces: np.ndarray) -> str:
    """SHA-256 of the training faces (uint8, in order): what ties a probabilities file to them."""
    return hashlib.sha256(np.ascontiguousarray(faces, dtype=np.uint8).tobytes()).hexdigest()


def write_teacher_file(
    path: Path, probs: np.ndarray, spec: str, faces: np.ndarray, models: list[dict] | None = None
) -> None:
    """A teacher probabilities file: ``probs`` (N, classes) of the models in ``spec`` on ``faces``;
    ``models``: their summaries (export.model_summary), which a student's metadata will record."""
    from facial_emotion.results.files import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(
        buf,
        probs=probs.astype(np.float32),
        teachers=np.array(spec),
        faces_sha256=np.array(faces_digest(faces)),
        models=np.array(json.dumps(models or [])),
    )
    atomic_write_bytes(path, buf.getvalue())


def write_teacher_probabilities(spec: str, data: str, out: Path) -> Path:
    """Compute the teachers' ten-crop probabilities on the training faces of ``data`` (as a run with
    the default splits reads them) and write them as a teacher probabilities file."""
    from facial_emotion.training.export import model_summary
    from facial_emotion.training.loop import load_training_data

    _, train_ds, _ = load_training_data(TrainConfig(data=data, batch_size=1))
    probs = teacher_probabilities(spec, train_ds.images, train_ds.num_classes)
    write_teacher_file(out, probs, spec, train_ds.images, [model_summary(p) for p in teacher_paths(spec)])
    return out


def read_teacher_file(path: Path, faces: np.ndarray, num_classes: int) -> np.ndarray:
    """The probabilities of a teacher file, refused unless they were computed on these very faces."""
    try:
        saved = np.load(path)
        if not isinstance(saved, np.lib.npyio.NpzFile):  # a bare .npy array named .npz
            raise ValueError("an array, not an .npz archive")
        with saved:
            probs, digest = saved["probs"], str(saved["faces_sha256"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DatasetError(f"--teacher {path}: not a teacher probabilities file ({e})") from None
    if probs.shape != (len(faces), num_classes) or digest != faces_digest(faces):
        raise DatasetError(
            f"--teacher {path}: its probabilities (shape {probs.shape}) were computed on other faces "
            f"than this run's {len(faces)} training faces ({num_classes} classes)"
        )
    return probs


def teacher_probabilities(spec: str, faces: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean ten-crop probabilities of the teachers in ``spec`` (comma list of ONNX files or teacher
    probabilities files), (N, classes)."""
    from facial_emotion.inference.classifier import EmotionClassifier
    from facial_emotion.model_file import ModelFileError

    paths = teacher_paths(spec)
    total = np.zeros((len(faces), num_classes), dtype=np.float64)
    for path in paths:
        if path.suffix == ".npz":
            log.info("teacher %s: probabilities computed before", path)
            total += read_teacher_file(path, faces, num_classes)
            continue
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
    cache = out / TEACHER_TARGETS
    probs = None
    if cache.exists():
        with np.load(cache) as saved:
            same_faces = "faces_sha256" not in saved or str(saved["faces_sha256"]) == faces_digest(faces)
            if str(saved["teachers"]) == spec and saved["probs"].shape == tuple(targets.shape) and same_faces:
                probs = saved["probs"]  # else another run's teachers or faces: compute them again
    if probs is None:
        gone = [str(t) for t in teacher_paths(spec) if not t.is_file()]
        if gone:  # a resumed run whose teachers moved, without their probabilities in its folder
            raise ConfigError(
                f"--teacher {', '.join(gone)}: no such file, and no {cache} with its probabilities"
            )
        probs = teacher_probabilities(spec, faces, targets.shape[1])
        write_teacher_file(cache, probs, spec, faces)
    agree = float((probs.argmax(1) == targets.numpy().argmax(1)).mean())
    log.info("teachers agree with %.1f %% of the training labels", 100 * agree)
    return (1 - weight) * targets + weight * torch.from_numpy(soften(probs, temperature))
