"""Dataset readers: every format ends as uint8 N x 48 x 48 faces with labels in canonical order."""

from facial_emotion.data.dataset import DatasetError, FaceDataset
from facial_emotion.data.readers import detect_layout, load_dataset

__all__ = ["DatasetError", "FaceDataset", "detect_layout", "load_dataset"]
