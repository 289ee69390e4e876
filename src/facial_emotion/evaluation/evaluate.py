"""Evaluate a model file on a labelled dataset with the inference classifier (no torch)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from facial_emotion.data import DatasetError, FaceDataset, load_dataset
from facial_emotion.evaluation.calibration import ECE_BINS, accuracy, ece, nll, reliability
from facial_emotion.evaluation.metrics import paired_comparison, summarize
from facial_emotion.inference.classifier import EmotionClassifier
from facial_emotion.model_file import CALIBRATION_KEY

log = logging.getLogger(__name__)

TEST_SPLIT_PREFERENCE = ("PrivateTest", "PublicTest", "test", "val", "all")


def default_test_split(ds: FaceDataset) -> str:
    for name in TEST_SPLIT_PREFERENCE:
        if name in ds.splits:
            return name
    raise DatasetError(f"{ds.source}: no test split; pass --split (available: {', '.join(ds.splits)})")


def calibration_method(entry: dict[str, Any], tta: bool) -> str:
    """The method of a model's calibration for plain or ten-crop inference ("none" if it has none)."""
    method = entry.get("method") or ("temperature scaling" if "temperature" in entry else "none")
    return entry.get("method_tta", method) if tta else method


def trained_on_faces(metadata: dict[str, Any], data: str | Path, split: str) -> bool:
    """Whether ``split`` of ``data`` holds faces the model trained on, as far as its metadata tells:
    ``data`` is a dataset it names among what it trained on ("mine", "fb (corrections) +
    fer2013.csv.gz (Training mix)") and the split is "all" or one of its training splits; or ``data``
    is a split folder of such a dataset, given itself, that it trained on (kf/Train, not kf/test).
    Splits compare in any case; a model that does not record its training split (an ensemble, an
    older file) is taken to have trained on the default one (Training, train, or all of a folder).
    An ensemble: whether any member trained on them, where its members' summaries say."""
    members = [m for m in metadata.get("members", []) if m.get("dataset")]
    if members:
        return any(trained_on_faces(m, data, split) for m in members)
    folder = Path(data).expanduser().resolve()
    names = {part.split(" (")[0].strip() for part in str(metadata.get("dataset", "")).split(" + ")} - {""}
    trained = {s.strip().lower() for s in str(metadata.get("train_split") or "default").split(",")}
    if "default" in trained:
        trained |= {"training", "train", "all"}
    if folder.name in names and split.lower() in trained | {"all"}:
        return True
    return folder.parent.name in names and folder.name.lower() in trained


class Scored(NamedTuple):
    """A model's logits for the faces of one split, and what they were scored with."""

    classifier: EmotionClassifier
    part: FaceDataset
    split: str
    logits: np.ndarray
    skipped: int


def score(
    data: str | Path,
    model: str | Path | EmotionClassifier | None = None,
    split: str | None = None,
    tta: bool = False,
    skip_bad: bool = False,
    threads: int | None = None,
    labels: str = "fer2013",
) -> Scored:
    """The model's logits for the split's faces (ten-crop ones with ``tta``), warning where the model
    trained on them; ``DatasetError`` where its classes are not the labels'."""
    classifier = model if isinstance(model, EmotionClassifier) else EmotionClassifier(model, threads=threads)
    ds = load_dataset(
        data, labels=labels, skip_bad=skip_bad, ferplus_classes=8 if len(classifier.classes) == 8 else 7
    )
    split = split or default_test_split(ds)
    if trained_on_faces(classifier.metadata, data, split):
        # a ROOT/<emotion>/ folder has no test split (its every face is scored), a training split named
        # by --split, or a training split's folder given as --data
        log.warning(
            "%s [%s]: the model was trained on %s: its figures on these faces are not held-out (it "
            "trained on split %s; a ROOT/{train,test}/<emotion>/ layout keeps a test split apart)",
            data,
            split,
            classifier.metadata.get("dataset", ""),
            classifier.metadata.get("train_split") or "default",
        )
    part = ds.select_split(split)
    if list(classifier.classes[: len(part.class_names)]) != list(part.class_names):
        raise DatasetError(
            f"model classes {classifier.classes} differ from the dataset's {list(part.class_names)}"
        )
    part.check_face_size(classifier.face_size, str(classifier.path))
    return Scored(classifier, part, split, classifier.logits(part.images, tta=tta), ds.skipped)


def evaluate(
    data: str | Path,
    model: str | Path | None = None,
    split: str | None = None,
    tta: bool = False,
    skip_bad: bool = False,
    threads: int | None = None,
    labels: str = "fer2013",
) -> tuple[dict[str, Any], FaceDataset, np.ndarray]:
    """Returns (results, the evaluated faces, their probabilities). ``labels="ferplus"`` scores
    against the FER+ majority vote of each face (an 8-class model on all eight, contempt included).
    A model whose classes are not the labels' gets ``ece`` and ``nll`` None with a ``confidence_note``;
    classes with no faces in the split are listed in ``classes_without_faces``."""
    scored = score(data, model, split, tta, skip_bad, threads, labels)
    probs = scored.classifier.probabilities(scored.logits, tta)
    return summarize_scored(scored, probs, data, tta, labels), scored.part, probs


def summarize_scored(
    scored: Scored, probs: np.ndarray, data: str | Path, tta: bool, labels: str
) -> dict[str, Any]:
    """``evaluate``'s results from a model's logits and its (calibrated) probabilities."""
    classifier, part, logits = scored.classifier, scored.part, scored.logits
    results = summarize(part.labels, predictions(probs, part), list(part.class_names))
    results.update(
        model=str(classifier.path),
        split=scored.split,
        tta=tta,
        dataset=str(data),
        labels=labels,
        skipped=scored.skipped,
    )
    absent = [c for c, n in zip(part.class_names, part.class_counts(), strict=True) if n == 0]
    if absent:  # their rows read 0.000, which is no measurement: said, and listed in the JSON
        results["classes_without_faces"] = absent
    # How far confidences match accuracy: with the model's own calibration, and without any.
    if len(part.class_names) != probs.shape[1]:
        results.update(
            ece=None,
            nll=None,
            confidence_note=(
                f"no ECE or NLL: the model's {probs.shape[1]} classes are not the labels' "
                f"{len(part.class_names)}, so its confidences cannot be scored against them"
            ),
        )
    else:
        raw = classifier.probabilities(logits, tta, calibrated=False)
        results.update(
            ece=round(ece(probs, part.labels), 4),
            nll=round(nll(probs, part.labels), 4),
            # vector scaling can move a nearly tied face's label: the accuracy before it, for comparison
            accuracy_uncalibrated=round(accuracy(raw, part.labels), 4),
            calibration=calibration_method(classifier.metadata.get(CALIBRATION_KEY) or {}, tta),
            ece_uncalibrated=round(ece(raw, part.labels), 4),
            nll_uncalibrated=round(nll(raw, part.labels), 4),
            mean_confidence=round(float(probs.max(axis=1).mean()), 4),
            reliability=reliability(probs, part.labels),
            reliability_uncalibrated=reliability(raw, part.labels),
        )
    return results


def predictions(probs: np.ndarray, part: FaceDataset) -> np.ndarray:
    """Each face's label among the dataset's classes (an 8-class model scored on FER-2013's seven
    picks among those seven)."""
    return probs[:, : len(part.class_names)].argmax(axis=1)


def compare(
    data: str | Path,
    model: str | Path | None,
    against: str | Path,
    split: str | None = None,
    tta: bool = False,
    skip_bad: bool = False,
    threads: int | None = None,
    labels: str = "fer2013",
) -> tuple[dict[str, Any], FaceDataset, np.ndarray]:
    """``evaluate`` of ``model``, its results with a key ``against``: the other model's accuracy on
    the same faces, scored the same way, and the paired comparison of the two (``paired_comparison``:
    the faces only one gets right, the sign test, the difference with its 95 % interval), of their
    calibrated outputs and, under ``uncalibrated``, of their raw softmax (a model just trained has
    no calibration yet, and one fitted on these very faces flatters its model a little)."""
    # both files loaded first: a wrong --against is said before the first model's faces are scored
    first, second = (EmotionClassifier(m, threads=threads) for m in (model, against))
    names = " and ".join(model_names(first.path, second.path))
    # under FER+ labels a 7-class model reads the votes without contempt's (a face only contempt was voted
    # for is left out), an 8-class one with them: other labels, perhaps other faces
    if labels == "ferplus" and len(first.classes) != len(second.classes):
        raise DatasetError(
            f"{names} have {len(first.classes)} and {len(second.classes)} classes: under FER+ labels they "
            "are scored on different faces or labels; compare models with the same classes"
        )
    this = score(data, first, split, tta, skip_bad, threads, labels)
    other = score(data, second, this.split, tta, skip_bad, threads, labels)
    if not np.array_equal(this.part.labels, other.part.labels):  # any other way they could differ
        raise DatasetError(
            f"{names} are scored on different faces or labels ({len(this.part.labels)} and "
            f"{len(other.part.labels)} faces): compare models with the same classes"
        )

    def paired(calibrated: bool) -> dict[str, Any]:
        a, b = (s.classifier.probabilities(s.logits, tta, calibrated=calibrated) for s in (this, other))
        return paired_comparison(this.part.labels, predictions(a, this.part), predictions(b, other.part))

    probs = this.classifier.probabilities(this.logits, tta)
    results = summarize_scored(this, probs, data, tta, labels)
    results["against"] = {"model": str(other.classifier.path), **paired(True), "uncalibrated": paired(False)}
    return results, this.part, probs


def model_names(a: str | Path, b: str | Path) -> tuple[str, str]:
    """Two model files named as briefly as tells them apart: file names, else with their folders
    (two runs' ``RUN/model.onnx``), else whole paths."""
    a, b = Path(a), Path(b)
    if a.name != b.name or a == b:
        return a.name, b.name
    if a.parent.name != b.parent.name:
        return f"{a.parent.name}/{a.name}", f"{b.parent.name}/{b.name}"
    return str(a), str(b)


def describe_comparison(results: dict[str, Any]) -> str:
    """``compare``'s paired comparison in two lines: of the models' outputs, and of their raw softmax."""
    against, raw = results["against"], results["against"]["uncalibrated"]
    this, other = model_names(results["model"], against["model"])

    def difference(pairs: dict[str, Any]) -> str:
        lo, hi = pairs["difference_ci95"]
        return (
            f"{100 * pairs['difference']:+.2f} points (95 % CI {100 * lo:+.2f} to {100 * hi:+.2f}), "
            f"sign test p = {pairs['sign_test_p']:.2g}"
        )

    return (
        f"against {other} on the same faces: accuracy {against['accuracy']:.2%}; {this} is right on "
        f"{faces_text(against['only_this_right'])} that {other} gets wrong, {other} on "
        f"{against['only_other_right']} that {this} gets wrong: {difference(against)}\n"
        f"raw softmax (no calibration): accuracy {raw['accuracy']:.2%} for {other}, {raw['only_this_right']} "
        f"and {raw['only_other_right']} such faces: {difference(raw)}"
    )


# Every file a report may hold: a run removes those it does not write (a re-run into the same folder
# kept the last model's reliability diagram beside the new report).
REPORT_FILES = (
    "confusion_matrix.png",
    "confusion_matrix_normalized.png",
    "report.md",
    "report.json",
    "reliability.png",
    "mistakes.png",
)


def describe(results: dict[str, Any]) -> str:
    """The run in a line: data and split, labels, model, test-time augmentation."""
    labels = "FER+ majority labels" if results.get("labels") == "ferplus" else "FER-2013 labels"
    tta = "ten-crop" if results["tta"] else "centre crop"
    return f"{Path(str(results['dataset'])).name} [{results['split']}], {labels}, {Path(str(results['model'])).name}, {tta}"


def faces_text(n: int) -> str:
    return f"{n} face" if n == 1 else f"{n} faces"


def write_report(
    results: dict[str, Any], part: FaceDataset, probs: np.ndarray, out: Path, mistakes: int = 32
) -> list[Path]:
    """Confusion matrices (counts, row-normalised), the classification report (Markdown + JSON), a
    grid of the most confident mistakes (when there are any) and, where the model's classes are the
    dataset's, the reliability diagram (calibrated and raw confidences)."""
    from facial_emotion.evaluation.plots import plot_confusion_matrix, plot_mistakes, plot_reliability
    from facial_emotion.results.files import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)
    classes = list(part.class_names)
    cm = np.array(results["confusion_matrix"])
    about = describe(results)
    title = f"{about}\naccuracy {results['accuracy']:.2%}"
    plot_confusion_matrix(cm, classes, out / "confusion_matrix.png", normalize=False, title=title)
    plot_confusion_matrix(cm, classes, out / "confusion_matrix_normalized.png", normalize=True, title=title)
    atomic_write_bytes(out / "report.json", (json.dumps(results, indent=2) + "\n").encode())
    lines = [
        f"# Evaluation: {about}",
        "",
        f"- data: `{results['dataset']}`, split {results['split']}, labels: {results.get('labels', 'fer2013')}",
        f"- model: `{results['model']}`",
        f"- {faces_text(results['n'])}, test-time augmentation: {'ten-crop' if results['tta'] else 'none'}",
        f"- **accuracy: {results['accuracy']:.2%}**, macro F1: {results['macro_f1']:.4f}"
        + (" (over the classes present)" if results.get("classes_without_faces") else ""),
    ]
    written = ["confusion_matrix.png", "confusion_matrix_normalized.png", "report.md", "report.json"]
    if results.get("classes_without_faces"):
        lines.append(
            f"- no faces of {', '.join(results['classes_without_faces'])}: their rows are empty, not 0"
        )
    if results.get("reliability"):
        plot_reliability(
            {
                f"calibrated ({results['calibration']}), ECE {results['ece']:.2%}": results["reliability"],
                f"raw softmax, ECE {results['ece_uncalibrated']:.2%}": results["reliability_uncalibrated"],
            },
            out / "reliability.png",
            title=f"Reliability ({ECE_BINS} bins, as the ECE), {faces_text(results['n'])}\n{about}",
        )
        written.append("reliability.png")
        lines += [
            f"- confidence: ECE {results['ece']:.2%} (raw softmax {results['ece_uncalibrated']:.2%}), "
            f"NLL {results['nll']:.4f} (raw {results['nll_uncalibrated']:.4f}), calibration: "
            f"{results['calibration']}; accuracy of the raw softmax {results['accuracy_uncalibrated']:.2%}",
            "",
            "![reliability diagram](reliability.png)",
        ]
    elif results.get("confidence_note"):
        lines.append(f"- {results['confidence_note']}")
    lines += [
        "",
        "| emotion | precision | recall | F1 | support |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for c, r in results["per_class"].items():
        if r["support"] == 0:
            lines.append(f"| {c} | {r['precision']:.3f} | — | — | 0 |")
        else:
            lines.append(
                f"| {c} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
            )
    lines += [
        "",
        "![confusion matrix](confusion_matrix.png) ![confusion matrix, each row normalised](confusion_matrix_normalized.png)",
    ]
    preds = probs[:, : len(classes)].argmax(axis=1)
    wrong = np.flatnonzero(preds != part.labels)
    if len(wrong):
        worst = wrong[np.argsort(-probs[wrong, preds[wrong]])][:mistakes]
        captions = [
            f"true {classes[part.labels[i]]}\npred {classes[preds[i]]} {probs[i, preds[i]]:.0%}"
            for i in worst
        ]
        plot_mistakes(part.images[worst], captions, out / "mistakes.png", "Most confident mistakes")
        written.append("mistakes.png")
        lines += ["", "![the most confident mistakes](mistakes.png)"]
    else:
        lines += ["", "No mistakes."]
    atomic_write_bytes(out / "report.md", ("\n".join(lines) + "\n").encode())
    for name in REPORT_FILES:
        if name not in written:
            (out / name).unlink(missing_ok=True)
    return [out / n for n in written]
