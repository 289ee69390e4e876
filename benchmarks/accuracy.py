"""Accuracy of the shipped models (default: every built-in one) on FER-2013 PublicTest, from the
original csv and from the Kaggle JPEG folders, with and without ten-crop TTA; and off FER-2013's own
labels: the FER+ majority vote of the same PublicTest faces, and faces labelled by hand in the
photos and videos of ../shared/media (tests/media_labels.csv), seen through the whole pipeline.
Prints a Markdown table, writes JSON, and the report (confusion matrices, mistakes grid) of the
default model's csv run. ``--against MODEL`` pairs each run with that model's on the same faces
(``evaluate --against``): a candidate's table then shows, beside each figure, its raw softmax's
difference from that model's and the sign test's p (a run just trained has no calibration yet).

    python benchmarks/accuracy.py [--models default,fp32,ensemble] [--out benchmarks/results/accuracy.json]
    python benchmarks/accuracy.py --models runs/mine/model.onnx --against fp32 --out mine.json --report mine-report
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench_machine import write_results

from facial_emotion.evaluation.evaluate import compare, evaluate, write_report
from facial_emotion.evaluation.labelled_media import read_labels, score_labelled_media
from facial_emotion.inference.classifier import EmotionClassifier
from facial_emotion.inference.pipeline import EmotionRecognizer
from facial_emotion.model_file import BUILTIN_MODELS

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACIAL_EMOTION_SHARED", REPO.parent / "shared"))
MEDIA_LABELS = REPO / "tests" / "media_labels.csv"
CSV = SHARED / "datasets" / "fer2013" / "fer2013.csv.gz"
# (column, data, split, labels)
RUNS = [
    ("PublicTest", CSV, "PublicTest", "fer2013"),
    ("Kaggle JPEG", SHARED / "datasets" / "fer2013-kaggle", "test", "fer2013"),
    ("FER+ majority", CSV, "PublicTest", "ferplus"),
]


def shown_path(path: str) -> str:
    p = Path(path).resolve()
    for base, shown in ((REPO, "."), (SHARED.resolve().parent, "..")):
        if p.is_relative_to(base):
            return f"{shown}/{p.relative_to(base)}"
    return path


def measure(model: str, meta: dict, report: Path | None, against: str | None = None) -> dict:
    entry: dict = {"name": model, "arch": meta["arch"], "quantized": meta.get("quantized", "none") != "none"}
    entry["runs"] = []
    for column, data, split, labels in RUNS:
        for tta in (False, True):
            t0 = time.perf_counter()
            if against:
                res, part, probs = compare(data, model, against, split, tta=tta, labels=labels)
                res["against"]["model"] = shown_path(res["against"]["model"])
            else:
                res, part, probs = evaluate(data, model, split, tta=tta, labels=labels)
            res.update(
                source=column,
                seconds=round(time.perf_counter() - t0, 1),
                model=shown_path(res["model"]),
                dataset=shown_path(res["dataset"]),
            )
            if report is not None and column == "PublicTest" and not tta:
                write_report(res, part, probs, report)
            res.pop("reliability", None)
            res.pop("reliability_uncalibrated", None)
            entry["runs"].append(res)
            print(f"{model}: {column} tta={tta}: {res['accuracy']:.2%} ({res['n']} faces)", flush=True)
    scored = score_labelled_media(read_labels(MEDIA_LABELS), SHARED / "media", EmotionRecognizer(model=model))
    entry["media"] = {
        "faces": len(scored),
        "correct": sum(s.correct for s in scored),
        "missed": sum(s.face is None for s in scored),
        "by_file": {
            f: [sum(s.correct for s in scored if s.label.file == f), sum(s.label.file == f for s in scored)]
            for f in dict.fromkeys(s.label.file for s in scored)
        },
    }
    print(f"{model}: media faces {entry['media']['correct']}/{len(scored)}", flush=True)
    return entry


def paired_cell(run: dict) -> str:
    """A run's raw-softmax difference from the ``--against`` model's, and the sign test's p."""
    if "against" not in run:
        return ""
    raw = run["against"]["uncalibrated"]
    return f" ({100 * raw['difference']:+.2f}, p {raw['sign_test_p']:.2g})"


def markdown(entries: list[dict]) -> str:
    head = " | ".join(f"{c} | {c}, ten-crop" for c, *_ in RUNS)
    lines = [
        f"| model | {head} | faces in ../shared/media, by hand |",
        "| --- |" + " ---: |" * (2 * len(RUNS) + 1),
    ]
    for e in entries:
        cells = [f"{r['accuracy']:.2%}" + paired_cell(r) for r in e["runs"]]
        m = e["media"]
        name = f"`{e['name']}` ({e['arch']}{', int8' if e['quantized'] else ''})"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {m['correct']}/{m['faces']} |")
    first = entries[0]["runs"][0]["per_class"]
    lines += [
        "",
        f"| recall per class (`{entries[0]['name']}`, PublicTest, no TTA) | " + " | ".join(first) + " |",
        "| --- |" + " ---: |" * len(first),
        "| | " + " | ".join(f"{first[c]['recall']:.2f}" for c in first) + " |",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models", default=",".join(BUILTIN_MODELS), help="comma list of files or built-in names"
    )
    ap.add_argument(
        "--against",
        metavar="MODEL",
        help="pair every run with this model's on the same faces: the table shows the raw softmax's "
        "difference in points and the sign test's p beside each figure",
    )
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "accuracy.json"))
    ap.add_argument(
        "--report", default=str(REPO / "docs" / "report"), help="folder for the first model's report"
    )
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    metas = {m: EmotionClassifier(m).metadata for m in models}
    if args.against:  # said now, not after the runs before the FER+ one
        classes = len(EmotionClassifier(args.against).classes)
        other = [m for m in models if len(metas[m]["classes"]) != classes]
        if other:
            ap.error(
                f"--against {args.against} has {classes} classes, {', '.join(other)} not: no paired FER+ run"
            )
    report = Path(args.report)
    entries = [measure(m, metas[m], report if i == 0 else None, args.against) for i, m in enumerate(models)]
    results = {"model": metas[models[0]], "models": metas, "entries": entries}
    results["markdown"] = markdown(entries)
    if args.against:
        results["against"] = EmotionClassifier(args.against).metadata
        results["markdown"] += (
            f"\n\nIn brackets: the raw softmax's difference in points from `{args.against}`'s on the same "
            "faces, and the sign test's p (`evaluate --against`)."
        )
    print(results["markdown"])
    write_results(Path(args.out), results)


if __name__ == "__main__":
    main()
