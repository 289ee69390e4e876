"""Training throughput of facial-emotion's recipe: images/s and projected seconds per epoch.

    python benchmarks/train_speed.py [--steps 40] [--warmup 5] [--out benchmarks/results/train_speed.json]

Runs ``--steps`` optimiser steps of the training loop's step, as ``facial_emotion.training.loop.train``
does it, with every setting from ``TrainConfig``'s defaults (architecture, batch, SGD Nesterov, one-cycle
schedule, EMA, augmentation, channels_last, precision "auto"): real FER-2013 Training faces held in RAM
as uint8, batched augmentation, forward, soft-target loss, backward, step, EMA update. The first
``--warmup`` steps are not timed. Epoch time = steps per epoch x batch / throughput, plus one validation
pass of the model and of its EMA copy on the validation split, as the loop does every epoch.

Where the CPU has native bf16 (AMX or AVX512-BF16: bf16 autocast pays off), fp32 and bf16 are both
measured; otherwise fp32 only.
compare_fer.py imports ``measure`` from here; run this file alone for the training figures only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from bench_machine import write_results

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACIAL_EMOTION_SHARED", REPO.parent / "shared"))
FER2013 = SHARED / "datasets" / "fer2013" / "fer2013.csv.gz"


def measure(
    data: Path = FER2013,
    steps: int = 40,
    warmup: int = 5,
    threads: int = 0,
    val_limit: int = 0,
    precisions: list[str] | None = None,
) -> dict:
    """Throughput of the recipe in TrainConfig's defaults; one entry per precision measured."""
    import torch

    from facial_emotion.data import load_dataset
    from facial_emotion.training.config import TrainConfig
    from facial_emotion.training.loop import build_targets, split_dataset
    from facial_emotion.training.machine import cpu_bf16_flags, resolve_precision

    cfg = TrainConfig(data=str(data))
    if threads:
        torch.set_num_threads(threads)
    ds = load_dataset(cfg.data)
    train_ds, val_ds = split_dataset(ds, cfg)
    full_val = len(val_ds) if val_ds is not None else 0
    if val_ds is not None and val_limit:
        val_ds = val_ds.subset(np.arange(len(val_ds)) < val_limit)
    targets = build_targets(train_ds, cfg, ds.num_classes)
    images = torch.from_numpy(train_ds.images)
    steps_per_epoch = len(train_ds) // cfg.batch_size
    native_bf16 = cpu_bf16_flags()
    if precisions is None:
        precisions = ["fp32", "bf16"] if native_bf16 else [resolve_precision(cfg.precision)]

    out: dict = {
        "recipe": {
            "arch": cfg.arch,
            "batch_size": cfg.batch_size,
            "optimizer": "SGD nesterov" + (f", EMA {cfg.ema_decay}" if cfg.ema_decay else ""),
            "precision_auto": resolve_precision(cfg.precision),
            "channels_last": True,
        },
        "train_faces": len(train_ds),
        "val_faces": full_val,
        "steps_per_epoch": steps_per_epoch,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "native_bf16": native_bf16,
        "steps": steps,
        "warmup": warmup,
        "runs": {},
    }
    for precision in precisions:
        out["runs"][precision] = _run(cfg, precision, images, targets, val_ds, full_val, steps, warmup)
    return out


def _run(cfg, precision: str, images, targets, val_ds, full_val: int, steps: int, warmup: int) -> dict:
    """One precision: build the model and optimiser as the loop does, time ``steps`` steps."""
    import torch

    from facial_emotion.training.augment import augment
    from facial_emotion.training.loop import build_training, evaluate_torch, train_step

    autocast = precision == "bf16"
    steps_per_epoch = len(images) // cfg.batch_size
    model, ema, optimizer, scheduler = build_training(cfg, targets.shape[1], steps_per_epoch)
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(images), generator=gen)
    model.train()

    def step(i: int) -> None:
        j = i % steps_per_epoch
        idx = order[j * cfg.batch_size : (j + 1) * cfg.batch_size]
        x = augment(images[idx], cfg.augment, gen).contiguous(memory_format=torch.channels_last)
        y = targets[idx]
        loss, logits = train_step(model, ema, optimizer, scheduler, x, y, autocast)
        loss.item()  # the loop reads the loss and the accuracy every step
        (logits.argmax(1) == y.argmax(1)).sum().item()

    for i in range(warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    train_s = time.perf_counter() - t0
    img_s = steps * cfg.batch_size / train_s
    val_s = 0.0
    if val_ds is not None and len(val_ds):
        t0 = time.perf_counter()
        evaluate_torch(model, val_ds, cfg.augment.crop, autocast)
        if ema is not None:
            evaluate_torch(ema.module, val_ds, cfg.augment.crop, autocast)
        val_s = (time.perf_counter() - t0) * full_val / len(val_ds)  # scaled up under --val-limit
    epoch_train_s = steps_per_epoch * cfg.batch_size / img_s
    return {
        "img_per_s": round(img_s, 1),
        "step_ms": round(1000 * train_s / steps, 1),
        "epoch_train_s": round(epoch_train_s, 1),
        "epoch_val_s": round(val_s, 1),
        "epoch_s": round(epoch_train_s + val_s, 1),
    }


def table(res: dict) -> str:
    r = res["recipe"]
    lines = [
        f"Training throughput: {r['arch']}, batch {r['batch_size']}, {r['optimizer']}, channels_last, "
        f"{res['threads']} threads, torch {res['torch']}, {res['steps']} timed steps on real FER-2013 faces",
        "",
        "| precision | img/s | ms/step | s/epoch train | + validation | s/epoch |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for precision, run in res["runs"].items():
        auto = " (auto)" if precision == r["precision_auto"] else ""
        lines.append(
            f"| {precision}{auto} | {run['img_per_s']:.0f} | {run['step_ms']:.0f} "
            f"| {run['epoch_train_s']:.0f} "
            f"| {run['epoch_val_s']:.0f} | {run['epoch_s']:.0f} |"
        )
    # Results written before the native_bf16 key only say whether the CPU had AMX.
    native = res.get("native_bf16", ["amx_bf16"] if res.get("amx_bf16") else [])
    lines.append("")
    lines.append(
        f"One epoch = {res['steps_per_epoch']} steps x {r['batch_size']} of {res['train_faces']:,} "
        f"training faces, then validation of the model and its EMA on {res['val_faces']:,} faces."
        + (
            f" Native bf16 on this CPU: {', '.join(native)}."
            if native
            else " No native bf16 (AMX, AVX512-BF16) on this CPU: bf16 autocast not measured (slower here)."
        )
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(FER2013), help="FER-2013 csv (default: ../shared/datasets/...)")
    ap.add_argument("--steps", type=int, default=40, help="timed optimiser steps")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--val-limit", type=int, default=0, help="time validation on N faces, scaled up")
    ap.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "both"],
        default="both",
        help="both = fp32 and bf16 where the CPU has native bf16, else fp32",
    )
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_speed.json"))
    args = ap.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"{args.data} not found: set FACIAL_EMOTION_SHARED")
    from facial_emotion.training.machine import resolve_precision

    precisions = None if args.precision == "both" else [resolve_precision(args.precision)]
    res = measure(Path(args.data), args.steps, args.warmup, args.threads, args.val_limit, precisions)
    print(table(res))
    write_results(Path(args.out), res)


if __name__ == "__main__":
    main()
