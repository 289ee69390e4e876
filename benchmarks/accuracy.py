"""Accuracy of a model (default: the built-in one) on FER-2013 PublicTest, from the original csv and
from the Kaggle JPEG folders, with and without ten-crop TTA. Prints a Markdown table, writes JSON,
and the report (confusion matrices, mistakes grid) of the csv run.

    python benchmarks/accuracy.py [--model M.onnx] [--out benchmarks/results/accuracy.json] [--report docs/report]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench_machine import write_results

from facial_emotion.evaluation.evaluate import evaluate, write_report
from facial_emotion.inference.classifier import EmotionClassifier
from facial_emotion.labels import EMOTIONS

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACIAL_EMOTION_SHARED", REPO.parent / "shared"))


def shown_path(path: str) -> str:
    p = Path(path).resolve()
    for base, shown in ((REPO, "."), (SHARED.resolve().parent, "..")):
        if p.is_relative_to(base):
            return f"{shown}/{p.relative_to(base)}"
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "accuracy.json"))
    ap.add_argument("--report", default=str(REPO / "docs" / "report"), help="folder for the csv run's report")
    args = ap.parse_args()
    runs = [
        ("fer2013.csv.gz", SHARED / "datasets" / "fer2013" / "fer2013.csv.gz", "PublicTest"),
        ("fer2013-kaggle (JPEG)", SHARED / "datasets" / "fer2013-kaggle", "test"),
    ]
    meta = EmotionClassifier(args.model).metadata
    results = {"model": meta, "runs": []}
    for name, path, split in runs:
        for tta in (False, True):
            t0 = time.perf_counter()
            res, part, probs = evaluate(path, args.model, split, tta=tta)
            # Paths relative to the repository and ../shared: the results are committed.
            res.update(
                source=name,
                seconds=round(time.perf_counter() - t0, 1),
                model=shown_path(res["model"]),
                dataset=shown_path(res["dataset"]),
            )
            results["runs"].append(res)
            print(f"{name} [{split}] tta={tta}: {res['accuracy']:.2%} ({res['n']} faces)", flush=True)
            if name.startswith("fer2013.csv") and not tta and args.report:
                write_report(res, part, probs, Path(args.report))
    lines = [
        "| data | split | faces | accuracy | accuracy, ten-crop TTA | macro F1 |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for plain, tta in zip(results["runs"][::2], results["runs"][1::2], strict=True):
        lines.append(
            f"| {plain['source']} | {plain['split']} | {plain['n']} | {plain['accuracy']:.2%} "
            f"| {tta['accuracy']:.2%} | {plain['macro_f1']:.3f} |"
        )
    lines += [
        "",
        "| recall per class (csv, no TTA) | " + " | ".join(EMOTIONS) + " |",
        "| --- |" + " ---: |" * 7,
    ]
    first = results["runs"][0]["per_class"]
    lines.append("| | " + " | ".join(f"{first[c]['recall']:.2f}" for c in EMOTIONS) + " |")
    table = "\n".join(lines)
    print(table)
    results["markdown"] = table
    write_results(Path(args.out), results)


if __name__ == "__main__":
    main()
