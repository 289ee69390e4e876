"""Train several candidate models in one go, then pack their best weights small.

Made for a lent GPU machine (one call of at most 10 minutes, 8 files of 16 MiB back) and tested on
the CPU: every candidate is one `facial_emotion.training.loop.train` run in its own process (several
share the GPU: one small net leaves most of it idle), on the device ``--device`` names. A candidate
with ``teachers`` waits for them, then distils from their ten-crop probabilities, computed here on
that device and handed to the run through its teacher cache (training/distill.py), since
onnxruntime on the CPU would take minutes for them.

    python scripts/train_candidates.py --data faces.npz --plan scripts/candidates.json \\
        --runs /tmp/runs --parallel 6 --deadline-s 420 --pack-to "$OUT"

The plan is a JSON list of {"name": ..., "options": {TrainConfig fields}, "teachers": [names],
"distill": w}. ``--epochs N`` overrides every candidate's epochs (a smoke run). At the deadline the
runs still going are stopped and their best weights so far are packed, marked "cut".
``--pack-to`` writes candidates-K.pt (the best checkpoints, float weights in fp16, as few files of at
most 15 MiB as they fit in; a net too big for one file, as resnet18's 22 MB, in parts across files)
and summary.json; ``unpack`` turns a pack back into best.pt files (given all its files).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))  # runs from a checkout, uninstalled (the GPU machine has no registry)

PACK_LIMIT = 15 * 2**20  # the device tool brings back files of at most 16 MiB
PART = "#part"  # NAME#partK/N: the K-th of N parts of a checkpoint too big for one pack file


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- one candidate (a child process) --------------------------------------------------------------


def run_one(name: str, options: dict[str, Any], runs: Path) -> None:
    import logging

    from facial_emotion.training.config import TrainConfig
    from facial_emotion.training.loop import train

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(message)s", datefmt="%H:%M:%S")
    result = train(TrainConfig.from_dict(options), runs / name, progress=False)
    log(f"{name}: done, best {result['best']}")


# --- teachers --------------------------------------------------------------------------------------


def teacher_cache(student: dict[str, Any], runs: Path, device: str) -> str:
    """Write the student's teacher cache (mean ten-crop probabilities of its teachers' best weights on
    its training faces); returns the --teacher spec naming the teachers' model files."""
    import numpy as np
    import torch

    from facial_emotion.inference.classifier import ten_crops
    from facial_emotion.training.config import TrainConfig
    from facial_emotion.training.distill import TEACHER_TARGETS, write_teacher_file
    from facial_emotion.training.export import model_from_checkpoint
    from facial_emotion.training.loop import load_training_data

    cfg = TrainConfig.from_dict(student["options"])
    _, train_ds, _ = load_training_data(cfg)
    total = None
    for teacher in student["teachers"]:
        model, state = model_from_checkpoint(runs / teacher / "best.pt")
        model = model.to(device)
        crop = TrainConfig.from_dict(state["config"]).augment.crop
        probs = []
        with torch.no_grad():
            for i in range(0, len(train_ds), 2048):
                crops = torch.from_numpy(ten_crops(train_ds.images[i : i + 2048], crop)).to(device)
                logits = model(crops[:, None].float()).float()
                probs.append(torch.softmax(logits, 1).reshape(-1, 10, logits.shape[1]).mean(1).cpu())
        p = torch.cat(probs).numpy().astype(np.float64)
        total = p if total is None else total + p
    assert total is not None
    mean = (total / len(student["teachers"])).astype(np.float32)
    spec = ",".join(str(runs / t / "model.onnx") for t in student["teachers"])
    (runs / student["name"]).mkdir(parents=True, exist_ok=True)
    write_teacher_file(runs / student["name"] / TEACHER_TARGETS, mean, spec, train_ds.images)
    agree = float((mean.argmax(1) == train_ds.labels).mean())
    log(f"{student['name']}: teachers {', '.join(student['teachers'])} agree with {agree:.1%} of the labels")
    return spec


# --- the plan --------------------------------------------------------------------------------------


def start(cand: dict[str, Any], args: argparse.Namespace, threads: int) -> subprocess.Popen:
    options = {**cand["options"], "data": str(args.data), "device": args.device, "threads": threads}
    if args.epochs:
        options["epochs"] = args.epochs
    if cand.get("teachers"):
        options["teacher"] = teacher_cache({**cand, "options": options}, args.runs, args.device_name)
        options["distill"] = cand.get("distill", 0.5)
    cand["options_used"] = options
    (args.runs / cand["name"]).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "one", cand["name"], json.dumps(options), "--runs", str(args.runs)]
    log(f"start {cand['name']}: {json.dumps(cand['options'])}")
    with open(args.runs / cand["name"] / "train.log", "w") as logfile:  # the child keeps its own copy
        return subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)


def run_plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    plan: list[dict[str, Any]] = json.loads(args.plan.read_text())
    threads = max(1, (os.cpu_count() or 2) // args.parallel)
    deadline = time.time() + args.deadline_s if args.deadline_s else float("inf")
    waiting, running, t0 = list(plan), {}, time.time()
    while waiting or running:
        for name, (cand, proc) in list(running.items()):
            if proc.poll() is not None:
                cand["status"] = "done" if proc.returncode == 0 else f"failed ({proc.returncode})"
                cand["seconds"] = round(time.time() - cand["started"], 1)
                log(f"{name}: {cand['status']} after {cand['seconds']} s")
                del running[name]
        done = {c["name"] for c in plan if c.get("status") == "done"}
        failed = {c["name"] for c in plan if c.get("status", "done") != "done"} - {c["name"] for c in waiting}
        for cand in list(waiting):
            if len(running) >= args.parallel:
                break
            teachers = set(cand.get("teachers", []))
            if teachers & failed:
                cand["status"] = "skipped (a teacher failed)"
                waiting.remove(cand)
            elif teachers <= done:
                waiting.remove(cand)
                cand["started"] = time.time()
                running[cand["name"]] = (cand, start(cand, args, threads))
        if time.time() > deadline:
            for name, (cand, proc) in running.items():
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
                cand["status"], cand["seconds"] = "cut", round(time.time() - cand["started"], 1)
                log(f"{name}: cut at the deadline")
            for cand in waiting:
                cand["status"] = "not started (deadline)"
            break
        time.sleep(1)
    log(f"plan finished in {time.time() - t0:.0f} s")
    return plan


# --- packing ----------------------------------------------------------------------------------------


def compact(best_pt: Path) -> dict[str, Any]:
    """A best.pt with its float weights in fp16 (unpack restores fp32; the outputs stay within 0.01 of
    the fp32 run's, tests/test_candidates.py)."""
    import torch

    state = torch.load(best_pt, map_location="cpu", weights_only=False)
    state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    state["weights_dtype"] = "float16"
    return state


def read_history(runs: Path, name: str) -> list[dict[str, Any]]:
    """A candidate's metrics.json rows (none if it never finished an epoch)."""
    metrics = runs / name / "metrics.json"
    return json.loads(metrics.read_text()) if metrics.exists() else []


def saved_size(state: dict[str, Any]) -> int:
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getbuffer().nbytes


def parts(name: str, state: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
    """``state`` as one entry, or, when it is too big for a pack file, its weights cut into parts
    (NAME#partK/N; the first also holds the rest of the checkpoint, a few kB) of up to 14 MiB of
    tensors each (a single tensor larger than that would make a part of its own, over the limit: no
    net here has one; resnet18's largest is 4.7 MB). Each with its size saved."""
    size = saved_size(state)
    if size <= PACK_LIMIT:
        return [(name, state, size)]
    groups: list[dict[str, Any]] = [{}]
    size = 0
    for key, tensor in state["model"].items():
        nbytes = tensor.numel() * tensor.element_size()
        if size + nbytes > PACK_LIMIT - 2**20 and groups[-1]:  # a MiB left for pickling's overhead
            groups.append({})
            size = 0
        groups[-1][key] = tensor
        size += nbytes
    rest = {k: v for k, v in state.items() if k != "model"}
    pieces = [{**(rest if k == 1 else {}), "model": group} for k, group in enumerate(groups, 1)]
    return [(f"{name}{PART}{k}/{len(pieces)}", p, saved_size(p)) for k, p in enumerate(pieces, 1)]


def pack(plan: list[dict[str, Any]], histories: dict[str, list], runs: Path, out: Path) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    files: list[dict[str, Any]] = [{}]
    sizes = [0]
    for cand in plan:
        best = runs / cand["name"] / "best.pt"
        if not best.exists():
            continue
        state = compact(best)
        for entry, piece, size in parts(cand["name"], state):
            if sizes[-1] + size > PACK_LIMIT and files[-1]:
                files.append({})
                sizes.append(0)
            files[-1][entry] = piece
            sizes[-1] += size
        cand["best"] = state.get("best")
        cand["epochs_done"] = len(state.get("history", []))
    for i, group in enumerate(files, 1):
        if group:
            torch.save(group, out / f"candidates-{i}.pt")
    summary = []
    for cand in plan:
        logfile = runs / cand["name"] / "train.log"
        tail = logfile.read_text().splitlines()[-8:] if logfile.exists() else []
        summary.append({**cand, "history": histories[cand["name"]], "log_tail": tail})
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    packed = {entry.split(PART)[0] for group in files for entry in group}
    log(f"packed {len(packed)} candidates into {len([g for g in files if g])} file(s)")


def unpack(pack_files: list[Path], runs: Path) -> None:
    """candidates-*.pt -> RUNS/<name>/best.pt (fp32 weights), ready for `facial-emotion export`. A
    checkpoint in parts is put together again; one whose parts are not all given is an error."""
    import torch

    from facial_emotion.training.checkpoint import save_checkpoint

    states: dict[str, dict[str, Any]] = {}
    pieces: dict[str, dict[int, dict[str, Any]]] = {}
    counts: dict[str, int] = {}
    for pack_file in pack_files:
        for entry, state in torch.load(pack_file, map_location="cpu", weights_only=False).items():
            if PART not in entry:
                states[entry] = state
                continue
            name, k_of_n = entry.split(PART)
            k, n = map(int, k_of_n.split("/"))
            pieces.setdefault(name, {})[k] = state
            counts[name] = n
    for name, got in pieces.items():
        if sorted(got) != list(range(1, counts[name] + 1)):
            raise SystemExit(
                f"{name}: parts {sorted(got)} of {counts[name]} given; pass every candidates-*.pt"
            )
        states[name] = {
            **got[1],
            "model": {k: v for _, part in sorted(got.items()) for k, v in part["model"].items()},
        }
    for name, state in states.items():
        state["model"] = {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}
        state.pop("weights_dtype", None)
        (runs / name).mkdir(parents=True, exist_ok=True)
        save_checkpoint(state, runs / name / "best.pt")
        print(f"{runs / name / 'best.pt'}")


def table(plan: list[dict[str, Any]], histories: dict[str, list]) -> None:
    print(
        f"{'candidate':<22} {'status':<10} {'epochs':>6} {'best val':>8} {'at':>4} {'s/epoch':>7} {'img/s':>7}"
    )
    for cand in plan:
        history = histories[cand["name"]]
        best = (
            max((max(h.get("val_acc", 0), h.get("val_acc_ema", 0)), h["epoch"]) for h in history)
            if history
            else (0, 0)
        )
        wall = cand.get("seconds", 0) / max(1, len(history))
        ips = sum(h["img_per_s"] for h in history) / max(1, len(history))
        print(
            f"{cand['name']:<22} {cand.get('status', '?'):<10} {len(history):>6} {best[0]:>8.4f} "
            f"{best[1]:>4} {wall:>7.2f} {ips:>7.0f}"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "one":
        ap = argparse.ArgumentParser()
        ap.add_argument("cmd")
        ap.add_argument("name")
        ap.add_argument("options")
        ap.add_argument("--runs", type=Path, required=True)
        a = ap.parse_args()
        run_one(a.name, json.loads(a.options), a.runs)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "unpack":
        ap = argparse.ArgumentParser()
        ap.add_argument("cmd")
        ap.add_argument("packs", type=Path, nargs="+")
        ap.add_argument("--runs", type=Path, required=True)
        a = ap.parse_args()
        unpack(a.packs, a.runs)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--plan", type=Path, required=True)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--epochs", type=int, default=0, help="override every candidate's epochs (smoke run)")
    ap.add_argument("--deadline-s", type=float, default=0)
    ap.add_argument("--pack-to", type=Path)
    args = ap.parse_args()
    from facial_emotion.training.machine import resolve_device

    args.device_name = resolve_device(args.device)
    plan = run_plan(args)
    histories = {c["name"]: read_history(args.runs, c["name"]) for c in plan}
    table(plan, histories)
    if args.pack_to:
        pack(plan, histories, args.runs, args.pack_to)


if __name__ == "__main__":
    main()
