"""The GPU recipe, checked on the CPU: device choice, datasets as .npz (packed losslessly for the
trip), and scripts/train_candidates.py end to end (parallel candidates, a distilled student, the
pack that comes back, unpacked and exported)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_faces, write_fer_csv, write_ferplus

pytest.importorskip("torch", reason="training needs the [train] extra")

import torch  # noqa: E402

from facial_emotion.data import load_dataset  # noqa: E402
from facial_emotion.data.cache import write_npz  # noqa: E402
from facial_emotion.inference.classifier import EmotionClassifier  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import pack_faces  # noqa: E402


@pytest.fixture
def fer_with_votes(tmp_path: Path) -> Path:
    images, labels = synthetic_faces(300)
    usages = ["Training"] * 240 + ["PublicTest"] * 60
    data = write_fer_csv(tmp_path / "fer2013.csv", images, labels, usages)
    write_ferplus(tmp_path / "fer2013new.csv", 300, usages)
    return data


def test_cuda_without_a_gpu_is_one_clear_error(fer_with_votes: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "facial_emotion",
            "train",
            "--data",
            str(fer_with_votes),
            "--device",
            "cuda",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "torch sees no CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_npz_dataset_keeps_rows_so_ferplus_votes_apply(fer_with_votes: Path, tmp_path: Path) -> None:
    csv_ds = load_dataset(fer_with_votes)
    npz = tmp_path / "faces.npz"
    write_npz(csv_ds, npz)
    npz_ds = load_dataset(npz)
    assert np.array_equal(npz_ds.images, csv_ds.images) and np.array_equal(npz_ds.rows, csv_ds.rows)
    assert npz_ds.splits == ["PublicTest", "Training"]
    from_csv = load_dataset(fer_with_votes, labels="ferplus", ferplus_classes=8)
    from_npz = load_dataset(npz, labels="ferplus", ferplus_classes=8)
    assert np.array_equal(from_npz.soft, from_csv.soft) and from_npz.class_names == from_csv.class_names


def test_packed_faces_unpack_to_the_same_dataset(fer_with_votes: Path, tmp_path: Path) -> None:
    faces = np.random.default_rng(0).integers(0, 256, (50, 48, 48), dtype=np.uint8)
    assert np.array_equal(pack_faces.restore(pack_faces.residuals(faces)), faces)  # noise: the worst case
    packed, npz = tmp_path / "faces.xz", tmp_path / "faces.npz"
    pack_faces.pack(str(fer_with_votes), ["Training"], packed)
    pack_faces.unpack(packed, npz)
    want = load_dataset(fer_with_votes).select_split("Training")
    got = load_dataset(npz)
    assert np.array_equal(got.images, want.images) and np.array_equal(got.labels, want.labels)
    assert np.array_equal(got.rows, want.rows) and got.splits == ["Training"]


def test_candidates_train_distil_pack_and_unpack(fer_with_votes: Path, tmp_path: Path) -> None:
    small = {"arch": "vgg-s", "epochs": 2, "batch_size": 32, "lr": 0.05, "mixup": 0.0}
    plan = [
        {"name": "a", "options": {**small, "seed": 1}},
        {"name": "b", "options": {**small, "seed": 2}},
        {"name": "fp8", "options": {**small, "labels": "ferplus8"}},
        {"name": "student", "options": small, "teachers": ["a", "b"], "distill": 0.6},
    ]
    plan_file, runs, back = tmp_path / "plan.json", tmp_path / "runs", tmp_path / "back"
    plan_file.write_text(json.dumps(plan))
    script = str(REPO / "scripts" / "train_candidates.py")
    proc = subprocess.run(
        [
            sys.executable,
            script,
            "--data",
            str(fer_with_votes),
            "--plan",
            str(plan_file),
            "--runs",
            str(runs),
            "--parallel",
            "3",
            "--device",
            "cpu",
            "--pack-to",
            str(back),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = {c["name"]: c for c in json.loads((back / "summary.json").read_text())}
    assert {c["status"] for c in summary.values()} == {"done"}
    assert all(len(c["history"]) == 2 for c in summary.values())
    # The student learnt from its teachers' ten-crop probabilities, computed by the script.
    student = summary["student"]["options_used"]
    assert student["distill"] == 0.6 and student["teacher"].count(".onnx") == 2
    assert "teachers agree with" in (runs / "student" / "train.log").read_text()
    # The pack holds fp16 weights; unpacked, they export to models that match the run's own.
    packs = sorted(back.glob("candidates-*.pt"))
    assert packs and all(p.stat().st_size < 15 * 2**20 for p in packs)
    unpacked = tmp_path / "unpacked"
    proc = subprocess.run(
        [sys.executable, script, "unpack", *map(str, packs), "--runs", str(unpacked)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name, classes in (("a", 7), ("fp8", 8)):
        out = tmp_path / f"{name}.onnx"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "facial_emotion",
                "export",
                str(unpacked / name / "best.pt"),
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        faces = load_dataset(fer_with_votes).select_split("PublicTest").images
        mine = EmotionClassifier(out).predict(faces, calibrated=False)
        runs_own = EmotionClassifier(runs / name / "model.onnx").predict(faces, calibrated=False)
        assert mine.shape[1] == classes and np.abs(mine - runs_own).max() < 0.01  # fp16 weights


def test_a_net_too_big_for_one_pack_file_comes_back_in_parts(fer_with_votes: Path, tmp_path: Path) -> None:
    """resnet18's fp16 weights (22 MB) are over the 16 MiB a file the device tool brings back: they
    travel in parts across pack files, and unpack puts them together (and refuses a missing part)."""
    plan = [{"name": "big", "options": {"arch": "resnet18", "epochs": 1, "batch_size": 32, "mixup": 0.0}}]
    plan_file, runs, back = tmp_path / "plan.json", tmp_path / "runs", tmp_path / "back"
    plan_file.write_text(json.dumps(plan))
    script = str(REPO / "scripts" / "train_candidates.py")
    args = ["--data", str(fer_with_votes), "--plan", str(plan_file), "--runs", str(runs), "--device", "cpu"]
    proc = subprocess.run(
        [sys.executable, script, *args, "--pack-to", str(back)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    packs = sorted(back.glob("candidates-*.pt"))
    assert len(packs) == 2 and all(p.stat().st_size < 15 * 2**20 for p in packs)
    unpack = [sys.executable, script, "unpack"]
    proc = subprocess.run(
        [*unpack, str(packs[0]), "--runs", str(tmp_path / "half")], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "parts [1] of 2 given" in proc.stderr
    unpacked = tmp_path / "unpacked"
    proc = subprocess.run(
        [*unpack, *map(str, packs), "--runs", str(unpacked)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    weights = torch.load(unpacked / "big" / "best.pt", weights_only=False)["model"]
    original = torch.load(runs / "big" / "best.pt", weights_only=False)["model"]
    assert list(weights) == list(original)  # every tensor, in order
    for name, tensor in original.items():
        expected = tensor.half().float() if tensor.is_floating_point() else tensor
        assert torch.equal(weights[name], expected), name


@pytest.mark.parametrize("plan", sorted((REPO / "scripts").glob("candidates*.json")), ids=lambda p: p.name)
def test_the_shipped_plans_are_valid_recipes(plan: Path, tmp_path: Path) -> None:
    """A typo in a plan would cost a lent GPU's whole call: every candidate must be a TrainConfig that
    validates (its teacher file, carried in gpu/ and not in the repository, stood in for here)."""
    from facial_emotion.training.config import TrainConfig

    teacher = tmp_path / "teacher.npz"
    teacher.write_bytes(b"")
    candidates = json.loads(plan.read_text())
    names = [c["name"] for c in candidates]
    assert len(names) == len(set(names)) and all(n.replace("-", "").isalnum() for n in names)
    for cand in candidates:
        options = {"data": "faces.npz", **cand["options"]}
        if options.get("teacher"):
            options["teacher"] = str(teacher)
        TrainConfig.from_dict(options).validate()
