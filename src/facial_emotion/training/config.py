"""Everything that defines a training run, saved in every checkpoint and in the exported model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from facial_emotion.training.augment import AugmentConfig


@dataclass
class TrainConfig:
    data: str = ""
    labels: str = "fer2013"  # fer2013 | ferplus (train on FER+ majority / vote distributions)
    ferplus_mix: float = 0.0  # >0: target = (1-mix) * one-hot FER-2013 label + mix * FER+ votes
    teacher: str = ""  # comma list of ONNX model files to distil from (their ten-crop probabilities)
    distill: float = 0.0  # target = (1-distill) * label target + distill * teacher probabilities
    distill_temperature: float = 1.0  # > 1 softens the teacher probabilities
    train_split: str = ""  # comma list; default Training / train / all-but-validation
    val_split: str = ""  # default PublicTest / test / a 10 % hold-out of the training split
    # Defaults = the built-in model's recipe (scripts/train_builtin.sh spells it out).
    arch: str = "vgg-m"
    epochs: int = 240
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    momentum: float = 0.95  # peak momentum; the one-cycle schedule cycles it from 0.85 to this and back
    # onecycle: SGD one-cycle up to lr. swa: constant lr and momentum, the weights averaged at the end of
    # every epoch (stochastic weight averaging) with BatchNorm re-estimated; for a stage after --init-from.
    schedule: str = "onecycle"
    label_smoothing: float = 0.1
    mixup: float = 0.2  # Beta(a, a); 0 = off
    ema_decay: float = 0.999  # 0 = off
    precision: str = "auto"  # auto | bf16 | fp32
    seed: int = 0
    threads: int = 0  # 0 = torch default
    skip_bad: bool = False  # skip malformed csv rows instead of stopping at the first
    limit: int = 0  # use only the first N training faces (tests, smoke runs)
    init_from: str = ""  # checkpoint (.pt) or model file (.onnx) whose weights start the run
    augment: AugmentConfig = field(default_factory=AugmentConfig)

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
