"""The web service end to end: the real app on uvicorn, the default model, real images over HTTP.

Needs the [serve] extra, the real media in $FACIAL_EMOTION_SHARED/media (default ../shared) and the
default model (the built-in one, or $FACIAL_EMOTION_MODEL). Emotions are not asserted (the model
changes); counts, structure, probabilities and status codes are.
"""

from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the service needs the [serve] extra")
httpx = pytest.importorskip("httpx")
ws_client = pytest.importorskip("websockets.sync.client")

import facial_emotion  # noqa: E402
from facial_emotion.model_file import default_model_path  # noqa: E402
from facial_emotion.service import create_app  # noqa: E402
from facial_emotion.service.background import BackgroundServer  # noqa: E402

pytestmark = pytest.mark.shared

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACIAL_EMOTION_SHARED", REPO.parent / "shared"))
MEDIA = SHARED / "media"
CAP = 1024 * 1024  # a small upload cap so the 413 test sends little; every test image is below it
MAX_PIXELS = 20_000_000


@pytest.fixture(scope="session")
def media() -> Path:
    if not (MEDIA / "two_people.jpg").is_file():
        pytest.skip(f"!!! SKIPPED: real media not found in {MEDIA} (set FACIAL_EMOTION_SHARED) !!!")
    if not default_model_path().is_file():
        pytest.skip(
            f"!!! SKIPPED: no model at {default_model_path()} (build it or set FACIAL_EMOTION_MODEL) !!!"
        )
    return MEDIA


@pytest.fixture(scope="session")
def server(media):
    with BackgroundServer(create_app(max_upload_bytes=CAP, max_pixels=MAX_PIXELS)) as s:
        yield s


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def check_faces(body: dict, n: int, width: int | None = None, height: int | None = None) -> None:
    assert set(body) >= {"faces", "width", "height", "model"}
    assert len(body["faces"]) == n
    if width is not None:
        assert (body["width"], body["height"]) == (width, height)
    for face in body["faces"]:
        x, y, w, h = face["box"]
        assert w > 0 and h > 0 and 0 <= x < body["width"] and 0 <= y < body["height"]
        scores = face["scores"]
        assert sorted(scores) == sorted(facial_emotion.EMOTIONS)
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-3)
        assert all(0.0 <= p <= 1.0 for p in scores.values())
        assert face["emotion"] == max(scores, key=scores.get)
        assert face["confidence"] == pytest.approx(scores[face["emotion"]], abs=1e-4)


def is_json_error(r, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and body["error"] and "Traceback" not in body["error"]


# --- POST /v1/analyze -----------------------------------------------------------------------------


def test_two_people_multipart(client, media):
    path = media / "two_people.jpg"
    r = client.post("/v1/analyze", files={"file": (path.name, path.read_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    h, w = facial_emotion.load_image(path).shape[:2]
    check_faces(r.json(), 2, w, h)
    assert r.json()["model"]["name"] == default_model_path().name


def test_no_faces_is_200_with_empty_list(client, media):
    r = client.post(
        "/v1/analyze", content=(media / "no-faces.jpg").read_bytes(), headers={"content-type": "image/jpeg"}
    )
    assert r.status_code == 200, r.text
    check_faces(r.json(), 0)


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream", None])
def test_raw_body_equals_multipart(client, media, content_type):
    data = (media / "justin.jpg").read_bytes()
    headers = {"content-type": content_type} if content_type else {}
    raw = client.post("/v1/analyze", content=data, headers=headers)
    multi = client.post("/v1/analyze", files={"file": ("justin.jpg", data, "image/jpeg")})
    assert raw.status_code == multi.status_code == 200
    check_faces(raw.json(), 1)
    assert raw.json()["faces"] == multi.json()["faces"]


def test_rgba_png(client, media):
    r = client.post(
        "/v1/analyze", files={"file": ("32bit.png", (media / "32bit.png").read_bytes(), "image/png")}
    )
    assert r.status_code == 200, r.text
    check_faces(r.json(), 1)


def test_annotate_returns_a_jpeg(client, media):
    r = client.post(
        "/v1/analyze?annotate=true", files={"file": ("two.jpg", (media / "two_people.jpg").read_bytes())}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    jpeg = base64.b64decode(body["annotated_jpeg_base64"])
    assert jpeg[:3] == b"\xff\xd8\xff"
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (body["height"], body["width"])
    plain = client.post("/v1/analyze", files={"file": ("two.jpg", (media / "two_people.jpg").read_bytes())})
    assert "annotated_jpeg_base64" not in plain.json()


# --- limits and errors ----------------------------------------------------------------------------


def test_oversized_upload_is_413(client):
    big = b"\xff\xd8\xff" + bytes(CAP + 10)
    raw = client.post("/v1/analyze", content=big, headers={"content-type": "image/jpeg"})
    huge = b"\xff\xd8\xff" + bytes(2 * CAP)  # past the form's slack too: refused on its declared size
    for r in (
        raw,
        *(client.post("/v1/analyze", files={"file": ("b.jpg", d, "image/jpeg")}) for d in (big, huge)),
    ):
        is_json_error(r, 413)
        assert f"limit {CAP} bytes" in r.json()["error"]  # the limit the user set, however it was sent


def test_oversized_chunked_upload_is_413(client):
    # No Content-Length: the cap must hold while streaming, not only on the declared size.
    def chunks():
        yield b"\xff\xd8\xff"
        for _ in range(CAP // 65536 + 2):
            yield bytes(65536)

    is_json_error(client.post("/v1/analyze", content=chunks(), headers={"content-type": "image/jpeg"}), 413)


def test_too_many_pixels_is_413(client):
    ok, png = cv2.imencode(".png", np.zeros((5000, 5000), np.uint8))  # 25 MP in a few kB
    assert ok and len(png) < CAP
    r = client.post("/v1/analyze", content=png.tobytes(), headers={"content-type": "image/png"})
    is_json_error(r, 413)
    assert "too large" in r.json()["error"]


@pytest.mark.parametrize(
    "content_type, data",
    [
        ("text/plain", b"hello, world"),
        ("application/json", b'{"a": 1}'),
        ("application/octet-stream", b"plain text"),
    ],
)
def test_not_an_image_type_is_415(client, content_type, data):
    is_json_error(client.post("/v1/analyze", content=data, headers={"content-type": content_type}), 415)


def test_text_part_in_multipart_is_415(client):
    is_json_error(client.post("/v1/analyze", files={"file": ("notes.txt", b"hello", "text/plain")}), 415)


def test_non_image_bytes_named_as_an_image_are_415(client, media):
    """A text file named .jpg: browsers and curl send it as image/jpeg, and it was a 422 ("not an
    image") where README says a non-image is a 415; a broken JPEG stays a 422."""
    is_json_error(client.post("/v1/analyze", files={"file": ("notes.jpg", b"hello", "image/jpeg")}), 415)
    is_json_error(
        client.post("/v1/analyze", content=b"hello world", headers={"content-type": "image/png"}), 415
    )
    truncated = (media / "justin.jpg").read_bytes()[:4000]
    is_json_error(client.post("/v1/analyze", content=truncated, headers={"content-type": "image/jpeg"}), 422)


@pytest.mark.parametrize("kind", ["truncated", "random", "empty"])
def test_corrupt_image_is_4xx_json(client, media, kind):
    data = {
        "truncated": (media / "justin.jpg").read_bytes()[:4000],
        "random": b"\xff\xd8\xff" + np.random.default_rng(0).bytes(5000),
        "empty": b"",
    }[kind]
    r = client.post("/v1/analyze", content=data, headers={"content-type": "image/jpeg"})
    assert 400 <= r.status_code < 500
    is_json_error(r, r.status_code)


def test_missing_file_field_and_bad_query(client, media):
    is_json_error(
        client.post("/v1/analyze", files={"photo": ("j.jpg", (media / "justin.jpg").read_bytes())}), 422
    )
    is_json_error(client.post("/v1/analyze?annotate=maybe", content=b"\xff\xd8\xff"), 422)


def test_unknown_path_and_method_are_json(client):
    is_json_error(client.get("/v1/nothing"), 404)
    is_json_error(client.get("/v1/analyze"), 405)


def test_request_timeout_is_504(media):
    # A 4000 px photo takes a few hundred ms to decode and search, the deadline is 1 ms: the margin keeps
    # a busy CI machine (an event loop that looks late) from seeing the result in time.
    big = cv2.resize(cv2.imread(str(media / "two_people.jpg")), (4000, 3000))
    upload = cv2.imencode(".jpg", big)[1].tobytes()
    with BackgroundServer(create_app(request_timeout=0.001, workers=1)) as s:
        r = httpx.post(f"{s.url}/v1/analyze", content=upload, timeout=60)
    is_json_error(r, 504)


def test_no_cors_unless_configured(client):
    r = client.get("/v1/model", headers={"origin": "https://example.org"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_when_configured(media):
    with BackgroundServer(create_app(cors_origins=["https://example.org"], workers=1)) as s:
        r = httpx.get(f"{s.url}/v1/model", headers={"origin": "https://example.org"})
    assert r.headers["access-control-allow-origin"] == "https://example.org"


# --- the other endpoints --------------------------------------------------------------------------


def test_model_card(client):
    card = client.get("/v1/model").json()
    assert card["classes"] == list(facial_emotion.EMOTIONS)
    assert set(card["display_names"]) == set(card["colors"]) == set(card["classes"])
    assert all(len(c) == 7 and c.startswith("#") for c in card["colors"].values())
    assert card["input_size"]["face"] >= card["input_size"]["crop"] > 0
    assert card["version"] == facial_emotion.__version__
    assert "val_accuracy" in card and card["limits"]["max_upload_bytes"] == CAP


def test_healthz_docs_openapi(client):
    assert client.get("/healthz").json()["status"] == "ok"
    docs = client.get("/docs")
    assert docs.status_code == 200
    # Swagger UI comes from the package (fastapi-offline), so the docs work offline too.
    assert "cdn" not in docs.text.lower() and "/static-offline-docs/swagger-ui-bundle.js" in docs.text
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/v1/analyze" in spec["paths"] and "/v1/model" in spec["paths"]
    # Every answer an endpoint gives is in its schema, and only those (the reload listed 413-504).
    feedback = spec["paths"]["/v1/feedback"]["post"]["responses"]
    assert feedback["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/FeedbackOut")
    assert "404" in feedback
    assert set(spec["paths"]["/v1/model/reload"]["post"]["responses"]) == {"200", "403", "422"}
    # Health checks and uptime probes often send HEAD: it was a 405.
    for path in ("/healthz", "/v1/model", "/"):
        head = client.head(path)
        assert head.status_code == 200 and head.content == b"", path


def test_page_uses_no_cdn(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    for text in (r.text, client.get("/static/app.js").text, client.get("/static/style.css").text):
        assert "://" not in text.replace("${proto}://", ""), "the page must load nothing from other hosts"


def test_concurrent_requests(client, media):
    images = [("two_people.jpg", 2), ("justin.jpg", 1), ("no-faces.jpg", 0)]
    jobs = [images[i % len(images)] for i in range(16)]

    def one(job):
        name, n = job
        r = client.post("/v1/analyze", files={"file": (name, (media / name).read_bytes(), "image/jpeg")})
        return r.status_code, len(r.json().get("faces", [])), n

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, jobs))
    assert all(status == 200 for status, _, _ in results), results
    assert all(got == want for _, got, want in results), results


# --- WS /v1/stream --------------------------------------------------------------------------------


def video_frames(media: Path, n: int) -> list[bytes]:
    cap = cv2.VideoCapture(str(media / "woman2.mp4"))
    frames = []
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        frame = cv2.resize(frame, (640, round(frame.shape[0] * 640 / frame.shape[1])))
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    cap.release()
    assert len(frames) == n, "woman2.mp4 is shorter than expected"
    return frames


def replies_until(ws, last_frame: int, timeout: float = 60) -> list[dict]:
    """Read replies until the one for ``last_frame`` (the newest is always answered)."""
    out, deadline = [], time.monotonic() + timeout
    while True:
        msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        out.append(msg)
        if msg.get("frame") == last_frame:
            return out


def test_stream_answers_frames(server, media):
    frames = video_frames(media, 3)
    with ws_client.connect(f"{server.ws_url}/v1/stream") as ws:
        replies = []
        for i, frame in enumerate(frames, 1):  # one at a time: nothing is dropped
            ws.send(frame)
            replies += replies_until(ws, i)
    assert [r["frame"] for r in replies] == [1, 2, 3]
    for r in replies:
        assert r["type"] == "result" and r["dropped"] == 0
        check_faces(r, len(r["faces"]), 640, r["height"])
    assert any(r["faces"] for r in replies), "no face found in three frames of woman2.mp4"
    assert all("track_id" in f for r in replies for f in r["faces"])


def test_stream_drops_stale_frames(server, media):
    frames = video_frames(media, 20)
    with ws_client.connect(f"{server.ws_url}/v1/stream") as ws:
        for frame in frames:  # a burst far faster than the CPU can analyse
            ws.send(frame)
        replies = replies_until(ws, len(frames))
    assert all(r["type"] == "result" for r in replies)
    # Every frame was either answered or counted as dropped, and the newest was answered.
    assert sum(1 + r["dropped"] for r in replies) == len(frames)
    assert replies[-1]["dropped_total"] > 0 and len(replies) < len(frames)


def test_stream_bad_messages_get_error_replies(server, media):
    with ws_client.connect(f"{server.ws_url}/v1/stream") as ws:
        ws.send("hello")
        assert "error" in json.loads(ws.recv(timeout=30))
        ws.send(b"definitely not a jpeg")
        assert "error" in json.loads(ws.recv(timeout=30))
        ws.send((media / "justin.jpg").read_bytes())  # the connection still works afterwards
        msg = json.loads(ws.recv(timeout=60))
        assert msg["type"] == "result" and len(msg["faces"]) == 1


def test_stream_refuses_foreign_origin(server):
    with (
        pytest.raises(Exception) as err,
        ws_client.connect(f"{server.ws_url}/v1/stream", origin="https://evil.example"),
    ):
        pass
    assert "403" in str(err.value)
