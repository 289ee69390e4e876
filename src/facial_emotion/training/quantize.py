"""Int8 static quantization of a model file with onnxruntime: QDQ format, int8 weights per output
channel, activations calibrated on training faces (centre crops, as inference feeds them).

Weights use 7 of their 8 bits (onnxruntime's ``reduce_range``) unless asked otherwise. CPUs without
VNNI (AVX2, AVX-512 before Cascade Lake / Zen 4) multiply uint8 by int8 with VPMADDUBSW, which sums
pairs of products into 16 bits and saturates: with 8-bit weights, the first conv (one input channel,
pixels around a zero point of ~130) overflows in about 6 % of its pairs, and the built-in model lost
2 points on 256 PublicTest faces in an AVX2 emulation (qemu -cpu Haswell). With 7-bit weights a pair
cannot overflow (255 x 64 x 2 < 32768), and the emulated outputs were those of the VNNI machine.

``quantize_model`` keeps all the source's metadata, records how it was quantized under
``quantized`` and, when the data has a test split, the accuracy there before and after (centre crop
and ten-crop TTA). Calibration never uses the split that accuracy is measured on.

Method, measured on the built-in vgg-m (2,048 FER-2013 Training faces; docs/training.md, "The
shipped file"): min-max ranges keep PublicTest accuracy within 0.2 points of fp32 and run about 3x
faster on AVX512-VNNI. onnxruntime's percentile method (99.999 %) does as well; its entropy
method, with the bin counts quantize_static uses, gives min-max's ranges (with more bins it clips
activations and loses accuracy), so it is not offered. uint8 and int8 activations measure the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from facial_emotion.data import DatasetError, load_dataset
from facial_emotion.evaluation.evaluate import default_test_split, evaluate
from facial_emotion.inference.classifier import EmotionClassifier, centre_crop
from facial_emotion.model_file import CALIBRATION_KEY, ModelFileError, write_model

METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
ACTIVATIONS = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
DEFAULT_FACES = 2048
CALIBRATION_BATCH = 64
# Batches calibrated at a time: bounds the memory of the histogram (percentile) method, which keeps
# every activation of the batches it is given (about 2.4 MB per face for vgg-m).
BATCHES_AT_ONCE = 8
# Training splits by layout, first present wins (FER-2013 csv, Kaggle folders).
TRAINING_SPLITS = ("Training", "train")


class CalibrationFaces(CalibrationDataReader):
    """Equal batches of float32 crops for onnxruntime's calibrator (its histograms stack the batches,
    so a shorter last batch would break them). ``set_range`` lets it take a few batches at a time."""

    def __init__(self, crops: np.ndarray, input_name: str, batch: int = CALIBRATION_BATCH):
        self.input_name = input_name
        self.batches = [crops[i : i + batch] for i in range(0, len(crops) - batch + 1, batch)]
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next = iter(self.batches[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._next, None)
        return None if batch is None else {self.input_name: batch}


def calibration_split(splits: list[str], split: str | None) -> str:
    if split:
        return split
    for name in TRAINING_SPLITS:
        if name in splits:
            return name
    raise DatasetError(
        f"no training split to calibrate on; pass --split NAME (available: {', '.join(splits)})"
    )


def calibration_crops(
    images: np.ndarray, crop: int, faces: int, seed: int, batch: int = CALIBRATION_BATCH
) -> np.ndarray:
    """``faces`` random faces (a whole number of batches) -> float32 (N, 1, crop, crop) centre crops."""
    n = min(faces, len(images)) // batch * batch
    if n == 0:
        raise DatasetError(f"calibration needs at least {batch} faces, the split has {len(images)}")
    idx = np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))
    return centre_crop(images[idx], crop)[:, None].astype(np.float32)


def strided(batches: int) -> int:
    """The most batches at a time, up to BATCHES_AT_ONCE, that divide ``batches`` (onnxruntime's rule)."""
    return max(s for s in range(1, BATCHES_AT_ONCE + 1) if batches % s == 0)


def quantize_onnx(
    src: Path, reader: CalibrationFaces, method: str, activations: str, reduce_range: bool = True
) -> bytes:
    """onnxruntime's pre-processing (shape inference, graph clean-up), then static QDQ quantization."""
    with tempfile.TemporaryDirectory() as d:
        pre, out = Path(d) / "pre.onnx", Path(d) / "int8.onnx"
        quant_pre_process(str(src), str(pre))
        quantize_static(
            str(pre),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            activation_type=ACTIVATIONS[activations],
            calibrate_method=METHODS[method],
            extra_options={"CalibStridedMinMax": strided(len(reader))},
        )
        return out.read_bytes()


def accuracy_before_after(data: str | Path, before: Path, after: Path, split: str) -> dict[str, Any]:
    # an 8-class model is scored on the FER+ majority vote (its eight classes), as calibrate does:
    # against FER-2013's seven labels evaluate has no raw-softmax accuracy to give
    labels = "ferplus" if len(EmotionClassifier(before).classes) == 8 else "fer2013"
    result: dict[str, Any] = {"split": split, "labels": labels}
    for tta in (False, True):
        suffix = "_tta" if tta else ""
        # the raw softmax's labels: a calibration (fitted on this split, perhaps) is not the quantization's
        for key, model in (("before", before), ("after", after)):
            result[key + suffix] = evaluate(data, model, split, tta=tta, labels=labels)[0][
                "accuracy_uncalibrated"
            ]
    return result


MIN_OPSET = 13  # DequantizeLinear's per-channel axis


def graph_opset(path: Path) -> int:
    """The ONNX (default domain) opset ``path``'s graph is written in."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def quantize_model(
    model: str | Path | None,
    out: Path,
    data: str | Path,
    *,
    method: str = "minmax",
    activations: str = "uint8",
    faces: int = DEFAULT_FACES,
    split: str | None = None,
    eval_split: str | None = None,
    seed: int = 0,
    reduce_range: bool = True,
) -> dict[str, Any]:
    """Write the int8 model file ``out`` (and its JSON); returns its metadata. ``split``: the faces to
    calibrate on (default Training / train); ``eval_split``: where accuracy is measured before and
    after (default: the data's test split; "none" skips it)."""
    if method not in METHODS or activations not in ACTIVATIONS:
        raise ValueError(f"method must be one of {list(METHODS)}, activations one of {list(ACTIVATIONS)}")
    source = EmotionClassifier(model)
    meta = dict(source.metadata)
    # The source's calibration was fitted on its fp32 logits, not the int8 file's: calibrate anew.
    meta.pop(CALIBRATION_KEY, None)
    done = meta.get("quantized", "none")
    if done != "none":
        raise ModelFileError(
            f"{source.path}: already quantized ({done.get('scheme') if isinstance(done, dict) else done})"
        )
    opset = graph_opset(source.path)
    if opset < MIN_OPSET:  # per-channel int8 weights need it: an older graph came out unloadable
        raise ModelFileError(
            f"{source.path}: ONNX opset {opset}; int8 per-channel quantization needs opset {MIN_OPSET} or "
            "later (export the graph again with a newer opset_version)"
        )
    ds = load_dataset(data)
    split = calibration_split(ds.splits, ds.resolve_splits(split)[0] if split else None)
    if eval_split is None:
        eval_split = default_test_split(ds)
    elif eval_split != "none":
        (eval_split,) = ds.resolve_splits(eval_split)  # "Test" for a test/ folder, as evaluate takes it
    if eval_split == split:
        raise DatasetError(
            f"calibrating on {split} would bias the accuracy measured on it: pick another split"
        )
    if eval_split != "none" and eval_split not in ds.splits:  # say so now, not after quantizing
        raise DatasetError(
            f"--eval-split {eval_split}: not in {data} (it has {', '.join(ds.splits)}, or 'none')"
        )
    if eval_split != "none" and len(source.classes) == 8:  # scored on FER+ labels: they must be there
        try:
            load_dataset(data, labels="ferplus", ferplus_classes=8)
        except DatasetError as e:
            raise DatasetError(
                f"an 8-class model's accuracy is measured on the FER+ majority vote, which {data} lacks "
                f"({e}): give the FER-2013 csv with its votes, or --eval-split none"
            ) from None
    part = ds.select_split(split)
    part.check_face_size(source.face_size, str(source.path))
    crops = calibration_crops(part.images, source.crop, faces, seed)
    reader = CalibrationFaces(crops, source.input_name)
    onnx_bytes = quantize_onnx(source.path, reader, method, activations, reduce_range)
    try:  # never write a model that does not load, whatever the source held
        ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types
        raise ModelFileError(
            f"{source.path}: the quantized graph does not load ({str(e).splitlines()[0]})"
        ) from None
    meta["quantized"] = {
        "scheme": "int8 static, onnxruntime QDQ",
        "weights": f"int8 per output channel, {7 if reduce_range else 8}-bit range",
        "activations": activations,
        "method": method,
        "calibration": {"dataset": Path(data).name, "split": split, "faces": len(crops), "seed": seed},
        "onnxruntime": ort.__version__,
        "source": {
            "file": source.path.name,
            "sha256": hashlib.sha256(source.path.read_bytes()).hexdigest(),
            "date": meta.get("date"),
        },
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if eval_split != "none":
        with tempfile.TemporaryDirectory() as d:
            unmeasured = Path(d) / "int8.onnx"
            write_model(unmeasured, onnx_bytes, meta)
            meta["quantized"]["accuracy"] = accuracy_before_after(data, source.path, unmeasured, eval_split)
    write_model(out, onnx_bytes, meta)
    return meta
