"""The emotion classifier: our ONNX model file run by onnxruntime on 48x48 gray faces."""

from __future__ import annotations

import os
import zipfile
from typing import Any

import numpy as np

from facial_emotion.arguments import whole_number
from facial_emotion.inference.runtime import cpu_session
from facial_emotion.model_file import (
    CALIBRATION_KEY,
    ModelFileError,
    read_metadata_from_session_meta,
    resolve_model_path,
)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Over the last axis; ``temperature`` divides the logits (1 = none)."""
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def calibrated_probabilities(logits: np.ndarray, scale: Any = 1.0, bias: Any = 0.0) -> np.ndarray:
    """softmax(scale * logits + bias) of (N, C) logits, or of (N, K, C) logits of K test-time crops
    averaged after the softmax; ``scale``: a number (1 / temperature) or one per class. The one place
    where a calibration turns logits into probabilities (the classifier and the calibration fit)."""
    p = softmax(logits * scale + bias)
    return p.mean(axis=1) if p.ndim == 3 else p


def calibration_parameters(
    entry: dict[str, Any], classes: int, tta: bool, source: str = "model"
) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias), each (classes,), of a model's calibration entry for plain or ten-crop inference.
    An entry holds ``scale``/``bias`` lists (vector scaling) or a ``temperature`` (files calibrated
    before vector scaling, or with ``calibrate --method temperature``); ten-crop falls back to plain.
    A damaged entry is a ModelFileError naming ``source`` (a hand-edited file gave tracebacks)."""
    suffix = "_tta" if tta else ""
    if not isinstance(entry, dict):
        raise ModelFileError(f"{source}: damaged calibration (not a JSON object)")
    try:
        if "scale" in entry:
            scale = entry.get("scale" + suffix, entry["scale"])
            bias = entry.get("bias" + suffix, entry["bias"])
        else:
            t = float(entry.get("temperature" + suffix, entry.get("temperature", 1.0)))
            if not 0 < t < np.inf:  # 0 divided by zero; one below 0 turned every ranking round
                raise ValueError(f"temperature {t}: it must be a positive number")
            scale, bias = [1.0 / t] * classes, [0.0] * classes
        scale, bias = np.asarray(scale, np.float32), np.asarray(bias, np.float32)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{source}: damaged calibration ({type(e).__name__}: {e})") from None
    if scale.shape != (classes,) or bias.shape != (classes,) or not np.isfinite([scale, bias]).all():
        raise ModelFileError(
            f"{source}: damaged calibration: its scale and bias must be {classes} finite numbers each, one "
            f"per class (they are shaped {list(scale.shape)} and {list(bias.shape)})"
        )
    return scale, bias


def centre_crop(faces: np.ndarray, crop: int) -> np.ndarray:
    """(N, S, S) -> (N, crop, crop), the crop the nets are validated on."""
    c = (faces.shape[1] - crop) // 2
    return faces[:, c : c + crop, c : c + crop]


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
    """``predict(faces)`` with faces uint8 (N, 48, 48) -> probabilities (N, classes). ``model``: a
    model file, or a built-in model's name ("default", "fp32", "ensemble", "fast"; see ``model_file.BUILTIN_MODELS``)."""

    def __init__(
        self, model: str | os.PathLike | None = None, threads: int | None = None, max_batch: int = 256
    ):
        threads = None if threads is None else whole_number("threads (0 or None: all cores)", threads, 0)
        self.path = resolve_model_path(model)
        if self.path.is_dir():
            raise ModelFileError(f"{self.path}: a folder, not a model file (give the .onnx file in it)")
        if not self.path.is_file():
            raise ModelFileError(f"model file not found: {self.path}")
        try:
            self.session = cpu_session(self.path, threads or 0)
        except Exception as e:  # onnxruntime raises its own exception types for damaged files
            if zipfile.is_zipfile(self.path):  # what torch.save writes: a run's best.pt or last.pt
                raise ModelFileError(
                    f"{self.path}: a training checkpoint, not a model file; `facial-emotion export "
                    f"{self.path} --out MODEL.onnx` makes one (a run writes its model.onnx itself)"
                ) from None
            raise ModelFileError(f"{self.path}: cannot load the model ({str(e).splitlines()[0]})") from None
        self.metadata: dict[str, Any] = read_metadata_from_session_meta(
            self.session.get_modelmeta().custom_metadata_map, str(self.path)
        )
        self.classes: list[str] = list(self.metadata["classes"])
        self.face_size = int(self.metadata["face_size"])
        self.crop = int(self.metadata["crop"])
        self.input_name = self.session.get_inputs()[0].name
        self.max_batch = max_batch
        self._check_graph_fits_metadata()
        # Calibration (evaluation/calibration.py fits it): probabilities are softmax(scale * logits +
        # bias), with a per-class scale and bias (vector scaling) or one temperature (scale = 1 / T,
        # bias = 0), and parameters of their own for ten-crop TTA; faces whose top probability is under
        # ``uncertain_below`` are flagged uncertain. A model without calibration: scale 1, bias 0, no flag.
        calibration = self.metadata.get(CALIBRATION_KEY) or {}
        n, source = len(self.classes), str(self.path)
        self.calibration = calibration_parameters(calibration, n, tta=False, source=source)
        self.calibration_tta = calibration_parameters(calibration, n, tta=True, source=source)
        try:
            self.uncertain_below = float(calibration.get("uncertain_below", 0.0))
        except (TypeError, ValueError):
            raise ModelFileError(
                f"{source}: damaged calibration: 'uncertain_below' is not a number"
            ) from None

    def _check_graph_fits_metadata(self) -> None:
        """The graph takes N x 1 x crop x crop faces for any N and gives N x classes: checked on its
        declared input and on two grey faces, so that a model that says one thing and computes
        another fails here as one error naming the file, not on every face later (a server would
        answer 500 to each request)."""
        want = ("N", 1, self.crop, self.crop)
        shape = self.session.get_inputs()[0].shape  # ints where fixed, names where dynamic
        fixed = [(i, d) for i, d in enumerate(shape) if isinstance(d, int)]
        if len(shape) != 4 or any(d != want[i] for i, d in fixed):
            batch = " (a fixed batch: export it with a dynamic one)" if fixed and fixed[0][0] == 0 else ""
            raise ModelFileError(
                f"{self.path}: its graph takes {list(shape)}, its description says N x 1 x {self.crop} x "
                f"{self.crop} faces{batch}"
            )
        try:
            out = self._run(np.full((2, self.crop, self.crop), 128, np.uint8))
        except Exception as e:  # onnxruntime's own exception types
            raise ModelFileError(
                f"{self.path}: its graph does not run on 2 x 1 x {self.crop} x {self.crop} faces as its "
                f"description says ({str(e).splitlines()[0]})"
            ) from None
        if out.shape != (2, len(self.classes)):
            raise ModelFileError(
                f"{self.path}: its graph gives {out.shape[1:]} outputs per face, its description names "
                f"{len(self.classes)} classes"
            )

    def _run(self, crops: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(crops), self.max_batch):
            x = crops[i : i + self.max_batch, None].astype(np.float32)
            out.append(self.session.run(None, {self.input_name: x})[0])
        return np.concatenate(out).astype(np.float32)

    def logits(self, faces: np.ndarray, tta: bool = False) -> np.ndarray:
        """Raw logits: (N, classes), or (N, 10, classes) for the ten crops of TTA."""
        faces = np.asarray(faces, dtype=np.uint8)
        if faces.ndim != 3 or faces.shape[1:] != (self.face_size, self.face_size):
            raise ValueError(f"faces must be uint8 (N, {self.face_size}, {self.face_size})")
        if len(faces) == 0:
            return np.zeros((0, 10, len(self.classes)) if tta else (0, len(self.classes)), np.float32)
        if tta:
            return self._run(ten_crops(faces, self.crop)).reshape(len(faces), 10, -1)
        return self._run(centre_crop(faces, self.crop))

    def probabilities(self, logits: np.ndarray, tta: bool = False, calibrated: bool = True) -> np.ndarray:
        """The logits of ``logits(faces, tta)`` -> probabilities (N, classes), with the model's stored
        calibration (``calibrated=False``: the raw softmax, as the model was trained); TTA averages the
        ten crops' probabilities."""
        scale, bias = (self.calibration_tta if tta else self.calibration) if calibrated else (1.0, 0.0)
        return calibrated_probabilities(logits, scale, bias)

    def predict(self, faces: np.ndarray, tta: bool = False, calibrated: bool = True) -> np.ndarray:
        """Probabilities (N, classes) of uint8 faces (N, 48, 48); see ``probabilities``."""
        return self.probabilities(self.logits(faces, tta), tta, calibrated)
