"""evaluate's metrics as scikit-learn defines them, on labels made up to hit the edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from facial_emotion.evaluation.metrics import summarize
from facial_emotion.labels import EMOTIONS


def test_macro_f1_counts_only_the_classes_that_occur() -> None:
    """Disgust neither in the labels nor in the predictions: it is left out of the mean, as
    scikit-learn leaves it (it counted as an F1 of 0)."""
    y_true = np.array([0, 0, 2, 2, 3, 3, 3, 4, 5, 6])
    y_pred = np.array([0, 2, 2, 2, 3, 3, 0, 4, 6, 6])
    got = summarize(y_true, y_pred, list(EMOTIONS))
    # per present class (0, 2, 3, 4, 5, 6): F1 = 2PR / (P + R); scikit-learn's f1_score(average="macro")
    # gives their mean, 0.6278
    f1 = {0: 0.5, 2: 0.8, 3: 0.8, 4: 1.0, 5: 0.0, 6: 2 / 3}
    assert got["macro_f1"] == pytest.approx(np.mean(list(f1.values())), abs=1e-4)
    assert got["per_class"]["disgust"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
