"""The training loop: data in memory as uint8 on the training device (CPU, or a CUDA GPU with
``--device cuda``), batched tensor augmentation on that device, SGD Nesterov one-cycle (or constant lr
with stochastic weight averaging), bf16 autocast where the device has native bf16 (AMX or AVX512-BF16
CPUs, GPUs from Ampere on), EMA weights, per-epoch validation, atomic checkpoints, ``--resume``, CSV/JSON
logs and curves, and ONNX export of the best weights at the end. The same recipe runs on either
device; on a GPU the loop never waits for it within an epoch (no per-step ``.item()``).

``train`` reads top to bottom: resume, data, targets, model, then for each epoch
``train_one_epoch``, ``validate``, save the checkpoints, log; then export."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, update_bn
from tqdm import tqdm

from facial_emotion.data import DatasetError, FaceDataset, load_dataset
from facial_emotion.labels import NUM_CLASSES, trained_classes
from facial_emotion.training.augment import augment, center_crop
from facial_emotion.training.checkpoint import (
    BEST,
    LAST,
    CheckpointError,
    TrainingState,
    load_checkpoint,
    load_resume_checkpoint,
    remove_stale_temp_files,
    save_checkpoint,
)
from facial_emotion.training.config import ConfigError, TrainConfig, resumed_config, teacher_paths
from facial_emotion.training.distill import attach_teacher, is_distilled
from facial_emotion.training.distributed import SINGLE, Distributed, close, from_environment
from facial_emotion.training.export import export_checkpoint
from facial_emotion.training.machine import resolve_device, resolve_precision, training_machine
from facial_emotion.training.nets import create_model
from facial_emotion.training.onnx_weights import weights_from_onnx
from facial_emotion.training.runlog import RunLog
from facial_emotion.training.transfer import carry_over_classes

log = logging.getLogger(__name__)


def default_splits(ds: FaceDataset) -> tuple[list[str], list[str]]:
    # in any case: a dataset packed before folder names were lower-cased may say Train/Test
    names = {n.lower(): n for n in ds.splits}
    for train, val in (("training", "publictest"), ("train", "test"), ("train", "val")):
        if train in names:
            return [names[train]], [names[val]] if val in names else []
    return sorted(ds.splits), []


HOLDOUT = "holdout"  # --val-split's name for the stratified 10 % of the training faces


def split_names(ds: FaceDataset, cfg: TrainConfig) -> tuple[list[str], list[str] | None]:
    """The splits a run trains on and validates on, as ``ds`` names them; validation None: none
    (``--val-split none``), []: 10 % of the training faces held out (the default where the data has
    no test split, or ``--val-split holdout``: the epoch is then chosen on faces no test holds, and
    the test split's figure is not flattered by it)."""
    train_names, val_names = default_splits(ds)
    if cfg.train_split:
        train_names = [s.strip() for s in cfg.train_split.split(",") if s.strip()]
        if not train_names:
            raise DatasetError(
                f"--train-split {cfg.train_split!r} names no split (available: {', '.join(ds.splits)})"
            )
    if cfg.val_split.strip().lower() == HOLDOUT and HOLDOUT not in {n.lower() for n in ds.splits}:
        val_names = []
    elif cfg.val_split:
        val_names = [s.strip() for s in cfg.val_split.split(",") if s.strip()]
    return ds.resolve_splits(*train_names), None if cfg.val_split == "none" else ds.resolve_splits(*val_names)


def split_dataset(ds: FaceDataset, cfg: TrainConfig) -> tuple[FaceDataset, FaceDataset | None]:
    train_names, val_names = split_names(ds, cfg)
    train = ds.select_split(*train_names)
    if val_names:
        val = ds.select_split(*val_names)
        shared = sorted(set(train.splits) & set(val.splits))
        if shared:  # validation on training faces would choose the epoch that memorised them best
            raise DatasetError(
                f"split {', '.join(shared)} would be trained on and validated on: give --val-split another "
                f"split (available: {', '.join(ds.splits)}), or none"
            )
        return train, val
    if val_names is None:
        return train, None
    # No validation split in the data: hold out a deterministic, stratified 10 % of training, at least
    # one face of each class that has two (a class of one face stays in training: held out, it would
    # never be learnt).
    rng = np.random.default_rng(cfg.seed)
    hold = np.zeros(len(train), dtype=bool)
    for c in np.unique(train.labels):
        idx = np.flatnonzero(train.labels == c)
        k = len(idx) // 10 if len(idx) >= 10 else min(1, len(idx) - 1)
        hold[rng.choice(idx, size=k, replace=False)] = True
    if hold.all() or not hold.any():
        return train, None
    return train.subset(~hold), train.subset(hold)


def limited(train: FaceDataset, cfg: TrainConfig) -> FaceDataset:
    """``--limit N``: N training faces drawn at random (seeded by the run's seed, so a resumed run
    draws the same), in their order; the first N of a folder dataset were one or two classes."""
    if not cfg.limit or cfg.limit >= len(train):
        return train
    keep = np.zeros(len(train), dtype=bool)
    keep[np.random.default_rng(cfg.seed + 7919).choice(len(train), size=cfg.limit, replace=False)] = True
    return train.subset(keep)


def build_targets(train: FaceDataset, cfg: TrainConfig, num_classes: int) -> torch.Tensor:
    """Soft targets per face: FER+ vote distributions with ``--labels ferplus``, else the labels
    with label smoothing (``attach_ferplus_mix`` may then blend in FER+ votes)."""
    if cfg.labels.startswith("ferplus") and train.soft is not None:
        return torch.from_numpy(train.soft.astype(np.float32))
    onehot = np.eye(num_classes, dtype=np.float32)[train.labels]
    return torch.from_numpy(onehot * (1 - cfg.label_smoothing) + cfg.label_smoothing / num_classes)


def attach_ferplus_mix(train: FaceDataset, targets: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """target = (1 - mix) * target + mix * FER+ vote distribution, for faces FER+ has votes for."""
    from facial_emotion.data.readers import FERPLUS_FILENAME, apply_ferplus

    votes_path = Path(cfg.data).parent / FERPLUS_FILENAME
    if train.rows is None or not votes_path.exists():
        raise DatasetError(f"--ferplus-mix needs a FER-2013 csv with {FERPLUS_FILENAME} beside it")
    voted = apply_ferplus(train, votes_path)  # checks that the files are row-aligned
    assert voted.rows is not None and voted.soft is not None
    position = {int(r): i for i, r in enumerate(train.rows)}
    idx = torch.tensor([position[int(r)] for r in voted.rows], dtype=torch.long)
    mixed = targets.clone()
    mixed[idx] = (1 - cfg.ferplus_mix) * targets[idx] + cfg.ferplus_mix * torch.from_numpy(voted.soft)
    return mixed


def used_splits(ds: FaceDataset, val: FaceDataset | None, cfg: TrainConfig) -> dict[str, str]:
    """The splits a run trained and chose its epoch on, as its model file reports them (the options
    read "" for the data's default, which says nothing once the file travels without its run).
    ``val``: the validation faces ``split_dataset`` gave (None: there were none)."""
    train_names, val_names = split_names(ds, cfg)
    if val is None:
        val_text = "none"
    elif not val_names:  # the stratified 10 % of the training faces (before any --limit)
        val_text = f"10 % of {','.join(sorted(train_names))} held out (seed {cfg.seed})"
    else:
        val_text = ",".join(sorted(val_names))
    return {"train": ",".join(sorted(train_names)), "val": val_text}


def faces_fingerprint(train: FaceDataset, val: FaceDataset | None) -> dict[str, Any]:
    """What a resumed run checks it trains on the same faces as before: counts and a hash of the
    training and validation faces and labels (other faces crashed the schedule or went on silently)."""
    h = hashlib.sha256()
    for part in (train, val):
        if part is not None:
            h.update(np.ascontiguousarray(part.images).tobytes())
            h.update(np.ascontiguousarray(part.labels).tobytes())
    return {"train": len(train), "val": 0 if val is None else len(val), "sha256": h.hexdigest()[:16]}


def check_same_faces(saved: dict[str, Any] | None, now: dict[str, Any]) -> None:
    if saved and saved != now:  # checkpoints from before the fingerprint carry none: not checked
        raise DatasetError(
            f"--resume: the data holds other faces than the run trained on ({now['train']} training and "
            f"{now['val']} validation faces now, {saved['train']} and {saved['val']} then, or the same "
            "counts with other faces): resume with the run's own faces, or start a new --out"
        )


def load_training_data(cfg: TrainConfig) -> tuple[FaceDataset, FaceDataset, FaceDataset | None]:
    """The whole dataset, its training faces (``cfg.limit`` of them drawn at random with the seed, if
    set) and validation faces."""
    ferplus = cfg.labels.startswith("ferplus")
    ds = load_dataset(
        cfg.data,
        labels="ferplus" if ferplus else cfg.labels,
        skip_bad=cfg.skip_bad,
        ferplus_classes=8 if cfg.labels == "ferplus8" else 7,
    )
    train_ds, val_ds = split_dataset(ds, cfg)
    train_ds = limited(train_ds, cfg)
    if len(train_ds) < cfg.batch_size:
        raise DatasetError(
            f"only {len(train_ds)} training faces; need at least one batch of {cfg.batch_size} "
            f"(pass a smaller --batch-size)"
        )
    return ds, train_ds, val_ds


def training_targets(train: FaceDataset, cfg: TrainConfig, num_classes: int, out: Path) -> torch.Tensor:
    """The soft target of every training face: labels, FER+ votes mixed in, teachers blended in."""
    targets = build_targets(train, cfg, num_classes)
    if cfg.ferplus_mix > 0:
        targets = attach_ferplus_mix(train, targets, cfg)
    if is_distilled(cfg):
        targets = attach_teacher(
            targets, train.images, cfg.teacher, cfg.distill, cfg.distill_temperature, out
        )
    if cfg.logit_adjust > 0 and (targets.mean(0) == 0).any():  # log(0): the loss would be NaN
        missing = torch.nonzero(targets.mean(0) == 0).flatten().tolist()
        absent = [train.class_names[i] if train.class_names else f"class {i}" for i in missing]
        raise DatasetError(
            f"--logit-adjust needs every class in the training targets; none for {', '.join(absent)} "
            "(use --label-smoothing > 0, or train without the class)"
        )
    return targets


def ema_with_warmup(decay: float):
    """EMA whose decay grows as (1 + n) / (10 + n) up to ``decay``: a plain 0.999 EMA keeps ~40 %
    of the random initial weights for the first few epochs and predicts one class (seen here).
    AveragedModel calls it once per device and dtype with all the tensors of that group; the decay is
    computed on the device, so a GPU run does not wait for the step counter every step."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():  # BatchNorm's batch counters
            torch._foreach_copy_(averaged, current)
            return
        n = num_averaged.to(averaged[0].dtype)
        d = torch.clamp((1 + n) / (10 + n), max=decay)
        torch._foreach_mul_(averaged, d)
        torch._foreach_add_(averaged, torch._foreach_mul(current, 1 - d))

    return update


@torch.no_grad()
def evaluate_torch(
    model: torch.nn.Module, val: FaceDataset, crop: int, autocast: bool, batch: int = 512
) -> tuple[float, float]:
    model.eval()
    device = next(model.parameters()).device
    correct = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    images = torch.from_numpy(val.images).to(device)
    labels = torch.from_numpy(val.labels).to(device)
    for i in range(0, len(val), batch):
        x = center_crop(images[i : i + batch], crop).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x).float()
        y = labels[i : i + batch]
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    return correct.item() / len(val), loss_sum.item() / len(val)


def initial_weights(cfg: TrainConfig, num_classes: int, images: torch.Tensor) -> dict[str, Any]:
    """The weights of ``cfg.init_from`` (a checkpoint, or one of our ONNX model files, whose BatchNorm
    statistics are measured on the first training ``images``), checked to fit ``cfg.arch``; trained
    for other classes (FER-2013's seven for a FER+ run), its head's rows follow the class names."""
    if Path(cfg.init_from).suffix == ".onnx":
        weights, have = weights_from_onnx(Path(cfg.init_from), cfg.arch, images[:2048], cfg.augment.crop)
    else:
        state = load_checkpoint(Path(cfg.init_from))
        arch = state["config"].get("arch")
        if arch != cfg.arch:
            raise CheckpointError(f"--init-from {cfg.init_from}: a {arch} model, this run trains {cfg.arch}")
        weights, have = state["model"], list(trained_classes(state.get("num_classes", NUM_CLASSES)))
    return carry_over_classes(weights, cfg.arch, have, trained_classes(num_classes))


def build_training(
    cfg: TrainConfig,
    num_classes: int,
    steps_per_epoch: int,
    init: dict[str, Any] | None = None,
    device: str = "cpu",
) -> tuple[Any, Any, Any, Any]:
    """Model (channels_last on ``device``, from ``init`` weights if given), EMA copy, SGD Nesterov (no
    weight decay on norms and biases), one-cycle or (schedule "swa") constant learning rate."""
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.arch, num_classes)
    if init is not None:
        model.load_state_dict(init)
    model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    ema = (
        AveragedModel(model, multi_avg_fn=ema_with_warmup(cfg.ema_decay), use_buffers=True)
        if cfg.ema_decay
        else None
    )
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=True,
    )
    if cfg.schedule == "swa":
        scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 1.0
        )
        return model, ema, optimizer, scheduler
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=cfg.lr,
        total_steps=cfg.epochs * steps_per_epoch,
        pct_start=0.15,
        div_factor=20,
        final_div_factor=500,
        base_momentum=0.85,
        max_momentum=cfg.momentum,
    )
    return model, ema, optimizer, scheduler


def build_state(
    cfg: TrainConfig,
    num_classes: int,
    images: torch.Tensor,
    precision: str,
    resumed: bool,
    device: str = "cpu",
) -> TrainingState:
    """``build_training`` plus the SWA average of a "swa" schedule, ready to train or to restore.
    ``images``: the training faces in host memory (an ONNX ``--init-from`` measures BatchNorm on them)."""
    # A resumed run takes its weights from its own checkpoint, not from --init-from.
    init = initial_weights(cfg, num_classes, images) if cfg.init_from and not resumed else None
    steps_per_epoch = len(images) // cfg.batch_size
    model, ema, optimizer, scheduler = build_training(cfg, num_classes, steps_per_epoch, init, device)
    swa = AveragedModel(model, use_buffers=False) if cfg.schedule == "swa" else None
    machine = training_machine(precision, device)
    return TrainingState(cfg, num_classes, machine, model, ema, swa, optimizer, scheduler)


SWA_BN_FACES = 4096  # training faces that re-estimate the averaged weights' BatchNorm statistics


def swa_update(swa: AveragedModel, model: torch.nn.Module, images: torch.Tensor, cfg: TrainConfig) -> None:
    """Add ``model``'s weights to the average, then re-estimate its BatchNorm statistics (averaged
    weights need their own) on a fixed set of training faces, center-cropped and half of them flipped
    as at test time: statistics of augmented faces (erased patches, rotation borders) cost the
    built-in model 1.0 point of PublicTest accuracy, clean ones 0.1 (measured here)."""
    swa.update_parameters(model)
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + 99_991)
    idx = torch.randperm(len(images), generator=gen)[:SWA_BN_FACES]
    faces = center_crop(images[idx.to(images.device)], cfg.augment.crop)
    flip = (torch.rand(len(faces), generator=gen) < 0.5).to(images.device)
    faces[flip] = faces[flip].flip(3)
    update_bn(
        [
            faces[i : i + cfg.batch_size].contiguous(memory_format=torch.channels_last)
            for i in range(0, len(faces), cfg.batch_size)
        ],
        swa.module,
    )


def train_step(
    model,
    ema,
    optimizer,
    scheduler,
    x: torch.Tensor,
    y: torch.Tensor,
    autocast: bool,
    logit_offset: torch.Tensor | None = None,
):
    """One optimisation step on soft targets ``y``; ``logit_offset`` (tau * log prior, per class) is
    added to the logits inside the loss only. Returns (loss, logits)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(x)
    adjusted = logits.float() if logit_offset is None else logits.float() + logit_offset
    loss = torch.sum(-y * F.log_softmax(adjusted, dim=1), dim=1).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    if ema is not None:
        ema.update_parameters(model)
    return loss, logits


def mix_up(
    x: torch.Tensor, y: torch.Tensor, alpha: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend every face and its target with another face of the batch by one Beta(alpha, alpha) weight."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())  # from torch's seed, not ``gen``
    perm = torch.randperm(len(x), generator=gen, device=gen.device)
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def train_one_epoch(
    state: TrainingState,
    epoch: int,
    images: torch.Tensor,
    targets: torch.Tensor,
    autocast: bool,
    progress: bool,
    net: torch.nn.Module | None = None,
    dist: Distributed = SINGLE,
) -> dict[str, Any]:
    """One pass over the training faces in random order, augmented (and mixed up); then a "swa"
    schedule averages the weights. Returns the epoch's metrics row, validation not yet in it.
    Under torchrun ``net`` is the model's DistributedDataParallel wrapper and this rank trains on
    its share of every batch (training/distributed.py)."""
    cfg, model = state.cfg, state.model
    # Every random draw of an epoch comes from generators seeded by (seed, epoch): a resumed
    # run repeats exactly what the uninterrupted run would have done. All ranks draw the same
    # order; each augments its share with its own generator.
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    order = torch.randperm(len(images), generator=gen)
    if dist.world > 1:
        gen = torch.Generator().manual_seed(dist.generator_seed(cfg.seed * 100_003 + epoch))
    if images.device.type != "cpu":  # augmentation draws on the GPU, from a generator seeded alike
        gen = torch.Generator(images.device).manual_seed(gen.initial_seed())
    torch.manual_seed(dist.generator_seed(cfg.seed * 100_003 + epoch))
    # Logit adjustment: the prior is the training targets' mean (labels, votes and teachers as blended).
    logit_offset = cfg.logit_adjust * torch.log(targets.mean(0)) if cfg.logit_adjust > 0 else None
    model.train()
    # Durations on a clock that neither jumps with the wall clock nor counts a suspended laptop.
    t0 = time.monotonic()
    # Running sums stay on the device: reading them every step would make a GPU wait for each step.
    seen = 0
    loss_sum = torch.zeros((), dtype=torch.float64, device=images.device)
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    bar = tqdm(
        range(len(images) // cfg.batch_size),
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        disable=not progress,
        leave=False,
        unit="batch",
    )
    for step in bar:
        idx = dist.shard(order[step * cfg.batch_size : (step + 1) * cfg.batch_size]).to(images.device)
        x = augment(images[idx], cfg.augment, gen).contiguous(memory_format=torch.channels_last)
        y = targets[idx]
        if cfg.mixup > 0:
            x, y = mix_up(x, y, cfg.mixup, gen)
        loss, logits = train_step(
            net or model, state.ema, state.optimizer, state.scheduler, x, y, autocast, logit_offset
        )
        seen += len(idx)
        loss_sum += loss.detach() * len(idx)
        correct += (logits.argmax(1) == y.argmax(1)).sum()
        if progress and step % 10 == 0:
            bar.set_postfix(
                loss=f"{loss_sum.item() / seen:.3f}",
                acc=f"{correct.item() / seen:.3f}",
                img_s=f"{seen / (time.monotonic() - t0):.0f}",
            )
    bar.close()
    loss_total, correct_total = loss_sum.item(), int(correct.item())  # waits for the epoch's last step
    epoch_s = time.monotonic() - t0  # the training steps only: the speed figure
    if dist.world > 1:  # the epoch's figures over every rank's faces
        total_seen, loss_total, total_correct = dist.sum([seen, loss_total, correct_total])
        seen, correct_total = int(total_seen), int(total_correct)
    if state.swa is not None:
        swa_update(state.swa, model, images, cfg)
    return {
        "epoch": epoch + 1,
        "lr": round(float(state.scheduler.get_last_lr()[0]), 6),
        "train_loss": round(loss_total / seen, 4),
        "train_acc": round(correct_total / seen, 4),
        "img_per_s": round(seen / epoch_s, 1),
        "epoch_s": round(epoch_s, 1),
    }


def validate(
    state: TrainingState, epoch: int, val: FaceDataset | None, autocast: bool
) -> tuple[dict[str, Any], float, str]:
    """Validation accuracy of the weights and of their EMA and SWA averages. Returns the metrics row's
    validation fields, the best accuracy and which weights have it ("model", "ema" or "swa")."""
    cfg = state.cfg
    if val is None:  # nothing to measure: every epoch's averaged weights replace the last (see train)
        return {}, -math.inf, "swa" if state.swa is not None else "ema" if state.ema is not None else "model"
    acc, loss = evaluate_torch(state.model, val, cfg.augment.crop, autocast)
    fields = {"val_loss": round(loss, 4), "val_acc": round(acc, 4)}
    which = "model"
    for name, averaged in (("ema", state.ema), ("swa", state.swa)):
        if averaged is not None:
            averaged_acc, _ = evaluate_torch(averaged.module, val, cfg.augment.crop, autocast)
            fields[f"val_acc_{name}"] = round(averaged_acc, 4)
            if averaged_acc > acc:
                acc, which = averaged_acc, name
    return fields, acc, which


def absolute(path: str) -> str:
    """``path`` from the root (``~`` expanded, links kept as named), "" as it is."""
    return os.path.abspath(os.path.expanduser(path)) if path else path


def stored_files(init_from: str, teacher: str) -> dict[str, str]:
    """A run's ``--init-from`` and ``--teacher`` files as its checkpoint keeps them: absolute, so that a
    resumed run reads them from any folder (and the same file given relative is no clash)."""
    return {
        "init_from": absolute(init_from),
        "teacher": ",".join(absolute(str(t)) for t in teacher_paths(teacher)),
    }


def train(
    cfg: TrainConfig,
    out: Path,
    resume: bool = False,
    progress: bool = True,
    device_override: str = "",
    asked: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train, checkpoint every epoch, export the best weights to ``out/model.onnx``; returns a summary.
    Under torchrun every rank trains, rank 0 alone validates, writes and exports. ``device_override``
    moves a resumed run to another device (a run begun on a GPU goes on on the CPU, say); ``asked``:
    the options the user gave, which a resumed run checks against its recipe (``resumed_config``)."""
    dist = from_environment()
    last = None
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: name the run's folder")
    if (out / BEST).exists() and not (out / LAST).exists():
        # A run killed between its first epoch's two checkpoints, or one whose last.pt was deleted
        # to save space: its best.pt is kept, and there is nothing to resume.
        raise ConfigError(
            f"--out {out} holds {BEST} but no {LAST}, so there is nothing to resume: name another --out "
            "(or delete that folder) to start a new run"
        )
    if not resume and (out / LAST).exists():
        # Refused before anything in it is touched: it may be a run still going.
        raise ConfigError(
            f"--out {out} holds a run already ({LAST}, {BEST}): --resume to continue it, or name "
            "another --out (or delete that folder) to start a new one"
        )
    if out.is_dir():
        remove_stale_temp_files(out)  # left by a run killed while writing a checkpoint
    if resume:
        if not (out / LAST).exists():
            raise DatasetError(f"--resume: no checkpoint {out / LAST}")
        last = load_resume_checkpoint(out)  # falls back to last.prev.pt if last.pt is damaged
        asked = dict(
            asked or {}
        )  # its files as the run stores them (the command that began it, --resume added)
        files = stored_files(asked.get("init_from", ""), asked.get("teacher", ""))
        asked.update({k: v for k, v in files.items() if asked.get(k)})
        cfg = resumed_config(last["config"], asked)  # the run goes on as it began
        if last["epoch"] + 1 >= cfg.epochs and (out / "model.onnx").is_file():
            # Nothing to continue: exporting again would replace model.onnx (and the calibration
            # `calibrate` may have written into it) with the same weights.
            log.info(
                "%s had finished all %d epochs: its model.onnx is kept as it is (made again from best.pt "
                "by `facial-emotion export %s --out FILE`)",
                out,
                cfg.epochs,
                out / BEST,
            )
            return {
                "out": str(out),
                "best": last["best"] if dist.main else None,
                "epochs": len(last.get("history", [])),
                "model": str(out / "model.onnx"),
            }
        log.info("resuming %s after epoch %d of %d", out, last["epoch"] + 1, cfg.epochs)
        if cfg.data and not Path(cfg.data).expanduser().exists():
            raise ConfigError(
                f"--resume: the run's faces ({cfg.data}) are not there (moved, or a path relative to where "
                "the run was started); give --data PATH to the same faces"
            )
        cfg = replace(cfg, data=absolute(cfg.data))  # a --data given now, or a run from before: absolute
    else:  # paths the run reads again when resumed, from any folder: absolute
        files = stored_files(cfg.init_from, cfg.teacher)
        cfg = replace(cfg, data=absolute(cfg.data), init_from=files["init_from"], teacher=files["teacher"])
    cfg.validate(resumed=last is not None)
    if cfg.batch_size % dist.world:
        raise ConfigError(f"--batch-size {cfg.batch_size} must divide evenly over {dist.world} processes")
    try:
        device = resolve_device(device_override or cfg.device)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    precision = resolve_precision(cfg.precision, device)
    autocast = precision == "bf16"

    try:
        ds, train_ds, val_ds = load_training_data(cfg)
        faces = faces_fingerprint(train_ds, val_ds)
        check_same_faces(last.get("faces") if last is not None else None, faces)
        targets = training_targets(train_ds, cfg, ds.num_classes, out).to(device)
    except Exception:
        with contextlib.suppress(OSError):  # another rank may have removed it first
            if created and not any(out.iterdir()):
                out.rmdir()  # a run that failed before it wrote anything leaves no empty folder behind
        raise
    host_images = torch.from_numpy(train_ds.images)
    state = build_state(cfg, ds.num_classes, host_images, precision, resumed=last is not None, device=device)
    state.splits, state.faces = used_splits(ds, val_ds, cfg), faces
    images = host_images.to(device)
    start_epoch = state.restore(last) if last is not None else 0
    net = dist.wrap(state.model)  # after restore: DDP starts every rank from rank 0's weights
    runlog = RunLog(out, cfg.epochs)
    if dist.main:
        runlog.start(cfg.arch, train_ds, val_ds, precision)

    for epoch in range(start_epoch, cfg.epochs):
        runlog.start_epoch()
        row = train_one_epoch(state, epoch, images, targets, autocast, progress and dist.main, net, dist)
        if not dist.main:
            continue  # the other ranks go straight on to the next epoch's first step
        fields, acc, which = validate(state, epoch, val_ds, autocast)
        state.history.append(row | fields)
        # Without validation faces every epoch counts as best: its weights replace the last ones.
        improved = val_ds is None or acc > state.best["val_acc"]
        if improved:  # no validation faces: no accuracy to record (the model's metadata says null)
            state.best = {"val_acc": None if val_ds is None else acc, "epoch": epoch + 1, "weights": which}
            save_checkpoint(state.best_checkpoint(), out / BEST)
        save_checkpoint(state.last_checkpoint(epoch), out / LAST)
        runlog.end_epoch(state.history, improved)

    if not dist.main:
        close(dist)
        return {"out": str(out), "best": None, "rank": dist.rank}
    export_checkpoint(out / BEST, out / "model.onnx", history=state.history)
    close(dist)
    return {
        "out": str(out),
        "best": state.best,
        "epochs": len(state.history),
        "model": str(out / "model.onnx"),
    }
