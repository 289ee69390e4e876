"""The emotion classifier: our ONNX model file run by onnxruntime on 48x48 gray faces."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from facial_emotion.model_file import ModelFileError, default_model_path, read_metadata_from_session_meta


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ten_crops(faces: np.ndarray, crop: int) -> np.ndarray:
    """(N, S, S) -> (N * 10, crop, crop): 4 corners + centre, and their mirror images."""
    n, s, _ = faces.shape
    o, c = s - crop, (s - crop) // 2
    crops = [
        faces[:, :crop, :crop],
        faces[:, :crop, o:],
        faces[:, o:, :crop],
        faces[:, o:, o:],
        faces[:, c : c + crop, c : c + crop],
    ]
    stack = np.stack(crops + [x[:, :, ::-1] for x in crops], axis=1)  # (N, 10, crop, crop)
    return stack.reshape(n * 10, crop, crop)


class EmotionClassifier:
    """``predict(faces)`` with faces uint8 (N, 48, 48) -> probabilities (N, classes)."""

    def __init__(
        self, model: str | os.PathLike | None = None, threads: int | None = None, max_batch: int = 256
    ):
        self.path = Path(model) if model else default_model_path()
        if not self.path.is_file():
            raise ModelFileError(f"model file not found: {self.path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for damaged files
            raise ModelFileError(f"{self.path}: cannot load the model ({str(e).splitlines()[0]})") from None
        self.metadata: dict[str, Any] = read_metadata_from_session_meta(
            self.session.get_modelmeta().custom_metadata_map, str(self.path)
        )
        self.classes: list[str] = list(self.metadata["classes"])
        self.face_size = int(self.metadata["face_size"])
        self.crop = int(self.metadata["crop"])
        self.input_name = self.session.get_inputs()[0].name
        self.max_batch = max_batch

    def _run(self, crops: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(crops), self.max_batch):
            x = crops[i : i + self.max_batch, None].astype(np.float32)
            out.append(self.session.run(None, {self.input_name: x})[0])
        return np.concatenate(out).astype(np.float32)

    def predict(self, faces: np.ndarray, tta: bool = False) -> np.ndarray:
        faces = np.asarray(faces, dtype=np.uint8)
        if faces.ndim != 3 or faces.shape[1:] != (self.face_size, self.face_size):
            raise ValueError(f"faces must be uint8 (N, {self.face_size}, {self.face_size})")
        if len(faces) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        if tta:
            probs = softmax(self._run(ten_crops(faces, self.crop)))
            return probs.reshape(len(faces), 10, -1).mean(axis=1)
        c = (self.face_size - self.crop) // 2
        return softmax(self._run(faces[:, c : c + self.crop, c : c + self.crop]))
