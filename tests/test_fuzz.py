"""Fuzzing (issue #20): generated bad inputs for ``analyze``, ``video``, the csv and folder readers and
the HTTP / WebSocket API, seeded so that a failure can be replayed.

What must hold for every case: no traceback; only the documented outcome (an image gives faces or an
``ImageError``; a video a result or a ``VideoError``; a dataset a ``FaceDataset`` or a
``DatasetError``; HTTP 200 or a JSON 400/413/415/422; a WebSocket reply of type result or error);
good inputs in the same batch are still reported; the server is still healthy afterwards.

The CI run does about 300 cases in well under a minute. ``pytest -m fuzz tests/test_fuzz.py`` runs
the long variant (FUZZ_SCALE times as many, FUZZ_SEED to replay another seed) and writes its figures
to $FACIAL_EMOTION_ARTIFACTS/fuzz.json.
"""

from __future__ import annotations

import io
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ARTIFACTS, need_shared, synthetic_faces, write_fer_csv
from PIL import Image

from facial_emotion import EmotionRecognizer
from facial_emotion.data import DatasetError, load_dataset
from facial_emotion.inference.decode import ImageError, from_bytes
from facial_emotion.inference.video import VideoError, analyze_video
from facial_emotion.labels import EMOTIONS

SEED = int(os.environ.get("FUZZ_SEED", "20"))
LONG_SCALE = int(os.environ.get("FUZZ_SCALE", "10"))
HTTP_OK = {200, 400, 413, 415, 422}  # the documented statuses of POST /v1/analyze (503/504: load)
FIGURES: dict[str, dict] = {}


# --- generated bad inputs -------------------------------------------------------------------------


def encoded_samples() -> list[bytes]:
    """Small real encodings to mutate: a face photo as JPEG (baseline and progressive), PNG, GIF,
    WebP, BMP and TIFF."""
    img = Image.open(need_shared("media", "justin.jpg")).convert("RGB")
    img = img.resize((img.width // 2, img.height // 2))
    out = []
    for fmt, kw in (
        ("JPEG", {"quality": 80}),
        ("JPEG", {"progressive": True}),
        ("PNG", {}),
        ("GIF", {}),
        ("WEBP", {}),
        ("BMP", {}),
        ("TIFF", {}),
    ):
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        out.append(buf.getvalue())
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One of the ways files get damaged or forged."""
    if len(data) < 2:  # nothing left to damage
        return rng.randbytes(rng.randrange(0, 100))
    kind = rng.randrange(9)
    b = bytearray(data)
    if kind == 0:  # flipped bytes
        for _ in range(rng.randint(1, 64)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncated
        b = b[: rng.randrange(1, len(b))]
    elif kind == 2:  # a run of junk overwriting the middle
        start = rng.randrange(len(b))
        b[start : start + 512] = rng.randbytes(min(512, len(b) - start))
    elif kind == 3:  # the header only, then zeros
        b = b[:64] + bytes(rng.randrange(10, 5000))
    elif kind == 4:  # random bytes behind a real signature
        b = b[:8] + rng.randbytes(rng.randrange(0, 4000))
    elif kind == 5:  # forged dimensions: the size fields of the header set to huge values
        for i in range(min(len(b), 200)):
            if rng.random() < 0.05:
                b[i] = 0xFF
    elif kind == 6:  # duplicated and shuffled chunks
        cut = sorted(rng.randrange(len(b)) for _ in range(4))
        parts = [b[: cut[0]], b[cut[0] : cut[1]], b[cut[1] : cut[2]], b[cut[2] :]]
        rng.shuffle(parts)
        b = bytearray(b"".join(parts))
    elif kind == 7:  # empty, or nearly
        b = b[: rng.randrange(0, 4)]
    else:  # pure noise
        b = bytearray(rng.randbytes(rng.randrange(1, 3000)))
    return bytes(b)


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (its pixel data does not follow)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bad_images(n: int, rng: random.Random) -> list[bytes]:
    samples = encoded_samples()
    out = [bomb_png(100_000, 100_000), bomb_png(1, 1), bomb_png(0, 5), b"", b"\xff\xd8\xff"]
    out += [mutate(rng.choice(samples), rng) for _ in range(n - len(out))]
    return out


def tally(name: str, outcomes: Counter) -> None:
    FIGURES[name] = dict(sorted(outcomes.items()))


# --- analyze ----------------------------------------------------------------------------------------


def fuzz_analyze(n: int, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    recognizer = EmotionRecognizer()
    justin = need_shared("media", "justin.jpg")
    files: list[str] = [str(justin)]
    for i, data in enumerate(bad_images(n, rng)):
        path = tmp_path / f"bad_{i}{rng.choice(['.jpg', '.png', '.gif', '.webp', '.tif', ''])}"
        path.write_bytes(data)
        files.append(str(path))
    files.append(str(justin))
    outcomes: Counter = Counter()
    results = list(recognizer.analyze_each(files, timeout=30))
    assert len(results) == len(files)
    for r in results:
        outcomes["error" if r.error else "faces" if r.faces else "no face"] += 1
        if r.error:
            assert "Traceback" not in r.error and r.error.startswith(r.source)
    assert len(results[0].faces) == len(results[-1].faces) == 1  # the good ones around the bad ones
    tally("analyze (in process)", outcomes)
    # The command itself, on a sample of the same files: exit 1, every input reported, JSON intact.
    sample = [files[0], *rng.sample(files[1:-1], min(40, n)), files[-1]]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "facial_emotion",
            "analyze",
            *sample,
            "--json",
            "--csv",
            str(tmp_path / "o.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert len(doc) == len(sample) and len(doc[0]["faces"]) == len(doc[-1]["faces"]) == 1
    assert (tmp_path / "o.csv").is_file()


def test_fuzz_analyze(tmp_path: Path) -> None:
    fuzz_analyze(80, tmp_path)


# --- video --------------------------------------------------------------------------------------------


def small_video(path: Path) -> Path:
    frame = cv2.resize(cv2.imread(str(need_shared("media", "justin.jpg"))), (160, 120))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (160, 120))
    for i in range(12):
        writer.write(np.roll(frame, i, axis=1))
    writer.release()
    return path


def fuzz_video(n: int, tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    recognizer = EmotionRecognizer()
    good = small_video(tmp_path / "good.avi")
    data = good.read_bytes()
    mp4 = need_shared("media", "woman2.mp4").read_bytes()[:200_000]  # the head of a real H.264 file
    outcomes: Counter = Counter()
    for i in range(n):
        path = tmp_path / f"bad_{i}{rng.choice(['.avi', '.mp4', '.mkv'])}"
        path.write_bytes(mutate(rng.choice([data, mp4]), rng))
        try:
            result = analyze_video(recognizer, str(path), max_frames=15)
            assert result.frames_read > 0
            outcomes["read"] += 1
        except VideoError as e:
            assert str(path) in str(e)
            outcomes["VideoError"] += 1
    assert analyze_video(recognizer, str(good)).frames_read == 12  # still works after all that
    tally("video", outcomes)


def test_fuzz_video(tmp_path: Path) -> None:
    fuzz_video(25, tmp_path)


# --- csv and folder readers -------------------------------------------------------------------------


def mutate_csv_line(line: str, rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    raw = line.encode("latin-1")
    if not raw:  # mutated to nothing before
        return b","
    if kind == 0:
        return raw[: rng.randrange(len(raw))]
    if kind == 1:
        return raw.replace(b",", b";", 1)
    if kind == 2:
        return str(rng.choice([-1, 7, 99, "x", ""])).encode() + raw[1:]
    if kind == 3:
        return raw + b" 300"
    if kind == 4:
        b = bytearray(raw)
        b[rng.randrange(len(b))] = rng.choice([0xFF, 0x00, 0xC3, 0x22])
        return bytes(b)
    if kind == 5:
        return b'"' + raw
    if kind == 6:
        return raw.rsplit(b",", 1)[0] + b",Nowhere"
    return b""


def fuzz_readers(n: int, tmp_path: Path) -> None:
    rng = random.Random(SEED + 2)
    images, labels = synthetic_faces(12)
    outcomes: Counter = Counter()
    for i in range(n):
        path = write_fer_csv(tmp_path / f"c{i}.csv", images, labels, ["Training"] * 12)
        lines = path.read_text().splitlines()
        for _ in range(rng.randint(1, 3)):
            k = rng.randrange(1, len(lines))
            lines[k] = mutate_csv_line(lines[k], rng).decode("latin-1")
        raw = "\n".join(lines).encode("latin-1")
        if rng.random() < 0.2:
            raw = b"\xef\xbb\xbf" + raw
        if rng.random() < 0.1:
            raw = mutate(raw, rng)  # the whole file damaged
        path.write_bytes(raw)
        for skip_bad in (False, True):
            try:
                ds = load_dataset(path, skip_bad=skip_bad, use_cache=False)
                assert 0 < len(ds) <= 12
                outcomes[f"read (skip_bad={skip_bad})"] += 1
            except DatasetError as e:
                assert "Traceback" not in str(e)
                outcomes[f"DatasetError (skip_bad={skip_bad})"] += 1
    # Folders: emotion folders with damaged images, stray files and folders.
    samples = encoded_samples()
    for i in range(max(2, n // 8)):
        root = tmp_path / f"folders{i}"
        for k, (img, lab) in enumerate(zip(images, labels, strict=True)):
            folder = root / (
                EMOTIONS[lab] if rng.random() < 0.8 else rng.choice(["misc", "Ünïcode", ".hidden"])
            )
            folder.mkdir(parents=True, exist_ok=True)
            name = folder / f"{k}{rng.choice(['.png', '.jpg', '.txt', '.webp'])}"
            if rng.random() < 0.3:
                name.write_bytes(mutate(rng.choice(samples), rng))
            else:
                Image.fromarray(img).save(name.with_suffix(".png"))
        try:
            load_dataset(root, use_cache=False)
            outcomes["folders read"] += 1
        except DatasetError:
            outcomes["folders DatasetError"] += 1
    tally("csv and folder readers", outcomes)


def test_fuzz_readers(tmp_path: Path) -> None:
    fuzz_readers(40, tmp_path)


# --- HTTP and WebSocket API ---------------------------------------------------------------------------


def random_request(rng: random.Random, images: list[bytes]) -> tuple[dict[str, str], bytes]:
    body = rng.choice(images)
    kind = rng.randrange(7)
    if kind == 0:
        return {
            "content-type": rng.choice(["image/jpeg", "application/octet-stream", "text/plain", ""])
        }, body
    if kind == 1:  # multipart with a random, possibly broken, boundary
        boundary = rng.choice(["x", "a" * rng.randint(1, 300), "", '"q"', "é", "-" * 70])
        part = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{rng.choice(["file", "f", ""])}"; '
            f'filename="{rng.choice(["a.jpg", "", "x" * 500])}"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode("utf-8", "replace")
        tail = f"\r\n--{boundary}--\r\n".encode("utf-8", "replace")
        return {"content-type": f"multipart/form-data; boundary={boundary}"}, part + body + tail
    if kind == 2:  # multipart cut anywhere
        part = b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + body + b"\r\n--b--\r\n"
        return {"content-type": "multipart/form-data; boundary=b"}, part[: rng.randrange(len(part) + 1)]
    if kind == 3:  # many parts
        part = b'--b\r\nContent-Disposition: form-data; name="p"\r\n\r\nx\r\n' * rng.randint(10, 40)
        return {"content-type": "multipart/form-data; boundary=b"}, part + b"--b--\r\n"
    if kind == 4:
        return {
            "content-type": rng.choice(["multipart/form-data", "multipart/mixed; boundary=b", "image/"])
        }, body
    if kind == 5:  # a header that lies about the type
        return {"content-type": "image/png"}, rng.randbytes(rng.randrange(0, 2000))
    return {}, mutate(body, rng)


def frame_reply(ws) -> dict:
    """The reply to the frame just sent; event messages (a face's emotion changed) are passed over."""
    while (msg := json.loads(ws.recv(timeout=60)))["type"] == "event":
        pass
    return msg


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def fuzz_http(n: int) -> None:
    pytest.importorskip("fastapi", reason="the service needs the [serve] extra")
    httpx = pytest.importorskip("httpx")
    ws_client = pytest.importorskip("websockets.sync.client")
    from facial_emotion.service import create_app
    from facial_emotion.service.background import BackgroundServer

    rng = random.Random(SEED + 3)
    images = bad_images(30, rng) + encoded_samples()
    good = need_shared("media", "justin.jpg").read_bytes()
    outcomes: Counter = Counter()
    app = create_app(workers=2, max_upload_bytes=2 * 1024 * 1024)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(n):
            headers, body = random_request(rng, images)
            query = rng.choice(["", "?annotate=true", "?annotate=maybe", "?x=%ff"])
            raw_headers = {k: v.encode("utf-8") for k, v in headers.items()}  # any bytes, as sent
            r = client.post(f"/v1/analyze{query}", content=body, headers=raw_headers)
            assert r.status_code in HTTP_OK, (r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/json")
            text = r.text
            assert "Traceback" not in text and 'File "' not in text
            if r.status_code != 200:
                assert set(r.json()) == {"error"}
            outcomes[f"HTTP {r.status_code}"] += 1
        for _ in range(max(5, n // 10)):  # not even HTTP
            junk = rng.choice([rng.randbytes(200), b"GET / HTTP/1.1\r\n" + rng.randbytes(100) + b"\r\n\r\n"])
            reply = raw_exchange(server.port, junk)
            if reply:
                head, _, body = reply.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 "), reply[:100]
                if head.startswith(b"HTTP/1.1 400"):  # uvicorn's own 400s are JSON too
                    assert b"content-type: application/json" in head.lower() and json.loads(body)["error"]
                outcomes[f"raw {head[9:12].decode()}"] += 1
            else:
                outcomes["raw closed"] += 1
        # WebSocket: junk frames, text, mutated images; the connection keeps answering.
        with ws_client.connect(f"{server.ws_url}/v1/stream", max_size=None) as ws:
            for _ in range(max(10, n // 5)):
                ws.send(rng.choice([rng.choice(images), rng.randbytes(100), "text"]))
                msg = frame_reply(ws)
                assert msg["type"] in ("result", "error"), msg
                outcomes[f"ws {msg['type']}"] += 1
            ws.send(good)
            msg = frame_reply(ws)  # one reply per frame sent: this one is the good frame's
            assert msg["type"] == "result" and len(msg["faces"]) == 1, msg
        r = client.post("/v1/analyze", content=good, headers={"content-type": "image/jpeg"})
        assert r.status_code == 200 and len(r.json()["faces"]) == 1  # still healthy afterwards
        assert client.get("/healthz").json()["status"] == "ok"
    tally("HTTP and WebSocket API", outcomes)


def test_fuzz_http_and_websocket() -> None:
    fuzz_http(120)


def test_fuzz_decode_directly() -> None:
    """The decoder alone, fastest: every mutation is an image or an ImageError."""
    rng = random.Random(SEED + 4)
    outcomes: Counter = Counter()
    for data in bad_images(60, rng):
        try:
            from_bytes(data, "fuzz", max_side=rng.choice([None, 512]))
            outcomes["image"] += 1
        except ImageError:
            outcomes["ImageError"] += 1
    tally("decoder", outcomes)
    assert sum(outcomes.values()) == 60


# --- the long variant --------------------------------------------------------------------------------


@pytest.mark.fuzz
def test_fuzz_long(tmp_path: Path) -> None:
    """FUZZ_SCALE times the CI cases on every target; figures to $FACIAL_EMOTION_ARTIFACTS/fuzz.json."""
    t0 = time.perf_counter()
    runs: list[tuple[str, Callable[[], None]]] = [
        ("analyze", lambda: fuzz_analyze(80 * LONG_SCALE, tmp_path / "a")),
        ("video", lambda: fuzz_video(25 * LONG_SCALE, tmp_path / "v")),
        ("readers", lambda: fuzz_readers(40 * LONG_SCALE, tmp_path / "r")),
        ("http", lambda: fuzz_http(120 * LONG_SCALE)),
    ]
    for name, run in runs:
        (tmp_path / name[0]).mkdir(exist_ok=True)
        run()
    figures = {
        "seed": SEED,
        "scale": LONG_SCALE,
        "cases": sum(sum(v.values()) for v in FIGURES.values()),
        "seconds": round(time.perf_counter() - t0, 1),
        "outcomes": FIGURES,
        "unexpected": 0,  # any unexpected outcome fails an assertion above
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "fuzz.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
