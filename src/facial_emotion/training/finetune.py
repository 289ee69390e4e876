"""``finetune``: the base model trained a little further on the user's corrections (feedback.py),
with FER-2013 training faces mixed in so that it does not forget, and a before/after table.

It is ``train --init-from BASE.onnx`` on a generated dataset .npz: a stratified part of the
corrections is kept aside (never trained on) to measure what the fine-tune taught; the rest is
repeated so that it makes about a quarter of the training faces, the other three quarters drawn
from FER-2013 Training. Before/after: accuracy on the kept-aside corrections, on PublicTest and
PublicTest's per-class recall, both models run by the inference classifier (what users run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facial_emotion import settings
from facial_emotion.data import FaceDataset, load_dataset
from facial_emotion.data.cache import write_npz
from facial_emotion.data.readers import ignored_folders
from facial_emotion.evaluation.metrics import summarize
from facial_emotion.feedback import ORIGINALS, FeedbackError, load_feedback
from facial_emotion.inference.classifier import EmotionClassifier
from facial_emotion.labels import EMOTIONS, FERPLUS_8_CLASSES
from facial_emotion.model_file import FACE_SIZE, builtin_model_path, resolve_model_path, write_model
from facial_emotion.training.config import TrainConfig
from facial_emotion.training.loop import train
from facial_emotion.training.onnx_weights import read_onnx_model

log = logging.getLogger(__name__)

MIN_PER_EMOTION = 5  # fewer corrections of an emotion than this teach noise, not the emotion
FER_CSV = Path("datasets") / "fer2013" / "fer2013.csv.gz"  # under $FACIAL_EMOTION_SHARED


@dataclass
class FinetuneOptions:
    feedback: Path
    out: Path
    base: str | None = None  # a model file or built-in name; default: the built-in fp32 model
    fer2013: Path | None = None  # default: $FACIAL_EMOTION_SHARED/datasets/fer2013/fer2013.csv.gz
    skip_bad: bool = False  # malformed rows of that csv: skipped, or one error naming the line
    holdout: float = 0.2  # share of each emotion's corrections kept aside
    mix: int = 3000  # FER-2013 Training faces mixed in
    epochs: int = 3
    lr: float = 0.01
    batch_size: int = 64
    eval_limit: int = 0  # evaluate on the first N PublicTest faces only (0: all)
    threads: int = 0
    seed: int = 0
    progress: bool = True
    warnings: list[str] = field(default_factory=list)


def default_base() -> Path:
    """The built-in fp32 model (an int8 file cannot be trained from), else the default built-in."""
    fp32 = builtin_model_path("fp32")
    return fp32 if fp32.is_file() else builtin_model_path()


def check_trainable(name: str, meta: dict[str, Any]) -> None:
    """FeedbackError, before any work, for a base model that cannot be trained further: an int8 file
    (its fp32 source named, and whether that is the built-in fp32 model: the ``fast`` model was
    made from another net), an ensemble graph, or an architecture this package does not build."""
    from facial_emotion.training.nets import ARCHITECTURES

    arch = str(meta.get("arch", TrainConfig.arch))
    if arch == "ensemble":
        members = ", ".join(m.get("file", "?") for m in meta.get("members", []))
        raise FeedbackError(
            f"--base {name}: an ensemble graph cannot be fine-tuned (its members: {members}); fine-tune one "
            "net (--base fp32, the default), or each member's file and join them again with "
            "`facial-emotion ensemble`"
        )
    quantized = meta.get("quantized", "none")
    if quantized != "none":
        source = quantized.get("source", {}) if isinstance(quantized, dict) else {}
        if made_from_builtin_fp32(source):
            advice = "use the fp32 file it was made from (--base fp32, the default)"
        else:
            advice = (
                f"the fp32 file it was made from ({source.get('file', 'not recorded')}) is not the built-in "
                "fp32 model; give that file, or fine-tune the built-in one (--base fp32, the default)"
            )
        raise FeedbackError(f"--base {name}: an int8-quantized model cannot be trained; {advice}")
    if arch not in ARCHITECTURES:
        raise FeedbackError(
            f"--base {name}: its architecture {arch!r} is not one facial-emotion trains "
            f"({', '.join(sorted(ARCHITECTURES))})"
        )
    face_size = meta.get("face_size", FACE_SIZE)
    if face_size != FACE_SIZE:  # the corrections and FER-2013 are 48 px faces: predict() crashed on them
        raise FeedbackError(
            f"--base {name}: a model for {face_size} px faces; fine-tuning trains on {FACE_SIZE} px faces "
            "(the corrections', FER-2013's)"
        )
    classes = tuple(meta.get("classes", EMOTIONS))
    if classes not in (EMOTIONS, FERPLUS_8_CLASSES):
        raise FeedbackError(
            f"--base {name}: its classes ({', '.join(classes)}) are neither FER-2013's seven nor FER+'s "
            "eight, the two facial-emotion trains"
        )


def made_from_builtin_fp32(source: dict[str, Any]) -> bool:
    """Whether an int8 file's recorded source is the built-in fp32 model: the same file, or the same
    net exported at the same moment (calibrating the fp32 file afterwards rewrote its metadata, and so
    its checksum)."""
    fp32 = builtin_model_path("fp32")
    if not fp32.is_file():
        return False
    if source.get("sha256") == hashlib.sha256(fp32.read_bytes()).hexdigest():
        return True
    _, meta = read_onnx_model(fp32)
    return bool(source.get("date")) and source.get("date") == meta.get("date")


def find_fer2013(given: Path | None) -> Path | None:
    if given is not None:
        if given.is_dir():
            raise FeedbackError(f"--fer2013 {given}: a folder; give the FER-2013 csv ({FER_CSV}) itself")
        if not given.is_file():
            raise FeedbackError(f"--fer2013 {given}: no such file")
        return given
    shared = settings.current().shared or Path("..") / "shared"
    return shared / FER_CSV if (shared / FER_CSV).is_file() else None


def check_enough(feedback: FaceDataset, notes: list[str] | None = None) -> dict[str, int]:
    """Corrections per emotion used; FeedbackError saying what is missing when too few, with
    ``notes`` (what was left out, which explains a count lower than the files on disk)."""
    counts = {feedback.class_names[c]: int((feedback.labels == c).sum()) for c in np.unique(feedback.labels)}
    short = {e: n for e, n in counts.items() if n < MIN_PER_EMOTION}
    if short:
        need = ", ".join(f"{e}: {n} (needs {MIN_PER_EMOTION - n} more)" for e, n in short.items())
        raise FeedbackError(
            f"too few corrections to fine-tune: each emotion used needs at least {MIN_PER_EMOTION}; {need}. "
            "Correct more faces (`facial-emotion correct` or the page's 'wrong?'), or remove that "
            "emotion's folder" + "".join(f". Note: {note}" for note in notes or [])
        )
    return counts


def without_repeats(feedback: FaceDataset) -> tuple[FaceDataset, int]:
    """The corrections with each identical face (pixels and emotion) once; how many were dropped."""
    seen: set[tuple[bytes, int]] = set()
    keep = np.zeros(len(feedback), dtype=bool)
    for i, (image, label) in enumerate(zip(feedback.images, feedback.labels, strict=True)):
        key = (image.tobytes(), int(label))
        keep[i] = key not in seen
        seen.add(key)
    return feedback.subset(keep), int((~keep).sum())


def split_aside(feedback: FaceDataset, share: float, seed: int) -> tuple[FaceDataset, FaceDataset]:
    """(to train on, kept aside): a stratified ``share`` of each emotion, at least one face, aside."""
    rng = np.random.default_rng(seed)
    aside = np.zeros(len(feedback), dtype=bool)
    for c in np.unique(feedback.labels):
        idx = np.flatnonzero(feedback.labels == c)
        aside[rng.choice(idx, size=max(1, round(len(idx) * share)), replace=False)] = True
    return feedback.subset(~aside), feedback.subset(aside)


def write_training_faces(
    path: Path, parts: list[tuple[np.ndarray, np.ndarray]], seed: int, classes: tuple[str, ...] = EMOTIONS
) -> int:
    """The faces as a dataset .npz, all 'Training', shuffled, labelled by ``classes`` (the base
    model's: the net trained has its outputs); returns how many. (A csv went through the dataset
    cache, which kept a copy of every fine-tune's faces, megabytes each, for ever.)"""
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    order = np.random.default_rng(seed).permutation(len(labels))
    faces = FaceDataset(
        images=images[order],
        labels=labels[order].astype(np.int64),
        split=np.full(len(labels), "Training"),
        class_names=tuple(classes),
        source=str(path),
    )
    write_npz(faces, path)
    return len(labels)


def scores(model: str | Path, aside: FaceDataset, public: FaceDataset | None, threads: int) -> dict[str, Any]:
    classifier = EmotionClassifier(model, threads=threads or None)
    out: dict[str, Any] = {}
    for name, part in (("corrections", aside), ("PublicTest", public)):
        if part is None or len(part) == 0:
            continue
        # raw labels: the base model's calibration was fitted on PublicTest, the fine-tuned model has none
        probs = classifier.predict(part.images, calibrated=False)
        # PublicTest's labels are FER-2013's seven: an 8-class model is scored on them as `evaluate`
        # scores it (its first seven outputs); the corrections are labelled by the model's own classes
        classes = list(part.class_names) if part.class_names else list(EMOTIONS)
        preds = probs[:, : len(classes)].argmax(axis=1)
        result = summarize(part.labels, preds, classes)
        out[name] = {"accuracy": result["accuracy"], "n": result["n"]}
        if name == "PublicTest":
            # an emotion with no face there has no recall (it showed as 0.0 %, in the metadata too)
            out[name]["recall"] = {e: r["recall"] for e, r in result["per_class"].items() if r["support"]}
    return out


def table(before: dict[str, Any], after: dict[str, Any]) -> str:
    rows = [("", "before", "after")]
    for name, label in (("corrections", "kept-aside corrections"), ("PublicTest", "FER-2013 PublicTest")):
        if name in before:
            rows.append(
                (
                    f"{label} (n={before[name]['n']})",
                    f"{before[name]['accuracy']:.1%}",
                    f"{after[name]['accuracy']:.1%}",
                )
            )
    if "PublicTest" in before:
        for e, b in before["PublicTest"]["recall"].items():
            rows.append((f"  recall {e}", f"{b:.1%}", f"{after['PublicTest']['recall'][e]:.1%}"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{r[0]:<{width}}  {r[1]:>7}  {r[2]:>7}" for r in rows) + "\n"


def finetune(opts: FinetuneOptions) -> dict[str, Any]:
    """Fine-tune, write ``opts.out``; returns counts, before/after scores and the table."""
    base = resolve_model_path(opts.base) if opts.base else default_base()
    # Checked before the base is scored on PublicTest (minutes), in finetune's own option names.
    if opts.epochs < 1 or not opts.lr > 0 or opts.mix < 0:
        raise FeedbackError("--epochs and --lr must be positive, --mix not negative")
    _, base_meta = read_onnx_model(base)  # read once: checked here, its arch used below
    check_trainable(opts.base or str(base), base_meta)
    classes = tuple(base_meta.get("classes", EMOTIONS))  # the corrections' folders: the base's classes
    feedback = load_feedback(opts.feedback, classes)
    ignored = [  # each emotion's originals/ holds the full-size crops: not for training, by design
        p
        for p in ignored_folders(Path(opts.feedback).expanduser(), "folders", classes)
        if p.name != ORIGINALS
    ]
    if ignored:  # as train says of a dataset's: a correction left out without a word was lost
        opts.warnings.append(
            f"folder(s) not read (not an emotion's name, or inside one): {', '.join(str(p) for p in ignored[:5])}"
        )
    if feedback.skipped:
        opts.warnings.append(f"{feedback.skipped} unreadable file(s) in {opts.feedback} skipped")
    feedback, repeats = without_repeats(feedback)
    if repeats:
        opts.warnings.append(
            f"{repeats} correction(s) repeat another (the same face saved again) and count once: a copy "
            "kept aside would score the fine-tune on a face it trained on"
        )
    counts = check_enough(feedback, opts.warnings)  # a failure says what was left out too
    train_fb, aside = split_aside(feedback, opts.holdout, opts.seed)
    fer_path = find_fer2013(opts.fer2013)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    public = None
    if fer_path is None:
        opts.warnings.append(
            "FER-2013 not found (pass --fer2013 CSV or set FACIAL_EMOTION_SHARED): fine-tuning on the "
            "corrections alone, so the model may forget other faces; PublicTest is not measured"
        )
        repeats = max(1, 256 // max(1, len(train_fb)))
    else:
        fer = load_dataset(fer_path, skip_bad=opts.skip_bad)
        training = fer.select_split("Training")
        pick = np.random.default_rng(opts.seed).permutation(len(training))[: opts.mix]
        parts.append((training.images[pick], training.labels[pick]))
        public = fer.select_split("PublicTest")
        if opts.eval_limit:
            public = public.subset(np.arange(len(public)) < opts.eval_limit)
        repeats = max(1, len(pick) // (3 * len(train_fb)))
    parts.append((np.repeat(train_fb.images, repeats, axis=0), np.repeat(train_fb.labels, repeats)))

    before = scores(base, aside, public, opts.threads)
    with tempfile.TemporaryDirectory(prefix="finetune-") as tmp:
        data = Path(tmp) / "finetune.npz"
        n_train = write_training_faces(data, parts, opts.seed, classes)
        cfg = TrainConfig(
            data=str(data),
            arch=str(base_meta.get("arch", TrainConfig.arch)),
            init_from=str(base),
            epochs=opts.epochs,
            lr=opts.lr,
            batch_size=min(opts.batch_size, n_train),
            val_split="none",  # the kept-aside corrections must not choose the epoch they judge
            mixup=0.0,
            ema_decay=0.0,
            threads=opts.threads,
            seed=opts.seed,
        )
        result = train(cfg, Path(tmp) / "run", progress=opts.progress)
        trained = Path(result["model"])
        after = scores(trained, aside, public, opts.threads)
        model, new_meta = read_onnx_model(trained)
        # names, not local paths, as every exported model's metadata gives them (a path relative to
        # where the command ran says nothing once the file travels)
        new_meta["dataset"] = f"{Path(opts.feedback).expanduser().resolve().name} (corrections)" + (
            f" + {Path(fer_path).name} (Training mix)" if fer_path else ""
        )
        new_meta["finetune"] = {
            "base": Path(base).name,
            "corrections": len(feedback),
            "per_emotion": counts,
            "kept_aside": len(aside),
            "fer2013_mix": len(parts[0][1]) if public is not None else 0,
            "epochs": opts.epochs,
            "before": before,
            "after": after,
        }
        write_model(opts.out, model.SerializeToString(), new_meta)
    log.info("fine-tuned model: %s", opts.out)
    return {
        "out": str(opts.out),
        "base": Path(base).name,
        "corrections": len(feedback),
        "per_emotion": counts,
        "before": before,
        "after": after,
        "table": table(before, after),
        "warnings": opts.warnings,
    }


def dumps(result: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2)
