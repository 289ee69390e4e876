"""Rewrite the figures in README.md from benchmarks/results/*.json, so the README never drifts from
what the benchmarks measured. Each section sits between `<!-- results:NAME -->` and
`<!-- /results:NAME -->`; a section whose JSON is missing is left as it is.

    python benchmarks/update_readme.py              # every section
    python benchmarks/update_readme.py memory soak  # these sections only
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def _duration(seconds: float) -> str:
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def _stage(s: dict) -> str:
    """One training stage in words: schedule, and time, speed and machine where recorded."""
    r = s["recipe"]
    if r.get("schedule", "onecycle") == "swa":
        text = f"{r['epochs']} epochs of stochastic weight averaging (SWA) at constant lr {r['lr']}"
    else:
        text = f"{r['epochs']} epochs, one-cycle schedule at max lr {r['lr']}"
    if r.get("mixup"):
        text += f" with mixup {r['mixup']}"
    if r.get("init_from"):
        text += " from the previous stage's weights"
    if "train_seconds" in s:
        where = f" on {s['machine']}" if "machine" in s else ""
        text += f" ({_duration(s['train_seconds'])} at {s['train_img_per_s']:.0f} img/s{where})"
    return text


def _teachers(m: dict) -> str:
    """Distillation in words: the weight, and each teacher's training and time."""
    teachers = m.get("teachers") or []
    if not teachers:
        return ""
    parts = []
    for t in teachers:
        stages = t["stages"]
        parts.append(f"`{stages[-1]['recipe']['arch']}`, " + "; then ".join(_stage(s) for s in stages))
    own = m.get("train_seconds", 0)
    total = own + sum(s.get("train_seconds", 0) for t in teachers for s in t["stages"])
    who = "a teacher model" if len(teachers) == 1 else f"{len(teachers)} teacher models (averaged)"
    return (
        f" Its targets blend the labels (weight {1 - m['recipe']['distill']:.1f}) with the ten-crop"
        f" predictions (weight {m['recipe']['distill']}) of {who} trained first on the"
        f" same faces: {'; '.join(parts)}. Training took {_duration(total)} in all, teachers included."
    )


def _quantized(m: dict) -> str:
    """Int8 static quantization in words (`facial-emotion quantize`), with accuracy before and after."""
    q = m.get("quantized")
    if not isinstance(q, dict):  # "none", or "int8" for the dynamic quantization of `export --int8`
        return ""
    c, a = q["calibration"], q.get("accuracy")
    text = (
        f" The file is int8: static quantization (onnxruntime QDQ; weights {q['weights']}; activations"
        f" {q['activations']}, {q['method']} ranges from {c['faces']:,} {c['split']} faces)"
    )
    if a:
        text += (
            f"; {a['split']} {a['before']:.2%} -> {a['after']:.2%} centre crop, {a['before_tta']:.2%} -> "
            f"{a['after_tta']:.2%} ten-crop against the fp32 file it was made from (`--model fp32`)"
        )
    return text + "."


def _ensemble(acc: dict) -> str:
    """The built-in ensemble in words: its members and how they were trained."""
    e = (acc.get("models") or {}).get("ensemble")
    if not e:
        return ""
    members = ", ".join(
        f"`{x['arch']}` ({x['epochs']} epochs, {x.get('train_machine', 'machine not recorded')})"
        for x in e["members"]
    )
    return (
        f" The `ensemble` built-in averages the probabilities of {len(e['members'])} nets inside one int8 graph"
        f" (`facial-emotion ensemble`): {members}."
    )


def accuracy(acc: dict) -> str:
    m = acc["model"]
    rec = m["recipe"]
    stages = m.get("stages") or [
        {
            "recipe": rec,
            **({"machine": m["train_machine"]} if "train_machine" in m else {}),
            **{k: m[k] for k in ("train_seconds", "train_img_per_s") if k in m},
        }
    ]
    trained = ""
    if "train_seconds" in m and len(stages) > 1:
        trained = f" Training took {_duration(m['train_seconds'])} in all."
    lines = [
        f"Default model: `{m['arch']}` ({m['parameters'] / 1e6:.1f} M parameters), trained on FER-2013 "
        f"Training only: {'; then '.join(_stage(s) for s in stages)}. Best epoch {m['best_epoch']}"
        f"{' of the last stage' if len(stages) > 1 else ''} ({m['weights']} weights), "
        f"exported {m['date']}. PublicTest picked the best epoch (and the model among the candidates of "
        f"docs/training.md); PrivateTest was never seen."
        f"{trained}{_teachers(m)}{_quantized(m)} Recipe: `scripts/train_builtin.sh` (SGD Nesterov, "
        f"weight decay {rec['weight_decay']}, label smoothing {rec['label_smoothing']}, batch {rec['batch_size']}, "
        f"{rec['augment']['crop']}x{rec['augment']['crop']} crops, flip / rotation / scale / shift / random "
        f"erasing on tensors, EMA {rec['ema_decay']}, FER+ vote mix {rec['ferplus_mix']}).{_ensemble(acc)}",
        "",
        acc["markdown"],
        "",
        "Reproduce: `python benchmarks/accuracy.py` (writes `benchmarks/results/accuracy.json` and the report "
        "in [docs/report](docs/report/report.md)), or for one split: `facial-emotion evaluate --data "
        "../shared/datasets/fer2013/fer2013.csv.gz --split PublicTest --json`.",
        "",
        "![confusion matrix](docs/report/confusion_matrix_normalized.png)",
    ]
    return "\n".join(lines)


def speed(s: dict) -> str:
    m = s["machine"]
    lines = [
        f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores), onnxruntime {m['onnxruntime']}, "
        f"OpenCV {m['opencv']}, commit `{m['commit']}`. Reproduce: `python benchmarks/speed.py`.",
        "",
        "| classifier, faces/s | batch 1 | batch 64 | batch 1, ten-crop TTA | batch 64, TTA |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    # Every classifier section speed.py measured, in its order: the model in use (the built-in int8 one),
    # then the built-in models by name (results from before these shipped have no such rows).
    for section in [k for k in s if k.startswith("classifier")]:
        rows = s[section]
        name = section.removeprefix("classifier").removeprefix("_")
        label = (f", `{m[section + '_model']}`" if section + "_model" in m else "") + (
            f" (`--model {name}`)" if name else ""
        )
        for t in (1, 2) if rows else ():
            lines.append(
                f"| {t} thread{'s' if t > 1 else ''}{label} | {rows[f'threads={t} batch=1']:.0f} | "
                f"{rows[f'threads={t} batch=64']:.0f} | {rows[f'threads={t} batch=1 tta']:.0f} | "
                f"{rows[f'threads={t} batch=64 tta']:.0f} |"
            )
    lines += ["", "| end to end, 1 thread | fps | faces |", "| --- | ---: | ---: |"]
    for key, r in s["end_to_end"].items():
        lines.append(f"| {key} | {r['fps']:.1f} | {r.get('faces', r.get('frames_with_face'))} |")
    v = s["video_720p_60s"]
    lines += [
        "",
        f"A one-minute 720p video ({v['frames']} frames, `facial-emotion video` defaults: every frame "
        f"analysed, a full BlazeFace search every {v.get('detect_every', 1)} frame(s)): "
        f"**{v['seconds']:.1f} s, "
        f"{v['x_realtime']:.1f}x faster than real time** ({v['fps']:.0f} fps, 1 thread).",
    ]
    c = s.get("video_720p_60s_annotated_copy")
    if c:
        lines[-1] += (
            f" With an annotated copy (`--out copy.mp4`, {c['codec']}, the encoder on its own threads): "
            f"{c['seconds']:.1f} s, {c['x_realtime']:.1f}x real time, a {c['copy_mb']:.0f} MB file."
        )
    det = RESULTS / "detectors.md"
    if det.exists():
        lines += [
            "",
            "Face detectors on the sample media (`python benchmarks/detectors.py`; faces found, the "
            "median of five calls per photo after a warm-up and the mean per video frame, 1 thread). BlazeFace (full-range, tiles for group photos) is the default: "
            "the right count on every photo, every face of the made-up group photo, exactly one face in "
            "every frame of woman2.mp4, a few ms a frame. Haar stays as an option. YuNet needs a model "
            "file that no package registry ships, so it is not measured here.",
            "",
            det.read_text().strip(),
        ]
    return "\n".join(lines)


def _cores(machine: dict) -> str:
    """'2 cores' (results before describe_machine() recorded "cpus" only) or '2 AMD EPYC cores'."""
    cores = machine.get("cores", machine.get("cpus"))
    return f"{cores} {machine['cpu']} cores" if "cpu" in machine else f"{cores} cores"


def load_test(r: dict) -> str:
    return (
        f"Load test (`python benchmarks/load_service.py`, {r['date']}): {r['requests']:,} requests of "
        f"`{r['image']}` ({r['faces_per_image']} face) from {r['concurrency']} concurrent clients on loopback, "
        f"{_cores(r['machine'])} shared by server and clients, model `{r['model'].get('arch')}` of {r['model'].get('date')}: "
        f"**{r['errors']} errors**, {r['requests_per_s']:.1f} requests/s, "
        f"latency p50 {r['p50_ms']:.0f} ms / p99 {r['p99_ms']:.0f} ms (the server is CPU-bound, so with "
        f"{r['concurrency']} clients waiting each request queues behind the others: latency = clients / throughput), server "
        f"memory {r['server_rss_mb_before']:.0f} MB before, {r['server_rss_mb_after']:.0f} MB after."
    )


def memory(r: dict) -> str:
    peak = r["rss_mb_peak"]
    return (
        f"Memory under huge uploads (`python benchmarks/memory_service.py`, {r['date']}, {_cores(r['machine'])}): "
        f"{r['rounds']} rounds of {r['concurrency']} concurrent POSTs of an {r['image']} "
        f"({r['image_bytes'] / 1e6:.1f} MB, {r['faces_found']} faces found; statuses {r['statuses']}). Server RSS "
        f"**{r['rss_mb_baseline']:.0f} MB before, {peak:.0f} MB at the peak, {r['rss_mb_after']:.0f} MB after** "
        f"(targets: peak <= {r['peak_target_mb']} MB, after within 10 % of before). Before this budget the same load "
        "took the server from 430 MB to 2.3 GB, and 1.41 GB stayed resident."
    )


def soak(r: dict) -> str:
    lat = r["latency_ms"]
    return (
        f"Soak (`python benchmarks/soak_service.py --duration {r['duration_s']:g}`, {r['date']}, "
        f"{_cores(r['machine'])} shared by server and clients): {r['http_clients']} HTTP clients (70 % good photos, "
        f"20 % bad files, 10 % 8000 px JPEGs) and {r['ws_clients']} WebSocket clients streaming at 5 frames/s for "
        f"{r['duration_s']:g} s: {r['requests']:,} requests, {sum(r['ws_replies'].values()):,} stream "
        f"replies, **{r['unexpected_errors']} unexpected errors**; latency p50/p99 good {lat['good']['p50']:.0f}/"
        f"{lat['good']['p99']:.0f} ms, huge {lat['huge']['p50']:.0f}/{lat['huge']['p99']:.0f} ms, stream "
        f"{lat['ws']['p50']:.0f}/{lat['ws']['p99']:.0f} ms (CPU-bound: clients queue behind each other); server RSS "
        f"{r['rss_mb_baseline']:.0f} MB after warm-up, {r['rss_mb_end']:.0f} MB at the end "
        f"(**{r['rss_growth_after_warmup']:+.1%}**), {r['rss_mb_max']:.0f} MB at most. "
        "![RSS over the soak](benchmarks/results/soak_service.png)"
    )


def fuzz(r: dict) -> str:
    rows = "\n".join(
        f"| {target} | {sum(outcomes.values()):,} | "
        + ", ".join(f"{k} {v:,}" for k, v in outcomes.items())
        + " |"
        for target, outcomes in r["outcomes"].items()
    )
    return (
        f"Long fuzz run (`FUZZ_SCALE={r['scale']} pytest -m fuzz tests/test_fuzz.py`, seed {r['seed']}, "
        f"{r.get('date', 'undated')}; the figures are copied from $FACIAL_EMOTION_ARTIFACTS/fuzz.json): "
        f"**{r['cases']:,} cases in {r['seconds']:.0f} s, {r['unexpected']} unexpected outcomes** (no traceback, "
        "only documented exit codes and statuses, good inputs of each batch still reported, the server healthy "
        "after).\n\n| target | cases | outcomes |\n| --- | ---: | --- |\n" + rows
    )


# README section -> (results file, how to render it); a .md result is pasted as it is.
SECTIONS: dict[str, tuple[str, Callable[[dict], str] | None]] = {
    "accuracy": ("accuracy.json", accuracy),
    "speed": ("speed.json", speed),
    "load": ("load_service.json", load_test),
    "memory": ("memory_service.json", memory),
    "soak": ("soak_service.json", soak),
    "fuzz": ("fuzz.json", fuzz),
    "compare": ("compare_fer.md", None),
    "batch_scale": ("batch_scale.md", None),
    "calibration": ("calibration.md", None),
}


def main(names: list[str]) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    unknown = set(names) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    for name, (file, render) in SECTIONS.items():
        if names and name not in names:
            continue
        path = RESULTS / file
        body = None
        if path.exists():
            body = render(json.loads(path.read_text())) if render else path.read_text().strip()
        pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(\n<!-- /results:{name} -->)", re.S)
        if body is None or not pattern.search(text):
            print(f"{name}: left as it is")
            continue
        text = pattern.sub(lambda m, b=body: m.group(1) + b + m.group(2), text)
        print(f"{name}: updated")
    tmp = readme.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(readme)


if __name__ == "__main__":
    main(sys.argv[1:])
