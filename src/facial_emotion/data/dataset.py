"""The in-memory dataset every reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facial_emotion.labels import NUM_CLASSES
from facial_emotion.model_file import FACE_SIZE  # every reader resizes faces to this


class DatasetError(Exception):
    """A problem with the user's data: printed as one message, exit code 2."""


@dataclass
class FaceDataset:
    """Faces as uint8 (N, 48, 48), hard labels (N,) as indices into EMOTIONS.

    ``soft`` holds per-image target distributions (FER+ votes) when the labels came from votes.
    ``split`` names the part each face belongs to (csv Usage, or the sub-folder of a folder layout).
    """

    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    soft: np.ndarray | None = None
    rows: np.ndarray | None = None  # data-row index in the source csv (aligns FER+ votes)
    class_names: tuple[str, ...] = ()
    source: str = ""
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.images)
        assert self.images.dtype == np.uint8 and self.images.shape[1:] == (FACE_SIZE, FACE_SIZE)
        assert len(self.labels) == n and len(self.split) == n
        if self.soft is not None:
            assert len(self.soft) == n

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else NUM_CLASSES

    @property
    def splits(self) -> list[str]:
        return sorted(set(self.split.tolist()))

    def subset(self, mask: np.ndarray) -> FaceDataset:
        return FaceDataset(
            images=self.images[mask],
            labels=self.labels[mask],
            split=self.split[mask],
            soft=None if self.soft is None else self.soft[mask],
            rows=None if self.rows is None else self.rows[mask],
            class_names=self.class_names,
            source=self.source,
        )

    def resolve_splits(self, *names: str) -> list[str]:
        """``names`` as this dataset spells them: a name in another case than the data's ("Train"
        for a train/ folder) is that split; a name it does not have stays as given."""
        have = set(self.split.tolist())
        folded = {n.lower(): n for n in have}
        return [n if n in have else folded.get(n.lower(), n) for n in names]

    def select_split(self, *names: str) -> FaceDataset:
        have = set(self.split.tolist())
        names = tuple(self.resolve_splits(*names))
        missing = [n for n in names if n not in have]
        if missing:
            raise DatasetError(
                f"split {', '.join(missing)} not found in {self.source}; "
                f"available: {', '.join(self.splits) or 'none'}"
            )
        return self.subset(np.isin(self.split, names))

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    def check_face_size(self, face_size: int, model: str) -> None:
        """DatasetError unless the faces are ``face_size`` px, as ``model`` wants them (one clear
        error, where evaluate and calibrate fed 48 px faces to a 64 px model and crashed)."""
        if self.images.shape[1] != face_size:
            raise DatasetError(f"faces are {self.images.shape[1]} px, the model {model} wants {face_size} px")
