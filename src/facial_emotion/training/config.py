"""Everything that defines a training run, saved in every checkpoint and in the exported model."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from facial_emotion.training.augment import AugmentConfig
from facial_emotion.training.machine import DEVICES
from facial_emotion.training.nets import ARCHITECTURES


class ConfigError(ValueError):
    """A training run asked for something it cannot do; the messages name the command-line options."""


def teacher_paths(spec: str) -> list[Path]:
    """The model files of a ``--teacher`` comma list."""
    return [Path(p.strip()) for p in spec.split(",") if p.strip()]


@dataclass
class TrainConfig:
    data: str = ""
    # fer2013 | ferplus (train on the FER+ vote distributions, 7 classes) | ferplus8 (with contempt)
    labels: str = "fer2013"
    ferplus_mix: float = 0.0  # >0: target = (1-mix) * one-hot FER-2013 label + mix * FER+ votes
    # >0: class-balanced loss by logit adjustment (Menon et al. 2021): the loss sees logits + tau *
    # log(class prior), so the net's own logits learn the faces without FER-2013's 16:1 class ratio
    # (disgust 1.5 %, happy 25 %); vector-scaling calibration refits the prior's biases afterwards.
    logit_adjust: float = 0.0
    # comma list of ONNX model files to distil from (their ten-crop probabilities), or of teacher
    # probabilities files (.npz, distill.write_teacher_file) computed before for the same faces
    teacher: str = ""
    distill: float = 0.0  # target = (1-distill) * label target + distill * teacher probabilities
    distill_temperature: float = 1.0  # > 1 softens the teacher probabilities
    train_split: str = ""  # comma list; default Training / train / all-but-validation
    val_split: str = ""  # default PublicTest / test / a 10 % hold-out of the training split; holdout; none
    # Defaults = the built-in model's recipe (scripts/train_builtin.sh spells it out; it was trained on a
    # GPU with seed 3, docs/training.md).
    arch: str = "resnet-m"
    epochs: int = 140
    batch_size: int = 256
    lr: float = 0.2
    weight_decay: float = 5e-4
    momentum: float = 0.95  # peak momentum; the one-cycle schedule cycles it from 0.85 to this and back
    # onecycle: SGD one-cycle up to lr. swa: constant lr and momentum, the weights averaged at the end of
    # every epoch (stochastic weight averaging) with BatchNorm re-estimated; for a stage after --init-from.
    schedule: str = "onecycle"
    label_smoothing: float = 0.1
    mixup: float = 0.2  # Beta(a, a); 0 = off
    ema_decay: float = 0.999  # 0 = off
    precision: str = "auto"  # auto | bf16 | fp32
    device: str = "auto"  # auto (a CUDA GPU where torch sees one) | cpu | cuda
    seed: int = 0
    threads: int = 0  # 0 = torch default
    skip_bad: bool = False  # skip malformed csv rows instead of stopping at the first
    limit: int = 0  # use only N training faces, drawn at random with the seed (tests, smoke runs)
    init_from: str = ""  # checkpoint (.pt) or model file (.onnx) whose weights start the run
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def validate(self, resumed: bool = False) -> None:
        """ConfigError unless every value is in range and every file the run reads exists; called
        before a run touches any data. A resumed run takes its weights from its own checkpoint and
        its teachers' probabilities from its folder, so its ``init_from`` and ``teacher`` files need
        not exist any more."""
        numbers = {k: v for k, v in asdict(self).items() if isinstance(v, float)}
        broken = [f"{option_name(k)} {v}" for k, v in numbers.items() if not math.isfinite(v)]
        if broken:
            raise ConfigError(f"{', '.join(broken)}: must be a finite number")
        if self.arch not in ARCHITECTURES:
            raise ConfigError(
                f"unknown architecture {self.arch!r}; choose from {', '.join(sorted(ARCHITECTURES))}"
            )
        if self.labels not in ("fer2013", "ferplus", "ferplus8"):
            raise ConfigError(f"unknown --labels {self.labels!r}; choose from fer2013, ferplus, ferplus8")
        if self.device not in DEVICES:
            raise ConfigError(f"unknown --device {self.device!r}; choose from {', '.join(DEVICES)}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.threads < 0:
            raise ConfigError("--epochs, --batch-size and --lr must be positive, --threads not negative")
        if not (0 <= self.ferplus_mix <= 1 and 0 <= self.label_smoothing < 1 and 0 <= self.ema_decay < 1):
            raise ConfigError("--ferplus-mix must be in 0..1, --label-smoothing and --ema in 0..1 (excluded)")
        if self.momentum <= 0 or self.weight_decay < 0 or self.mixup < 0:
            # Nesterov SGD needs a momentum; a negative decay or mixup alpha is no recipe at all
            raise ConfigError("--momentum must be positive, --weight-decay and --mixup not negative")
        if self.seed < 0 or self.limit < 0:
            raise ConfigError("--seed and --limit must not be negative (--limit 0 = every face)")
        if self.ferplus_mix > 0 and self.labels != "fer2013":
            raise ConfigError(
                f"--ferplus-mix blends FER+ votes into the FER-2013 labels; with --labels {self.labels} the "
                "targets are the votes already"
            )
        if self.distill_temperature != 1.0 and self.distill == 0:
            raise ConfigError("--distill-temperature softens the teachers' probabilities: it needs --distill")
        if self.logit_adjust < 0:
            raise ConfigError("--logit-adjust must not be negative (0 = off, 1 = the full class prior)")
        if not (0 <= self.distill <= 1 and self.distill_temperature > 0):
            raise ConfigError("--distill must be in 0..1 and --distill-temperature positive")
        teachers = teacher_paths(self.teacher)
        if (self.distill > 0) != bool(teachers):
            raise ConfigError("--distill W (> 0) and --teacher MODEL.onnx[,MODEL.onnx...] go together")
        for teacher in teachers if not resumed else []:  # a resumed run has its teachers' targets
            if not teacher.is_file():
                raise ConfigError(f"--teacher {teacher}: no such file")
        if self.init_from and not resumed and not Path(self.init_from).is_file():
            raise ConfigError(f"--init-from {self.init_from}: no such file")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        aug_fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("augment", {}).items()
        }
        aug = AugmentConfig(**aug_fields)
        return cls(**d, augment=aug)


# Fields whose command-line option is not the field's name with dashes.
OPTION_NAMES = {"ema_decay": "--ema"}


def option_name(field_name: str) -> str:
    """``train``'s option for a TrainConfig field (``ema_decay`` is ``--ema``)."""
    return OPTION_NAMES.get(field_name, "--" + field_name.replace("_", "-"))


# Where a run trains, not what it learns: a resumed run may take these from the command line (the same
# faces at another path, another machine's thread count); --device has its own override in train().
RESUME_MAY_CHANGE = ("data", "threads")


def resumed_config(saved: dict, asked: dict[str, Any]) -> TrainConfig:
    """The recipe a resumed run goes on with: the one saved in its checkpoint, with ``asked``'s data
    path and thread count. ``asked``: the options given on the command line; one that would change the
    recipe half-way (another --epochs, say) is a ConfigError naming it, not silently dropped."""
    cfg = TrainConfig.from_dict(saved)
    clashes = [
        f"{option_name(name)} {value} (the run has {getattr(cfg, name) or 'the default'})"
        for name, value in asked.items()
        if name not in RESUME_MAY_CHANGE and getattr(cfg, name) != value
    ]
    if clashes:
        raise ConfigError(
            "--resume goes on with the run's own recipe; leave out "
            + ", ".join(clashes)
            + " or start a new --out"
        )
    return replace(cfg, **{k: v for k, v in asked.items() if k in RESUME_MAY_CHANGE})
