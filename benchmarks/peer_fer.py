"""The peer side of benchmarks/compare_fer.py: the PyPI `fer` package, run in its own virtual environment
(benchmarks/.peer-venv, made by benchmarks/setup_peer.sh) as a small JSON-lines server.

    benchmarks/.peer-venv/bin/python benchmarks/peer_fer.py --threads 1

One request per line on stdin, one reply per line on stdout ({"ok": true, ...} or {"ok": false, "error"}):

    {"cmd": "info"}
    {"cmd": "predict", "faces": "faces.npy", "model": "tflite", "out": "probs.npy"}
    {"cmd": "classify_speed", "faces": "faces.npy", "model": "keras", "batch": 64, "seconds": 3}
    {"cmd": "image", "path": "photo.jpg", "seconds": 3}
    {"cmd": "video", "path": "clip.mp4", "max_frames": 0}
    {"cmd": "quit"}

``faces.npy`` holds uint8 (N, 48, 48) gray faces (FER-2013 format). They are fed to fer's classifier
exactly as fer's own ``FER.detect_emotions`` feeds a detected face: ``cv2.resize`` (bilinear) to the
classifier's input size (64 x 64, read from fer), float32, ``x / 255``, then ``(x - 0.5) * 2``, then
``FER._classify_emotions`` (fer's own code: the TFLite interpreter one face at a time, or the Keras
model on the whole batch). Class order is fer's ``FER._get_labels()``, reported by ``info``.

``model``: "tflite" is what ``FER()`` uses by default (the bundled emotion_model_quantized.tflite);
"keras" is ``FER(use_tflite=False)`` (the bundled emotion_model.hdf5). Detection (``image``, ``video``)
uses ``FER(mtcnn=False)``, fer's default: its OpenCV Haar cascade, then the default TFLite classifier.

Threads: ``--threads N`` sets TensorFlow's intra-op threads (inter-op 1, as facial-emotion's onnxruntime
session), the TFLite interpreter's ``num_threads`` (fer leaves it unset; the benchmark sets it so both
systems run on the same number of threads) and OpenCV's threads. TensorFlow reads its thread settings
once, so compare_fer.py starts one peer per thread count.

This file must not import facial_emotion: it runs in the peer's environment. Its timings come from
benchmarks/timing.py (found beside this script), the same code that times facial-emotion in compare_fer.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from timing import rate, video_per_frame  # benchmarks/timing.py: the code that times facial-emotion too


class FerPeer:
    def __init__(self, threads: int):
        import cv2
        import numpy as np
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        cv2.setNumThreads(threads)
        import fer
        from fer.fer import FER
        from fer.utils import load_image

        self.np, self.cv2, self.tf, self.fer = np, cv2, tf, fer
        self.load_image = load_image
        self.threads = threads
        # fer caches one TFLite interpreter for all FER objects; put one with our thread count there,
        # created as fer creates it, so every FER() below uses it.
        import pkg_resources

        path = pkg_resources.resource_filename("fer", "data/emotion_model_quantized.tflite")
        interpreter = tf.lite.Interpreter(model_path=path, num_threads=threads)
        interpreter.allocate_tensors()
        FER._tflite_interpreter_cache = interpreter
        self.detectors = {
            "tflite": FER(mtcnn=False),  # fer's defaults: Haar cascade + TFLite classifier
            "keras": FER(mtcnn=False, use_tflite=False),
        }
        self.size = {k: tuple(int(v) for v in d._FER__emotion_target_size) for k, d in self.detectors.items()}
        self.labels = [FER._get_labels()[i] for i in range(len(FER._get_labels()))]
        self._faces: dict[tuple[str, str], Any] = {}

    def info(self) -> dict:
        import platform

        import keras

        return {
            "fer": self.fer.__version__,
            "tensorflow": self.tf.__version__,
            "keras": keras.__version__,
            "opencv": self.cv2.__version__,
            "numpy": self.np.__version__,
            "python": platform.python_version(),
            "threads": self.threads,
            "labels": self.labels,
            "input_size": self.size,
            "models": list(self.detectors),
        }

    def resized(self, faces_path: str, model: str):
        """uint8 (N, H, W) faces resized to fer's classifier input as fer does (cached per file)."""
        key = (faces_path, model)
        if key not in self._faces:
            faces = self.np.load(faces_path)
            size = self.size[model]
            self._faces[key] = self.np.stack([self.cv2.resize(f, size) for f in faces])
        return self._faces[key]

    def classify(self, faces_u8, model: str):
        """fer's preprocessing and classifier call, as in FER.detect_emotions."""
        x = self.np.array(faces_u8, dtype="float32")
        x = x / 255.0
        x = (x - 0.5) * 2.0
        return self.np.asarray(self.detectors[model]._classify_emotions(x), dtype="float32")

    def predict(self, faces: str, model: str, out: str, chunk: int = 256) -> dict:
        data = self.resized(faces, model)
        t0 = time.perf_counter()
        probs = self.np.concatenate(
            [self.classify(data[i : i + chunk], model) for i in range(0, len(data), chunk)]
        )
        self.np.save(out, probs)
        return {"n": len(probs), "seconds": round(time.perf_counter() - t0, 3)}

    def classify_speed(self, faces: str, model: str, batch: int, seconds: float) -> dict:
        data = self.resized(faces, model)[:batch]
        if len(data) < batch:
            raise ValueError(f"{faces} holds {len(data)} faces, fewer than batch {batch}")
        return {"faces_per_s": rate(lambda: self.classify(data, model), batch, seconds)}

    def image(self, path: str, seconds: float) -> dict:
        img = self.load_image(path)  # fer's own loader (cv2.imread), outside the timing
        det = self.detectors["tflite"]
        found = det.detect_emotions(img)
        fps = rate(lambda: det.detect_emotions(img), 1, seconds)
        return {
            "fps": fps,
            "faces": len(found),
            "boxes": [[int(v) for v in f["box"]] for f in found],
            "emotions": [max(f["emotions"], key=f["emotions"].get) for f in found],
            "shape": list(img.shape),
        }

    def video(self, path: str, max_frames: int = 0) -> dict:
        """Decode + fer.detect_emotions on every frame, as fer's Video.analyze does (without its
        moviepy/pandas output); timed from open to the last frame."""
        return video_per_frame(path, self.detectors["tflite"].detect_emotions, max_frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    # Replies go to the real stdout; anything a library prints (TensorFlow, absl, keras) goes to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    import warnings

    warnings.filterwarnings("ignore")  # tf.lite deprecation, keras input-structure notes

    peer = FerPeer(args.threads)
    handlers: dict[str, Callable[..., dict]] = {
        "info": peer.info,
        "predict": peer.predict,
        "classify_speed": peer.classify_speed,
        "image": peer.image,
        "video": peer.video,
    }
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            cmd = req.pop("cmd")
            if cmd == "quit":
                proto.write(json.dumps({"ok": True}) + "\n")
                break
            reply = {"ok": True, **handlers[cmd](**req)}
        except Exception as e:  # report to the caller, keep serving
            traceback.print_exc()
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        proto.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
