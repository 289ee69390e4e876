"""Mistakes a user makes on the command line end in one line naming the option and exit code 2,
before any work, never a traceback (found by a review of every subcommand): numbers that are not
numbers (nan, inf), an output path that is a folder, a file that is not a YuNet model, a server that
cannot listen where it was asked or was given an empty admin token, calibration that would rewrite a
shipped model or fit on a split the data does not have, training options out of range."""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import shutil
import socket
import time
from pathlib import Path

import pytest
from conftest import cpu_seconds, model_with_description, need_shared, poll, run_cli

from facial_emotion.model_file import builtin_model_path


def refused(proc, *words: str) -> str:
    """The proc ended as a user error (exit 2, one line, no traceback) whose message has ``words``."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)
    return proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("analyze", "x.jpg", "--file-timeout", "inf"),
        ("analyze", "x.jpg", "--file-timeout", "nan"),
        ("serve", "--max-upload-mb", "nan"),
        ("serve", "--max-megapixels", "inf"),
        ("serve", "--timeout", "nan"),
        ("video", "x.mp4", "--smoothing", "nan"),
        ("train", "--data", "x.csv", "--lr", "nan"),
    ],
)
def test_nan_and_inf_are_refused_as_numbers(args: tuple[str, ...]) -> None:
    refused(run_cli(*args, timeout=60), "finite number")


def test_an_output_path_that_is_a_folder_is_refused_before_the_work(tmp_path: Path) -> None:
    justin = need_shared("media", "justin.jpg")
    video = need_shared("media", "woman2.mp4")
    refused(run_cli("analyze", str(justin), "--csv", str(tmp_path)), f"--csv {tmp_path}: is a folder")
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    refused(run_cli("analyze", str(justin), "--csv", str(blocker / "out.csv")), "is a file, not a folder")
    for option in ("--timeline", "--plot", "--out", "--summary"):
        started = time.monotonic()
        proc = run_cli("video", str(video), option, str(tmp_path))
        refused(proc, f"{option} {tmp_path}: is a folder")
        # refused up front: the 464-frame video takes several seconds to analyse
        assert time.monotonic() - started < 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no temp file left behind


def test_atomic_writer_names_the_folder_not_a_temp_file(tmp_path: Path) -> None:
    from facial_emotion.results.files import atomic_write_text

    with pytest.raises(IsADirectoryError) as caught:
        atomic_write_text(tmp_path, "x")
    assert caught.value.filename == str(tmp_path) and list(tmp_path.iterdir()) == []
    with pytest.raises(OSError) as caught:
        atomic_write_text(Path("/proc/out.txt"), "x")  # no new files there, even for root
    assert caught.value.filename == "/proc/out.txt" and "cannot write here" in str(caught.value)


def test_a_file_that_is_not_yunet_is_one_clear_error(tmp_path: Path) -> None:
    justin = need_shared("media", "justin.jpg")
    not_a_model = tmp_path / "x.onnx"
    not_a_model.write_text("hello")
    emotion_model = builtin_model_path("fast")  # a real ONNX file, but no face detector
    for path in (not_a_model, emotion_model):
        refused(run_cli("analyze", str(justin), "--detector", f"yunet:{path}"), "not a YuNet")


def test_serve_refuses_what_it_cannot_listen_on_and_an_empty_token() -> None:
    refused(run_cli("serve", "--port", "99999", timeout=60), "--port 99999: must be 1..65535, or 0")
    refused(run_cli("serve", "--host", "999.1.1.1", timeout=60), "--host 999.1.1.1")
    refused(run_cli("serve", "--admin-token", "", timeout=60), "--admin-token is empty")
    refused(run_cli("serve", "--max-megapixels", "1e-7", timeout=60), "at least one byte / pixel")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused(run_cli("serve", "--port", str(port), timeout=60), f"cannot listen on 127.0.0.1:{port}")


def test_create_app_refuses_an_empty_admin_token() -> None:
    pytest.importorskip("fastapi")
    from facial_emotion.service.app import create_app

    with pytest.raises(ValueError, match="empty"):
        create_app(admin_token=" ", workers=1)


def test_calibrate_leaves_shipped_models_alone_and_names_the_missing_split(tiny_kaggle: Path) -> None:
    shipped = builtin_model_path("fast")
    before = hashlib.sha256(shipped.read_bytes()).hexdigest()
    for model in ("fast", str(shipped)):  # by name or by its path
        refused(run_cli("calibrate", model, "--data", str(tiny_kaggle)), "shipped inside the package")
    # the function behind it too: called without ``out`` it rewrote the installed package's file
    pytest.importorskip("onnx")
    from facial_emotion.evaluation.calibration import calibrate_model
    from facial_emotion.model_file import ModelFileError

    for model in ("fast", shipped, None):  # None: the default built-in model
        with pytest.raises(ModelFileError, match="shipped inside the package"):
            calibrate_model(model, tiny_kaggle, "test")
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == before
    refused(
        run_cli("calibrate", "fast", "--data", str(tiny_kaggle), "--out", str(tiny_kaggle.parent / "c.onnx")),
        "has no split PublicTest (it has test, train)",
        "--split",
    )


def test_training_options_out_of_range_are_refused() -> None:
    pytest.importorskip("torch")
    from facial_emotion.training.config import ConfigError, TrainConfig

    bad = {
        "--lr nan": dict(lr=math.nan),
        "--weight-decay inf": dict(weight_decay=math.inf),
        "--momentum must be positive": dict(momentum=0.0),
        "--weight-decay and --mixup not negative": dict(weight_decay=-1.0),
        "--seed and --limit": dict(seed=-1),
        "the votes already": dict(labels="ferplus", ferplus_mix=0.3),
        "it needs --distill": dict(distill_temperature=3.0),
    }
    for message, options in bad.items():
        with pytest.raises(ConfigError, match=message.replace("-", r"\-")):
            TrainConfig(data="x", **options).validate()  # type: ignore[arg-type]
    TrainConfig(data="x").validate()  # the built-in recipe itself is fine


@pytest.mark.parametrize(
    "args,message",
    [
        (("webcam", "--no-window", "--max-frames", "0"), "--max-frames: must be at least 1, not 0"),
        (("batch", "x.jpg", "--out", "o", "--max-frames", "-5"), "--max-frames: must be at least 1, not -5"),
        (("analyze", "x.jpg", "--threads", "-1"), "--threads: must be at least 0, not -1"),
        (
            ("quantize", "fp32", "--data", "x", "--out", "q.onnx", "--faces", "5"),
            "--faces: must be at least 64",
        ),
        (("finetune", "--feedback", "f", "--out", "o.onnx", "--mix", "-5"), "--mix: must be at least 0"),
        (("batch", "x.jpg", "--out", "o", "--address", "auto"), "it needs --engine ray"),
        (("webcam", "--camera", "1", "--source", "x.mp4", "--no-window"), "not both"),
        (("download", "fer2013", "--from-zip", "a.zip", "--kaggle-dataset", "a/b"), "one or the other"),
    ],
)
def test_counts_out_of_range_and_options_that_exclude_each_other(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    files = {"o", "x.jpg", "x.mp4", "a.zip", "f", "o.onnx", "q.onnx"}  # all under tmp_path, none made
    proc = run_cli(*(str(tmp_path / a) if a in files else a for a in args), timeout=60)
    refused(proc, message)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_finetune_refuses_an_int8_base_before_scoring_it(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = run_cli(
        "finetune", "--feedback", str(tmp_path), "--out", str(tmp_path / "m.onnx"), "--base", "default"
    )
    refused(proc, "--base default: an int8-quantized model cannot be trained", "--base fp32")
    assert "--init-from" not in proc.stderr and time.monotonic() - started < 60


def test_train_takes_built_in_names_for_init_from_and_teacher(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    # The names resolve to the shipped files, so the run goes on to read its data (missing here).
    proc = run_cli(
        "train", "--data", str(tmp_path / "missing.csv"), "--init-from", "fp32", "--out", str(tmp_path)
    )
    assert proc.returncode == 2 and "missing.csv" in proc.stderr and "--init-from" not in proc.stderr, (
        proc.stderr
    )
    proc = run_cli(
        "train",
        "--data",
        str(tmp_path / "missing.csv"),
        "--teacher",
        "fp32,fast",
        "--distill",
        "0.5",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 2 and "missing.csv" in proc.stderr and "--teacher" not in proc.stderr, (
        proc.stderr
    )


def test_quantize_names_a_missing_eval_split_before_quantizing(tiny_csv: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    out = tmp_path / "q.onnx"
    proc = run_cli("quantize", "fp32", "--data", str(tiny_csv), "--out", str(out), "--eval-split", "Bogus")
    refused(proc, "--eval-split Bogus: not in")
    assert not out.exists()


def test_an_output_that_is_an_input_or_cannot_be_written_is_refused(tmp_path: Path) -> None:
    """Each would have destroyed the input (a photo turned into CSV text, a video replaced by its
    annotated copy) or failed after the work, naming a temp file."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(need_shared("media", "justin.jpg").read_bytes())
    video = tmp_path / "clip.mp4"
    video.write_bytes(need_shared("media", "woman2.mp4").read_bytes())
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (photo, video)}
    refused(run_cli("analyze", str(photo), "--csv", str(photo)), "--csv", "is one of the inputs")
    refused(run_cli("analyze", str(tmp_path), "--csv", str(photo)), "is one of the inputs")  # via a folder
    for option in ("--out", "--timeline"):
        refused(run_cli("video", str(video), option, str(video)), option, "is one of the inputs")
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (photo, video)} == before

    # /proc takes no new files, even from root (a read-only mount behaves the same).
    refused(
        run_cli("analyze", str(photo), "--csv", "/proc/out.csv"), "--csv /proc/out.csv: cannot write in /proc"
    )
    refused(run_cli("video", str(video), "--timeline", "/proc/t.csv"), "--timeline /proc/t.csv: cannot write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "photo.jpg"]


def test_a_model_output_named_json_is_refused(tmp_path: Path) -> None:
    """Its description (written beside it as NAME.json) would have overwritten the model itself."""
    for args in (("ensemble", "fast", "fast"), ("quantize", "fp32", "--data", "x.csv")):
        refused(run_cli(*args, "--out", str(tmp_path / "m.json")), "name the model file .onnx")
    fast = str(builtin_model_path("fast"))
    refused(run_cli("ensemble", "fast", "fp32", "--out", fast), "is one of the inputs")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"crop": 30}, "its graph takes ['batch', 1, 40, 40], its description says N x 1 x 30 x 30 faces"),
        (
            {"classes": ["a", "b", "c", "d", "e"]},
            "its graph gives (7,) outputs per face, its description names 5",
        ),
        ({"crop": "abc"}, "must be whole numbers"),
        ({"crop": 0}, "must be whole numbers"),
        ({"classes": []}, "two or more distinct names"),
        ({"classes": ["happy"] * 7}, "two or more distinct names"),
    ],
)
def test_a_model_whose_graph_and_description_disagree_is_one_error(
    tmp_path: Path, changes: dict, message: str
) -> None:
    """Before, each crashed on the first face with onnxruntime's or numpy's traceback (and a server
    loaded it, then answered 500 to every request)."""
    from facial_emotion.inference.classifier import EmotionClassifier
    from facial_emotion.model_file import ModelFileError

    model = model_with_description(tmp_path, "wrong", **changes)
    with pytest.raises(ModelFileError, match=re.escape(message)):
        EmotionClassifier(model)
    photo = need_shared("media", "justin.jpg")
    refused(run_cli("analyze", str(photo), "--model", str(model), timeout=60), str(model), message)


def test_an_output_folder_that_is_a_file_is_refused_before_the_work(tmp_path: Path) -> None:
    """It was an OS error, 'File exists', after the photos were analysed or the model scored."""
    photo = need_shared("media", "justin.jpg")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep")
    refused(run_cli("analyze", str(photo), "--annotate", str(a_file)), f"--annotate {a_file}", "is a file")
    refused(run_cli("analyze", str(photo), "--annotate", str(a_file / "sub")), "is a file; name a folder")
    refused(
        run_cli("evaluate", "--data", "x.csv", "--report", str(a_file)), f"--report {a_file}", "is a file"
    )
    refused(run_cli("analyze", str(photo), "--annotate", "/proc/annotated"), "cannot write in /proc")
    assert a_file.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_video_outputs_named_for_what_they_hold(tmp_path: Path) -> None:
    """An annotated video OpenCV cannot write under that name failed after the analysis; a plot named
    .jpg held PNG bytes."""
    video = need_shared("media", "woman2.mp4")
    refused(
        run_cli("video", str(video), "--out", str(tmp_path / "a.txt")),
        "--out",
        ".mp4, .m4v, .mov, .avi, .mkv",
    )
    refused(run_cli("video", str(video), "--plot", str(tmp_path / "p.jpg")), "--plot", "name it .png")
    assert not list(tmp_path.iterdir())


def test_webcam_on_a_file_that_is_not_a_video_names_the_file_only(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    message = refused(run_cli("webcam", "--source", str(text), "--no-window", timeout=60), str(text))
    assert "camera connected" not in message  # the user named a file: no camera to blame


def test_a_model_exported_with_a_fixed_batch_is_refused_at_load(tmp_path: Path) -> None:
    """One face at a time passed, then two faces (or ten-crop) failed inside onnxruntime."""
    import onnx

    from facial_emotion.inference.classifier import EmotionClassifier
    from facial_emotion.model_file import ModelFileError, write_model

    graph = onnx.load(str(builtin_model_path("fast")))
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # as an export without dynamic axes
    out = tmp_path / "fixed.onnx"
    write_model(out, graph.SerializeToString(), EmotionClassifier("fast").metadata)
    with pytest.raises(ModelFileError, match=re.escape("takes [1, 1, 40, 40]") + ".*a fixed batch"):
        EmotionClassifier(out)


def test_serve_on_port_0_listens_on_a_free_port_and_names_it() -> None:
    """--port 0 was refused; scripts and tests that start a server need a port nobody holds."""
    pytest.importorskip("uvicorn")
    import subprocess
    import sys
    import urllib.request

    proc = subprocess.Popen(
        [sys.executable, "-m", "facial_emotion", "serve", "--port", "0", "--workers", "1"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline, url = time.monotonic() + 120, None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"running on (http://127\.0\.0\.1:(\d+))", proc.stderr.readline())
            url = found.group(1) if found and found.group(2) != "0" else None
        assert url is not None, "the log named no port"
        with urllib.request.urlopen(f"{url}/healthz", timeout=30) as reply:
            assert reply.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_serve_reads_live_frames_up_to_its_upload_limit_and_logs_a_client_that_hangs_up() -> None:
    """`serve --max-upload-mb 30` took a 17 MB photo over HTTP but closed the live stream on a 17 MB
    frame (uvicorn's 16 MiB WebSocket default: code 1009, no message); a client hanging up
    mid-upload, "one line in the log" in README, left none at the default log level."""
    pytest.importorskip("uvicorn")
    ws_client = pytest.importorskip("websockets.sync.client")
    import json
    import subprocess
    import sys
    import threading

    import numpy as np

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "facial_emotion",
            "serve",
            "--port",
            "0",
            "--workers",
            "1",
            "--max-upload-mb",
            "30",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    try:
        assert proc.stderr is not None
        deadline, port = time.monotonic() + 120, None
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            log.append(proc.stderr.readline())
            found = re.search(r"running on http://127\.0\.0\.1:(\d+)", log[-1])
            port = int(found.group(1)) if found and found.group(1) != "0" else None
        assert port is not None, "the log named no port"
        threading.Thread(target=lambda: log.extend(iter(proc.stderr.readline, "")), daemon=True).start()
        frame = b"\xff\xd8\xff" + np.random.default_rng(0).bytes(17_000_000)  # over 16 MiB, no photo
        with ws_client.connect(f"ws://127.0.0.1:{port}/v1/stream", max_size=None) as ws:
            ws.send(frame)
            reply = json.loads(ws.recv(timeout=120))
        assert reply["type"] == "error", reply
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(
                b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                b"Content-Length: 100000\r\n\r\n" + b"\xff" * 1000
            )
        assert poll(
            lambda: any("disconnected during its upload, after 1000 bytes" in line for line in log), 30
        ), log
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_evaluate_on_the_folder_a_model_trained_on_says_the_figures_are_not_held_out(tmp_path: Path) -> None:
    """It scored [all] without a word, though the model was trained on that folder."""
    import cv2
    from conftest import synthetic_faces

    from facial_emotion.labels import EMOTIONS

    images, labels = synthetic_faces(14)
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        (tmp_path / "mine" / EMOTIONS[lab]).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "mine" / EMOTIONS[lab] / f"{i}.png"), img)
    proc = run_cli("evaluate", "--data", str(tmp_path / "mine"), "--model", "fast")  # trained elsewhere
    assert proc.returncode == 0 and "not held-out" not in proc.stderr and "[all]" in proc.stdout
    other = model_with_description(tmp_path, "other", dataset="not-mine (corrections) + x.csv (Training mix)")
    proc = run_cli(
        "evaluate", "--data", str(tmp_path / "mine"), "--model", str(other)
    )  # a name, not a part of one
    assert proc.returncode == 0 and "not held-out" not in proc.stderr
    mine = model_with_description(tmp_path, "mine-model", dataset="mine")  # as `train --data mine/` records
    for split in ([], ["--split", "ALL"]):  # "ALL" was not warned about, though evaluate takes it
        proc = run_cli("evaluate", "--data", str(tmp_path / "mine"), "--model", str(mine), *split)
        assert (
            proc.returncode == 0
            and "the model was trained on mine: its figures on these faces are not held-out" in proc.stderr
        ), proc.stderr
    # a split folder given itself: its training split is warned about, its test split was (wrongly) too
    kaggle = model_with_description(tmp_path, "kaggle-model", dataset="kf", train_split="train")
    for split, warned in (("TEST", False), ("Train", True)):
        shutil.copytree(tmp_path / "mine", tmp_path / "kf" / split)
        proc = run_cli("evaluate", "--data", str(tmp_path / "kf" / split), "--model", str(kaggle))
        assert proc.returncode == 0 and ("not held-out" in proc.stderr) == warned, (split, proc.stderr)


def test_which_faces_a_model_trained_on_its_metadata_tells() -> None:
    """calibrate compared the split with the model's train_split as a whole: a comma list
    ("PublicTest,Training") never matched, nor an ensemble (no train_split of its own)."""
    from facial_emotion.evaluation.evaluate import trained_on_faces

    both = {"dataset": "faces.csv", "train_split": "PublicTest,Training"}
    assert trained_on_faces(both, "data/faces.csv", "training") and trained_on_faces(
        both, "faces.csv", "PublicTest"
    )
    assert not trained_on_faces(both, "other.csv", "Training")
    assert trained_on_faces({"dataset": "faces.csv"}, "faces.csv", "Training")  # no record: the default split
    assert not trained_on_faces(
        {"dataset": "faces.csv", "train_split": "Training"}, "faces.csv", "PublicTest"
    )
    ensemble = {
        "dataset": "faces.csv + kf",
        "members": [
            {"dataset": "faces.csv", "train_split": "Training"},
            {"dataset": "kf", "train_split": "train"},
        ],
    }
    assert trained_on_faces(ensemble, "faces.csv", "Training") and trained_on_faces(
        ensemble, "kf/Train", "all"
    )
    assert not trained_on_faces(ensemble, "faces.csv", "PublicTest") and not trained_on_faces(
        ensemble, "kf", "test"
    )
    finetuned = {"dataset": "fb (corrections) + fer2013.csv.gz (Training mix)", "train_split": "Training"}
    assert trained_on_faces(finetuned, "fb", "all") and not trained_on_faces(
        finetuned, "fer2013.csv.gz", "PublicTest"
    )


def test_a_second_sigterm_or_ctrl_c_during_the_cleanup_still_ends_in_one_line(tmp_path: Path) -> None:
    """`timeout` signals the process, then its group: the second SIGTERM arrived inside the first's
    cleanup (a traceback from the handler, exit 1), or the interpreter's shutdown killed the photo
    reader's thread inside OpenCV (glibc's "FATAL: exception not rethrown", exit 134)."""
    import os
    import signal
    import subprocess
    import sys

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(400):
        shutil.copy(need_shared("media", "justin.jpg"), photos / f"p{i}.jpg")
    for sig, code, said in ((signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")) * 2:
        job = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "facial_emotion",
                "analyze",
                str(photos),
                "--csv",
                str(tmp_path / "o.csv"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal
        )
        # photos being read (the model loaded, the reader thread busy)
        assert poll(lambda j=job: j.poll() is not None or cpu_seconds(j.pid) > 3.0, 120)
        job.send_signal(sig)
        time.sleep(0.01)
        with contextlib.suppress(ProcessLookupError):
            os.kill(job.pid, sig)
        _, err = job.communicate(timeout=60)
        assert job.returncode == code and err.strip().splitlines()[-1] == said, err
        assert "Traceback" not in err and sorted(p.name for p in tmp_path.iterdir()) == ["photos"]
