"""How well each calibration method does on faces it was not fitted on: for every built-in model (or
the files named), plain and ten-crop, PublicTest is split in two halves at random; the method is fitted
on one half and scores the other, and the other way round, so every face is scored out of sample
(cross-fitting). Repeated over several random splits; prints ECE, NLL and accuracy per method beside
the raw softmax, writes JSON and a Markdown table (README, "Confidence").

    python benchmarks/calibration.py [--models default,ensemble] [--splits 10]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from bench_machine import describe_machine, write_results

from facial_emotion.data import load_dataset
from facial_emotion.evaluation.calibration import METHODS, accuracy, cross_fitted, ece, nll, probabilities
from facial_emotion.inference.classifier import EmotionClassifier
from facial_emotion.model_file import BUILTIN_MODELS

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACIAL_EMOTION_SHARED", REPO.parent / "shared"))


def scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {
        "ece": ece(probs, labels),
        "nll": nll(probs, labels),
        "accuracy": accuracy(probs, labels),
    }


def measure(logits: np.ndarray, labels: np.ndarray, splits: int) -> dict[str, dict[str, float]]:
    """Raw softmax, and each method cross-fitted over ``splits`` random halvings: mean and spread."""
    out = {"raw softmax": scores(probabilities(logits), labels)}
    for method in METHODS:
        runs = [scores(cross_fitted(logits, labels, method, seed), labels) for seed in range(splits)]
        out[method] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        out[method]["ece_sd"] = float(np.std([r["ece"] for r in runs]))
    return out


def markdown(results: dict) -> str:
    lines = [
        "| model | crops | method | ECE | NLL | accuracy |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for model, by_crops in results["models"].items():
        for crops, by_method in by_crops.items():
            for method, r in by_method.items():
                spread = f" ± {r['ece_sd']:.2%}" if "ece_sd" in r else ""
                lines.append(
                    f"| `{model}` | {crops} | {method} | {r['ece']:.2%}{spread} | {r['nll']:.4f} | "
                    f"{r['accuracy']:.2%} |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models", default=",".join(BUILTIN_MODELS), help="comma list of files or built-in names"
    )
    ap.add_argument("--splits", type=int, default=10, help="random halvings of PublicTest (default 10)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "calibration.json"))
    args = ap.parse_args()
    faces = load_dataset(SHARED / "datasets" / "fer2013" / "fer2013.csv.gz").select_split("PublicTest")
    results: dict = {"machine": describe_machine(), "faces": len(faces.labels), "splits": args.splits}
    results["models"] = {}
    for model in args.models.split(","):
        classifier = EmotionClassifier(model)
        results["models"][model] = {
            crops: measure(classifier.logits(faces.images, tta=tta), faces.labels, args.splits)
            for crops, tta in (("centre", False), ("ten-crop", True))
        }
        print(f"{model}: done", flush=True)
    results["markdown"] = markdown(results)
    print(results["markdown"])
    write_results(Path(args.out), results, results["markdown"])


if __name__ == "__main__":
    main()
