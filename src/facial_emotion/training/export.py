"""Export a checkpoint to the project's ONNX model file (optionally int8-quantized)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facial_emotion.labels import EMOTIONS, trained_classes
from facial_emotion.model_file import make_metadata, write_model
from facial_emotion.training.checkpoint import METRICS_JSON, CheckpointError, load_checkpoint
from facial_emotion.training.config import TrainConfig, teacher_paths
from facial_emotion.training.distill import is_distilled
from facial_emotion.training.machine import resolve_precision, training_machine
from facial_emotion.training.nets import create_model
from facial_emotion.training.onnx_weights import read_onnx_model


def recipe_of(cfg: TrainConfig) -> dict[str, Any]:
    """A run's options as its model file records them: the files it read by name, not by the local
    path (which says nothing once the file travels, and may name the user's folders)."""
    names = {k: Path(getattr(cfg, k)).name if getattr(cfg, k) else "" for k in ("data", "init_from")}
    names["teacher"] = ",".join(t.name for t in teacher_paths(cfg.teacher))
    return {**cfg.to_dict(), **names}


def model_from_checkpoint(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    state = load_checkpoint(path)
    cfg = TrainConfig.from_dict(state["config"])
    model = create_model(cfg.arch, state.get("num_classes", len(EMOTIONS)))
    model.load_state_dict(state["model"])
    model.eval()
    return model, state


def onnx_bytes(model: torch.nn.Module, crop: int) -> bytes:
    dummy = torch.full((2, 1, crop, crop), 128.0)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            buf,  # type: ignore[arg-type]
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return buf.getvalue()


# What export --int8 does, as the model's metadata records it (`quantize` does better: static, measured).
DYNAMIC_INT8 = {
    "scheme": "int8 dynamic, onnxruntime (export --int8)",
    "weights": "int8 per tensor, 7-bit range",
    "activations": "quantized per batch at run time",
    "note": "val_accuracy is the fp32 weights'; `facial-emotion quantize` measures its int8 file",
}


def quantize_int8(fp32: bytes) -> bytes:
    """Dynamic-range int8 quantization of weights (onnxruntime's quantizer), in a 7-bit range: with
    8 bits, CPUs without VNNI saturate (training/quantize.py measured 2 points lost on AVX2)."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        src.write_bytes(fp32)
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, reduce_range=True)
        return dst.read_bytes()


def checkpoint_weights(state: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint's weights are, as ``{"val_acc", "epoch", "weights"}``: a best.pt's, the run's
    best; a last.pt's, the plain weights at the end of its epoch (not the run's best, which may be
    EMA weights of an earlier epoch)."""
    if "epoch" not in state:
        return state.get("best", {})
    done = state["epoch"] + 1
    row: dict[str, Any] = next((h for h in state.get("history", []) if h.get("epoch") == done), {})
    return {"val_acc": row.get("val_acc"), "epoch": done, "weights": "model"}


def trained_dataset_name(cfg: TrainConfig) -> str:
    """The faces a run trained on, by name (not a local path), for its model's metadata: the csv or
    folder, and the FER+ votes file where the labels came from it (a run's export and a later
    `export` of its checkpoint name them alike)."""
    from facial_emotion.data.readers import FERPLUS_FILENAME

    name = Path(cfg.data).name
    return f"{name} + {FERPLUS_FILENAME}" if cfg.labels.startswith("ferplus") else name


def stage_summary(state: dict[str, Any], history: list[dict[str, Any]] | None) -> dict[str, Any]:
    """One training stage as the metadata records it: recipe, best epoch, time, speed, machine."""
    cfg = TrainConfig.from_dict(state["config"])
    best = checkpoint_weights(state)  # an --init-from last.pt started from its plain weights
    stage: dict[str, Any] = {
        "recipe": recipe_of(cfg),
        "best_epoch": best.get("epoch"),
        "val_accuracy": best.get("val_acc"),
    }
    if history:
        stage["train_seconds"] = round(sum(h.get("epoch_s", 0) for h in history), 1)
        stage["train_img_per_s"] = round(sum(h.get("img_per_s", 0) for h in history) / len(history), 1)
    if state.get("machine"):
        stage["machine"] = state["machine"]
    return stage


def earlier_stages(init_from: str) -> list[dict[str, Any]]:
    """The stages behind an ``--init-from`` run, oldest first, read from the checkpoints it started
    from (each with its whole run's history, see ``run_history``)."""
    if not init_from:
        return []
    path = Path(init_from)
    if path.suffix == ".onnx":
        return model_file_stages(path)
    try:
        state = load_checkpoint(path)
    except CheckpointError:
        return [{"init_from": init_from, "unavailable": True}]
    history = run_history(path, state)
    return earlier_stages(state["config"].get("init_from", "")) + [stage_summary(state, history)]


def run_history(checkpoint: Path, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every epoch of the run a checkpoint belongs to: the run's metrics.json beside it (rewritten
    after every epoch) or, if that is missing or shorter, the checkpoint's own history (a best.pt
    holds the epochs up to its own only)."""
    history = state.get("history") or []
    log = checkpoint.parent / METRICS_JSON
    if log.exists():
        try:
            logged = json.loads(log.read_text())
        except (OSError, json.JSONDecodeError):
            logged = []
        if isinstance(logged, list) and len(logged) > len(history):
            history = logged
    return history


def model_file_stages(path: Path) -> list[dict[str, Any]]:
    """The stages recorded in the metadata of the model file a run started from."""
    try:
        _, meta = read_onnx_model(path)
    except CheckpointError:
        return [{"init_from": str(path), "unavailable": True}]
    if meta.get("stages"):
        return list(meta["stages"])
    stage = {
        "recipe": meta.get("recipe"),
        "best_epoch": meta.get("best_epoch"),
        "val_accuracy": meta.get("val_accuracy"),
        "train_seconds": meta.get("train_seconds"),
        "train_img_per_s": meta.get("train_img_per_s"),
        "machine": meta.get("train_machine"),
    }
    return [{k: v for k, v in stage.items() if v is not None}]


def model_summary(path: Path) -> dict[str, Any]:
    """A teacher model as a student's metadata records it: path, SHA-256 (the path alone may later
    hold another model, e.g. when the student replaces the built-in model it learnt from), and the
    stages its own metadata records."""
    return {
        "model": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "stages": model_file_stages(path),
    }


def teacher_summaries(cfg: TrainConfig) -> list[dict[str, Any]]:
    """The models a distilled run learnt from; a teacher probabilities file stands for the models it
    recorded when it was written (distill.write_teacher_file)."""
    if not is_distilled(cfg):
        return []
    summaries: list[dict[str, Any]] = []
    for p in teacher_paths(cfg.teacher):
        if not p.is_file():  # exported elsewhere than the run started (a GPU run's relative path, say)
            summaries.append({"model": str(p), "stages": [], "unavailable": True})
        elif p.suffix == ".npz":
            with np.load(p) as saved:
                models = json.loads(str(saved["models"])) if "models" in saved else []
            summaries += [m | {"via": str(p)} for m in models] or [{"model": str(p), "stages": []}]
        else:
            summaries.append(model_summary(p))
    return summaries


def export_checkpoint(
    checkpoint: Path,
    out: Path,
    history: list[dict[str, Any]] | None = None,
    int8: bool = False,
) -> Path:
    model, state = model_from_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(state["config"])
    crop = cfg.augment.crop
    data = onnx_bytes(model, crop)
    quantized: str | dict[str, str] = "none"
    if int8:
        import onnxruntime

        data = quantize_int8(data)
        quantized = {**DYNAMIC_INT8, "onnxruntime": onnxruntime.__version__}
    best = checkpoint_weights(state)
    classes = list(trained_classes(state.get("num_classes", len(EMOTIONS))))
    meta = make_metadata(
        classes=classes,
        crop=crop,
        arch=cfg.arch,
        dataset=trained_dataset_name(cfg),  # the file or folder name, not a local path
        labels=cfg.labels,
        # checkpoints from before the splits were recorded say "default" (the data's usual ones)
        train_split=state.get("splits", {}).get("train") or cfg.train_split or "default",
        val_split=state.get("splits", {}).get("val") or cfg.val_split or "default",
        val_accuracy=best.get("val_acc"),
        best_epoch=best.get("epoch"),
        weights=best.get("weights"),
        epochs=cfg.epochs,
        recipe=recipe_of(cfg),
        quantized=quantized,
        date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        parameters=sum(p.numel() for p in model.parameters()),
    )
    at_end_of_training = history is not None
    if history is None:  # `facial-emotion export` of a checkpoint: its run's log, where it is beside it
        history = run_history(checkpoint, state)
    # Time and speed only where the run's history is known, summed
    # over every stage of a run that began --init-from an earlier one.
    this = stage_summary(state, history)
    if at_end_of_training and "machine" not in this:  # checkpoints older than the "machine" field
        this["machine"] = training_machine(resolve_precision(cfg.precision))
    stages = earlier_stages(cfg.init_from) + [this]
    if len(stages) > 1:
        meta["stages"] = stages
    teachers = teacher_summaries(cfg)
    if teachers:  # their training time is not in train_seconds: it is spent once, before this run
        meta["teachers"] = teachers
    timed = [s for s in stages if "train_seconds" in s]
    if history and len(timed) == len(stages):
        seconds = sum(s["train_seconds"] for s in timed)
        meta["train_seconds"] = round(seconds, 1)
        meta["train_img_per_s"] = round(
            sum(s["train_seconds"] * s["train_img_per_s"] for s in timed) / seconds, 1
        )
        machines = {s["machine"] for s in stages if "machine" in s}
        if len(machines) == 1:
            meta["train_machine"] = machines.pop()
    write_model(out, data, meta)
    return out
