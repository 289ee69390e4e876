"""notebooks/quickstart.ipynb runs top to bottom on the real model and ../shared, in a kernel of this
environment, and its committed copy is the small, executed one that GitHub shows."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import SHARED, need_shared

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"

pytestmark = pytest.mark.shared


def test_committed_notebook_is_executed_and_small() -> None:
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["execution_count"] is not None for c in code)
    images = [o for c in code for o in c["outputs"] if {"image/png", "image/jpeg"} & set(o.get("data", {}))]
    assert len(images) >= 3  # the annotated photo, the timeline, the confusion matrix
    assert NOTEBOOK.stat().st_size < 400_000
    assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"])


def test_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_shared("media", "woman2.mp4")
    need_shared("datasets", "fer2013-kaggle", "train")
    pytest.importorskip("torch", reason="the notebook fine-tunes: needs the [train] extra")
    nbformat = pytest.importorskip("nbformat", reason="needs the [dev] extra")
    nbclient = pytest.importorskip("nbclient", reason="needs the [dev] extra")
    # The kernel is this interpreter (jupyter's native "python3" kernel is sys.executable, with
    # ipykernel from this venv), and the venv's bin/ is on PATH as for a user who activated it.
    monkeypatch.setenv("FACIAL_EMOTION_SHARED", str(SHARED))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    # a run of an earlier execution: a second one trained nothing ("holds a run already", which a
    # `!` line does not stop at) and showed the old model's figures as the new fine-tune's
    stale = tmp_path / "quickstart-output" / "run"
    stale.mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"an earlier run's model")
    (stale / "last.pt").write_bytes(b"its checkpoint")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    out = tmp_path / "quickstart-output"
    assert (out / "timeline.png").stat().st_size > 0
    assert (out / "report" / "confusion_matrix_normalized.png").stat().st_size > 0
    assert (out / "run" / "model.onnx").stat().st_size > 1000
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "error:" not in printed
