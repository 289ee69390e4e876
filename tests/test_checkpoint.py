"""Checkpoints are verified (issue #20): a SHA-256 of the payload and a format version in every file;
damage is one clear error naming the file (exit 2), --resume falls back to last.prev.pt, a best.pt
copied over last.pt is refused by name, stale temp files are removed."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="training tests need the [train] extra")

from conftest import need_shared, run_cli  # noqa: E402

from facial_emotion.training.checkpoint import (  # noqa: E402
    BEST,
    LAST,
    LAST_PREV,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from facial_emotion.training.config import TrainConfig  # noqa: E402
from facial_emotion.training.loop import train  # noqa: E402


def flip_bytes_in_largest_tensor(path: Path, n: int = 64) -> None:
    """The issue's damage: ``n`` bytes flipped in the middle of the largest tensor's data."""
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    for i in range(start, start + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import synthetic_faces, write_fer_csv

    root = tmp_path_factory.mktemp("ckpt")
    images, labels = synthetic_faces(96)
    data = write_fer_csv(root / "fer2013.csv", images, labels, ["Training"] * 64 + ["PublicTest"] * 32)
    cfg = TrainConfig(data=str(data), arch="vgg-s", epochs=2, batch_size=32, lr=0.05, mixup=0.0, threads=1)
    train(cfg, root / "run", progress=False)
    return root / "run"


def copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def test_checkpoints_carry_version_and_checksum(run: Path) -> None:
    for name in (LAST, LAST_PREV, BEST):
        state = torch.load(run / name, weights_only=False)  # still a plain torch.save dict
        assert state["format_version"] == 2 and len(state["sha256"]) == 64
    assert torch.load(run / LAST_PREV, weights_only=False)["epoch"] == 0  # the epoch before last.pt
    assert not list(run.glob(".*.tmp"))


def test_damaged_best_pt_is_refused_by_export_with_exit_2(run: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "best.pt"
    shutil.copy(run / BEST, damaged)
    flip_bytes_in_largest_tensor(damaged)
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(damaged)
    proc = subprocess.run(
        [sys.executable, "-m", "facial_emotion", "export", str(damaged), "--out", str(tmp_path / "m.onnx")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert str(damaged) in proc.stderr and "damaged" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_resume_falls_back_to_the_previous_checkpoint(run: Path, tmp_path: Path, caplog) -> None:
    out = copy_run(run, tmp_path)
    flip_bytes_in_largest_tensor(out / LAST)
    cfg = TrainConfig.from_dict(torch.load(out / LAST_PREV, weights_only=False)["config"])
    with caplog.at_level(logging.WARNING):
        result = train(cfg, out, resume=True, progress=False)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "last.pt" in said and "damaged" in said and LAST_PREV in said
    assert result["epochs"] == 2  # epoch 2 trained again from last.prev.pt
    assert load_checkpoint(out / LAST)["epoch"] == 1


def test_best_pt_copied_over_last_pt_is_a_clear_error(run: Path, tmp_path: Path) -> None:
    out = copy_run(run, tmp_path)
    shutil.copy(out / BEST, out / LAST)
    (out / LAST_PREV).unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "facial_emotion", "train", "--data", "x", "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        "best weights only" in proc.stderr
        and "Traceback" not in proc.stderr
        and "KeyError" not in proc.stderr
    )


def test_stale_temp_files_are_removed_on_start(run: Path, tmp_path: Path) -> None:
    out = copy_run(run, tmp_path)
    stale = [out / ".last.pt.k1ll3d.tmp", out / ".best.pt.x9.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    cfg = TrainConfig.from_dict(torch.load(out / LAST, weights_only=False)["config"])
    train(cfg, out, resume=True, progress=False)  # a finished run: nothing to train, export again
    assert not any(p.exists() for p in stale)


def test_checksum_catches_any_changed_value_and_reads_old_checkpoints(tmp_path: Path, caplog) -> None:
    state = {"config": {"arch": "vgg-s"}, "model": {"w": torch.arange(1000, dtype=torch.float32)}, "epoch": 3}
    save_checkpoint(state, tmp_path / "a.pt")
    assert load_checkpoint(tmp_path / "a.pt")["epoch"] == 3
    raw = torch.load(tmp_path / "a.pt", weights_only=False)
    raw["model"]["w"][500] += 0.5  # one weight changed, the checksum kept: re-saved by hand
    torch.save(raw, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=r"b\.pt: checkpoint is damaged"):
        load_checkpoint(tmp_path / "b.pt")
    raw.update(format_version=99)
    torch.save(raw, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(tmp_path / "c.pt")
    torch.save(state, tmp_path / "old.pt")  # format 1: no checksum, read with a warning
    with caplog.at_level(logging.WARNING):
        assert load_checkpoint(tmp_path / "old.pt")["epoch"] == 3
    assert "not verified" in caplog.text
    (tmp_path / "d.pt").write_bytes((tmp_path / "a.pt").read_bytes()[:300])  # truncated
    with pytest.raises(CheckpointError, match=r"d\.pt: damaged or not a checkpoint"):
        load_checkpoint(tmp_path / "d.pt")


def train_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facial_emotion", "train", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_a_run_started_with_relative_paths_resumes_from_anywhere(tmp_path: Path) -> None:
    """`--out` is all a resumed run needs (README), but --data and --teacher were kept as typed:
    from another folder it was "dataset path not found: faces.csv", and a run whose teacher file was
    gone could not go on, though its folder holds the teacher's probabilities. The resume errors
    named an option that does not exist (--ema-decay), and a run killed between its first two
    checkpoints (best.pt, no last.pt) was told to --resume, which then found nothing."""
    from conftest import synthetic_faces, write_fer_csv

    from facial_emotion.model_file import builtin_model_path

    start = tmp_path / "start"
    start.mkdir()
    images, labels = synthetic_faces(96)
    write_fer_csv(start / "faces.csv", images, labels, ["Training"] * 64 + ["PublicTest"] * 32)
    shutil.copy(builtin_model_path("fast"), start / "teacher.onnx")
    options = ["--arch", "vgg-s", "--epochs", "2", "--batch-size", "32", "--threads", "1", "--mixup", "0"]
    teach = ["--teacher", "teacher.onnx", "--distill", "0.5"]
    proc = train_cli("--data", "faces.csv", *teach, "--out", "run", *options, cwd=start)
    assert proc.returncode == 0, proc.stderr
    (start / "teacher.onnx").unlink()
    # killed after epoch 1, and resumed with the same faces named from where they lie
    shutil.copy(start / "run" / LAST_PREV, start / "run" / LAST)
    proc = train_cli("--data", "faces.csv", "--out", "run", "--resume", cwd=start)
    assert proc.returncode == 0, proc.stderr
    assert torch.load(start / "run" / LAST, weights_only=False)["config"]["data"] == str(start / "faces.csv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = train_cli("--out", "../start/run", "--resume", cwd=elsewhere)
    assert proc.returncode == 0 and "best validation accuracy" in proc.stdout, proc.stderr
    meta = json.loads((start / "run" / "model.json").read_text())
    assert meta["recipe"]["data"] == "faces.csv" and meta["recipe"]["teacher"] == "teacher.onnx"  # names only
    proc = train_cli("--out", "../start/run", "--resume", "--ema", "0.5", cwd=elsewhere)
    assert proc.returncode == 2 and "leave out --ema 0.5 (the run has 0.999)" in proc.stderr, proc.stderr
    # the command that began a run, --resume added: its relative --init-from is the run's own file
    # ("leave out --init-from best.pt (the run has /.../best.pt)" before)
    began = ["--data", "faces.csv", "--init-from", "run/best.pt", "--out", "run2", *options]
    assert train_cli(*began, cwd=start).returncode == 0
    shutil.copy(start / "run2" / LAST_PREV, start / "run2" / LAST)
    proc = train_cli(*began, "--resume", cwd=start)
    assert proc.returncode == 0 and "resuming" in proc.stderr, proc.stderr
    (start / "run" / LAST).unlink()
    for again in ([], ["--resume"]):
        proc = train_cli("--data", "faces.csv", "--out", "run", *again, cwd=start)
        assert proc.returncode == 2 and "holds best.pt but no last.pt" in proc.stderr, proc.stderr


def test_resume_takes_its_recipe_from_the_run_and_refuses_another(run: Path, tmp_path: Path) -> None:
    out = copy_run(run, tmp_path)
    saved = torch.load(out / LAST, weights_only=False)["config"]
    moved = tmp_path / "elsewhere.csv"  # the same faces at another path (another machine, say)
    shutil.copy(saved["data"], moved)
    # No --data: the run reads its own; a different --data is where the same faces are now.
    for extra in ([], ["--data", str(moved), "--seed", str(saved["seed"])]):
        shutil.copy(out / LAST_PREV, out / LAST)  # killed during its last epoch
        proc = train_cli("--out", str(out), "--resume", *extra)
        assert proc.returncode == 0, proc.stderr
        assert "best validation accuracy" in proc.stdout
    # An option that would change the recipe half-way is refused by name, nothing trained or written.
    before = (out / LAST).read_bytes()
    proc = train_cli("--out", str(out), "--resume", "--epochs", "9", "--lr", "0.05")
    assert proc.returncode == 2 and "--epochs 9 (the run has 2)" in proc.stderr, proc.stderr
    assert "--lr" not in proc.stderr.split("leave out")[1]  # the same value as the run's is no clash
    assert "Traceback" not in proc.stderr and (out / LAST).read_bytes() == before
    proc = train_cli("--out", str(tmp_path / "new"))
    assert proc.returncode == 2 and "--data is required" in proc.stderr, proc.stderr


def test_a_checkpoint_given_as_a_model_and_a_model_given_to_export_say_what_they_are(run: Path) -> None:
    """`analyze --model best.pt` gave onnxruntime's protobuf error and `export model.onnx` "damaged
    or not a checkpoint": neither said which file each command takes."""
    photo = need_shared("media", "justin.jpg")
    proc = run_cli("analyze", str(photo), "--model", str(run / "best.pt"))
    assert proc.returncode == 2 and "a training checkpoint, not a model file" in proc.stderr, proc.stderr
    assert f"facial-emotion export {run / 'best.pt'}" in proc.stderr
    proc = run_cli("export", str(run / "model.onnx"), "--out", str(run / "x.onnx"))
    assert proc.returncode == 2 and "a model file already, not a training checkpoint" in proc.stderr, (
        proc.stderr
    )


def test_resuming_a_finished_run_keeps_its_model_file(run: Path, tmp_path: Path) -> None:
    """`--resume` on a run that had finished exported best.pt again over model.onnx: the calibration
    `calibrate` had written into it was gone, without a word."""
    out = copy_run(run, tmp_path)
    meta = json.loads((out / "model.json").read_text())
    meta["calibration"] = {"temperature": 1.5}  # what `calibrate model.onnx` adds in place
    (out / "model.json").write_text(json.dumps(meta))
    before = {name: (out / name).read_bytes() for name in ("model.onnx", "model.json", LAST, BEST)}
    proc = train_cli("--out", str(out), "--resume")
    assert proc.returncode == 0 and "had finished all 2 epochs" in proc.stderr, proc.stderr
    assert "best validation accuracy" in proc.stdout
    assert {name: (out / name).read_bytes() for name in before} == before
