"""The project's import contracts and the one frame flow, checked on the real code.

- ``facial_emotion.inference`` and the CLI's inference commands never import torch;
- ``facial-emotion --help`` imports neither OpenCV nor onnxruntime;
- no module outside ``training/`` imports ``training`` (the CLI only inside its train/export/quantize/finetune/ensemble commands);
- a video file, a camera-like source and the service's live stream all go through ``FaceStream``:
  the same frames give the same tracked faces on every path.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import need_shared

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "facial_emotion"


def loaded_modules(code: str) -> set[str]:
    """Top-level packages loaded by ``code`` in a fresh interpreter (it may print to stdout)."""
    probe = f"{code}\nimport sys\nsys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)) + '\\n')"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert "MODULES " in proc.stderr, proc.stderr
    names = proc.stderr.rsplit("MODULES ", 1)[1].split()
    return {n.split(".")[0] for n in names}


def test_help_loads_neither_opencv_nor_onnxruntime() -> None:
    for argv in (["--help"], ["analyze", "--help"], ["video", "--help"], ["train", "--help"]):
        code = (
            "import contextlib, io\nfrom facial_emotion.cli import main\n"
            f"with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main({argv!r})"
        )
        modules = loaded_modules(code)
        assert "facial_emotion" in modules
        assert not modules & {"cv2", "onnxruntime", "torch", "numpy"}, (
            argv,
            modules & {"cv2", "onnxruntime"},
        )


def test_import_facial_emotion_is_light() -> None:
    modules = loaded_modules("import facial_emotion")
    assert not modules & {"cv2", "onnxruntime", "torch", "numpy"}
    # ... and the public names still load on first use
    modules = loaded_modules(
        "import facial_emotion as fe\nassert fe.EmotionRecognizer and fe.EMOTIONS[0] == 'angry'"
    )
    assert "onnxruntime" in modules and "torch" not in modules


def test_inference_never_imports_torch() -> None:
    inference = sorted(p.stem for p in (PACKAGE / "inference").glob("*.py") if p.stem != "__init__")
    results = sorted(p.stem for p in (PACKAGE / "results").glob("*.py") if p.stem != "__init__")
    code = "\n".join(
        [f"import facial_emotion.inference.{m}" for m in inference]
        + [f"import facial_emotion.results.{m}" for m in results]
        + [
            "import numpy as np",
            "from facial_emotion import EmotionRecognizer",
            "EmotionRecognizer().analyze(np.full((120, 160, 3), 128, np.uint8))",
        ]
    )
    assert "torch" not in loaded_modules(code)


def test_inference_commands_never_import_torch(tmp_path: Path) -> None:
    photo = tmp_path / "gray.png"
    cv2.imwrite(str(photo), np.full((120, 160), 100, np.uint8))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10, (160, 120))
    for i in range(5):
        writer.write(np.full((120, 160, 3), 50 + 20 * i, np.uint8))
    writer.release()
    for argv in (
        ["analyze", str(photo), "--json", "--csv", str(tmp_path / "o.csv")],
        ["video", str(video), "--json", "--timeline", str(tmp_path / "t.csv")],
        ["analyze", str(tmp_path / "missing.jpg")],  # the error path too
        ["batch", str(photo), str(video), "--out", str(tmp_path / "batch"), "--workers", "2", "--quiet"],
    ):
        code = (
            "import contextlib, io\nfrom facial_emotion.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    rc = main({argv!r})\n"
            "assert rc in (0, 1), rc"
        )
        modules = loaded_modules(code)
        assert "torch" not in modules and "matplotlib" not in modules, argv


def _module_level_imports(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:  # statements at module level only (not inside functions)
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def _all_imports(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def test_nothing_outside_training_imports_training() -> None:
    checked = 0
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "training":
            continue
        tree = ast.parse(path.read_text())
        # the command's modules import training inside the functions of the commands that train
        imports = _module_level_imports(tree) if rel.parts[0] == "cli" else _all_imports(tree)
        offending = [m for m in imports if m.startswith("facial_emotion.training")]
        assert not offending, f"{rel} imports {offending}"
        checked += 1
    assert checked > 20


def test_video_and_face_stream_give_the_same_faces() -> None:
    """analyze_video is a reader around FaceStream: the same frames through a FaceStream by hand give
    the same tracked faces, frame by frame."""
    from facial_emotion import EmotionRecognizer
    from facial_emotion.inference.stream import FaceStream
    from facial_emotion.inference.video import analyze_video, frames, open_capture

    video = need_shared("media", "woman2.mp4")
    rec = EmotionRecognizer(detector="blazeface")
    seen: list[list] = []
    analyze_video(
        rec, str(video), smoothing=0.5, max_frames=40, on_frame=lambda i, f, faces, fps: seen.append(faces)
    )
    stream = FaceStream(rec, smoothing=0.5)
    cap = open_capture(str(video))
    by_hand = [stream.process(frame) for _, frame in zip(range(40), frames(cap), strict=False)]
    cap.release()
    assert len(seen) == len(by_hand) == 40
    assert sum(len(f) for f in seen) >= 35
    timed: list[tuple[int, float]] = []  # the same frames, with each one's time in the file
    result = analyze_video(
        rec, str(video), max_frames=40, on_timed_frame=lambda i, t, f, faces, fps: timed.append((i, t))
    )
    assert timed == [(i, pytest.approx(i / result.fps, abs=1e-6)) for i in range(40)]
    with pytest.raises(ValueError, match="not both"):
        analyze_video(rec, str(video), on_frame=print, on_timed_frame=print)
    for a, b in zip(seen, by_hand, strict=True):
        assert [(f.track_id, f.box, f.emotion) for f in a] == [(f.track_id, f.box, f.emotion) for f in b]
        for fa, fb in zip(a, b, strict=True):
            assert fa.scores == pytest.approx(fb.scores, abs=1e-5)


def test_service_stream_and_face_stream_give_the_same_faces() -> None:
    """The live route feeds each connection's frames to one FaceStream: JPEG frames sent one at a time
    come back with the faces a FaceStream gives for the same decoded frames."""
    ws_client = pytest.importorskip("websockets.sync.client")
    from facial_emotion import EmotionRecognizer
    from facial_emotion.inference.decode import from_bytes
    from facial_emotion.inference.stream import FaceStream
    from facial_emotion.inference.video import frames, open_capture
    from facial_emotion.results.schema import face_json
    from facial_emotion.service import create_app
    from facial_emotion.service.background import BackgroundServer

    video = need_shared("media", "woman2.mp4")
    cap = open_capture(str(video))
    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for _, f in zip(range(20), frames(cap), strict=False)]
    cap.release()
    stream = FaceStream(EmotionRecognizer(detector="blazeface"), smoothing=0.4)
    expected = [[face_json(f) for f in stream.process(from_bytes(j))] for j in jpegs]
    got = []
    with (
        BackgroundServer(create_app(detector="blazeface", workers=1)) as server,
        ws_client.connect(f"{server.ws_url}/v1/stream?smooth=0.4") as ws,
    ):
        for j in jpegs:
            ws.send(j)
            reply = json.loads(ws.recv(timeout=60))
            while reply["type"] == "event":  # a change fires once a second has passed: under load, here
                reply = json.loads(ws.recv(timeout=60))
            assert reply["type"] == "result", reply
            got.append(reply["faces"])
    assert sum(len(f) for f in got) >= 15
    for a, b in zip(got, expected, strict=True):
        assert [(f["track_id"], f["box"], f["emotion"]) for f in a] == [
            (f["track_id"], f["box"], f["emotion"]) for f in b
        ]


def test_the_stream_refuses_a_smoothing_video_would_refuse() -> None:
    """?smooth= was clamped to 0.95 silently, and anything not a number became 0."""
    ws_client = pytest.importorskip("websockets.sync.client")
    from websockets.exceptions import ConnectionClosed

    from facial_emotion.service import create_app
    from facial_emotion.service.background import BackgroundServer

    with BackgroundServer(create_app(workers=1)) as server:
        for bad in ("abc", "1", "-0.1", "nan"):
            with (
                ws_client.connect(f"{server.ws_url}/v1/stream?smooth={bad}") as ws,
                pytest.raises(ConnectionClosed) as closed,
            ):
                ws.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            assert "smooth must be a number in 0..1" in closed.value.rcvd.reason
