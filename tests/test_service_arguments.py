"""The service's Python API refuses bad arguments early and keeps its promises: one CORS origin given
as a string, limits checked before the model loads, a BackgroundServer that failed to start leaves
nothing serving, and /openapi.json describes every field /v1/analyze sends.

The argument checks need no data; the rest run the real app on uvicorn with the default model and the
real photos in $FACIAL_EMOTION_SHARED/media.
"""

from __future__ import annotations

import asyncio
import math
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the service needs the [serve] extra")
httpx = pytest.importorskip("httpx")

from conftest import need_shared  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from facial_emotion.model_file import default_model_path  # noqa: E402
from facial_emotion.service import create_app  # noqa: E402
from facial_emotion.service.background import BackgroundServer  # noqa: E402
from facial_emotion.service.settings import ServiceSettings  # noqa: E402


def need_model() -> None:
    if not default_model_path().is_file():
        pytest.skip(
            f"!!! SKIPPED: no model at {default_model_path()} (build it or set FACIAL_EMOTION_MODEL) !!!"
        )


def refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=5)
    except httpx.ConnectError:
        return True
    return False


# --- limits: a ValueError naming the argument, before the model loads -------------------------------

BAD_LIMITS = [
    ("request_timeout", 0),
    ("request_timeout", -1),
    ("request_timeout", math.nan),
    ("request_timeout", math.inf),
    ("max_side", 0),
    ("max_side", -100),
    ("max_side", 512.5),
    ("max_pixels", 0),
    ("max_pixels", -1),
    ("max_pixels", 1.5),
    ("max_upload_bytes", 0),
    ("max_upload_bytes", -1),
    ("decode_slots", 0),
    ("decode_slots", -2),
    ("workers", 0),
    ("workers", -1),
    ("workers", 1.5),
]


@pytest.mark.parametrize("name, value", BAD_LIMITS)
def test_bad_limit_fails_before_the_model_loads(tmp_path: Path, name: str, value: float):
    # A model file that does not exist: had the model been loaded first, this would be a ModelFileError.
    missing = tmp_path / "missing.onnx"
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        create_app(model=missing, **{name: value})


@pytest.mark.parametrize("name, value", [(n, v) for n, v in BAD_LIMITS if n != "workers"])
def test_bad_limit_in_service_settings(name: str, value: float):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        ServiceSettings.create(**{name: value})
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        ServiceSettings(**{name: value})  # made directly, too


def test_values_the_cli_passes_are_accepted():
    # cmd_serve: int(MB * 1024 * 1024), int(MP * 1e6) or None, a float timeout, an int or None for workers
    s = ServiceSettings.create(int(0.5 * 1024 * 1024), int(0.3 * 1e6), 0.001, ["https://a.example"])
    assert (s.max_upload_bytes, s.max_pixels, s.request_timeout) == (524288, 300000, 0.001)
    assert ServiceSettings.create(max_pixels=None).max_pixels > 0  # the process's setting
    s = ServiceSettings.create(max_pixels=2e6, max_side=1024.0, decode_slots=3)  # whole floats are fine
    assert (s.max_pixels, s.max_side, s.decode_slots) == (2_000_000, 1024, 3)
    assert all(type(v) is int for v in (s.max_pixels, s.max_side, s.decode_slots, s.max_upload_bytes))


def test_cors_origin_as_one_string_is_one_origin():
    assert ServiceSettings.create(cors_origins="https://example.com").cors_origins == ("https://example.com",)
    assert ServiceSettings(cors_origins="https://example.com").cors_origins == ("https://example.com",)  # type: ignore[arg-type]
    assert ServiceSettings.create(cors_origins=None).cors_origins == ()


# --- CORS over HTTP ---------------------------------------------------------------------------------


@pytest.mark.shared
def test_single_string_origin_gets_the_cors_header():
    need_model()
    app = create_app(cors_origins="https://example.com", workers=1)
    assert app.state.settings.cors_origins == ("https://example.com",)
    with BackgroundServer(app) as s:
        ok = httpx.get(f"{s.url}/v1/model", headers={"origin": "https://example.com"})
        preflight = httpx.options(
            f"{s.url}/v1/analyze",
            headers={"origin": "https://example.com", "access-control-request-method": "POST"},
        )
        other = httpx.get(f"{s.url}/v1/model", headers={"origin": "https://other.example"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://example.com"
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "https://example.com"
    assert "access-control-allow-origin" not in other.headers


# --- BackgroundServer ---------------------------------------------------------------------------------


def slow_start_app(seconds: float) -> FastAPI:
    """An app whose start-up (lifespan) takes ``seconds``, as a slow model load would."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await asyncio.sleep(seconds)
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


@pytest.mark.parametrize("timeout", [0, -1, math.nan])
def test_non_positive_startup_timeout_is_refused(timeout: float):
    with pytest.raises(ValueError, match="startup_timeout"):
        BackgroundServer(slow_start_app(0), startup_timeout=timeout)


def test_start_that_times_out_leaves_nothing_serving():
    server = BackgroundServer(slow_start_app(1.5), startup_timeout=0.2)
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="did not start within 0.2 s"):
        server.start()
    # start() stopped it: the server thread is gone and nobody answers on the port, not even once the
    # slow start-up would have finished (before the fix it went on serving for the life of the process).
    assert not server.thread.is_alive()
    time.sleep(max(0.0, began + 2.0 - time.monotonic()))
    assert refused(server.url)


def test_start_that_fails_raises_and_closes():
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        raise RuntimeError("model missing")
        yield

    server = BackgroundServer(FastAPI(lifespan=lifespan), startup_timeout=10)
    with pytest.raises(RuntimeError, match="did not start"):
        server.start()
    assert not server.thread.is_alive() and server.sock.fileno() == -1
    assert refused(server.url)


def test_a_quick_start_still_serves():
    with BackgroundServer(slow_start_app(0.1), startup_timeout=5) as s:
        assert httpx.get(f"{s.url}/healthz", timeout=5).json() == {"status": "ok"}
    assert refused(s.url)


# --- /openapi.json describes what /v1/analyze sends ---------------------------------------------------

JSON_TYPES = {
    "integer": int,
    "number": (int, float),
    "string": str,
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}


def fits(value: object, prop: dict) -> bool:
    """``value`` has one of the JSON types the schema property allows (its ``type`` or ``anyOf``)."""
    types = [alt["type"] for alt in prop.get("anyOf", [prop])]
    if isinstance(value, bool):  # a JSON boolean is no number
        return "boolean" in types
    return any(isinstance(value, JSON_TYPES[t]) for t in types)


@pytest.mark.shared
def test_openapi_face_schema_matches_analyze_responses():
    need_model()
    images = [need_shared("media", name).read_bytes() for name in ("two_people.jpg", "justin.jpg")]
    app = create_app(workers=1)
    classifier = app.state.engine.recognizer.classifier
    with BackgroundServer(app) as s, httpx.Client(base_url=s.url, timeout=60) as client:
        face_schema = client.get("/openapi.json").json()["components"]["schemas"]["FaceOut"]
        props, required = face_schema["properties"], set(face_schema["required"])
        assert props["uncertain"]["type"] == "boolean" and "uncertain" in required
        assert {alt["type"] for alt in props["runner_up"]["anyOf"]} == {"string", "null"}
        assert "runner_up" not in required

        # The model's own threshold, then none uncertain, then every face uncertain (the threshold is
        # read per analysis), so both shapes of a face are sent whatever today's model says.
        faces = []
        for threshold in (classifier.uncertain_below, 0.0, 1.01):
            classifier.uncertain_below = threshold
            for data in images:
                r = client.post("/v1/analyze", content=data, headers={"content-type": "image/jpeg"})
                assert r.status_code == 200, r.text
                assert r.json()["faces"], "no face found in a test photo"
                faces += [(threshold, face) for face in r.json()["faces"]]

    assert {face["uncertain"] for _, face in faces} == {True, False}
    for threshold, face in faces:
        assert set(face) <= set(props), f"fields missing from FaceOut: {set(face) - set(props)}"
        assert required <= set(face)
        assert all(fits(value, props[key]) for key, value in face.items()), face
        if threshold == 1.01:
            assert face["uncertain"]
        if threshold == 0.0:
            assert not face["uncertain"]
        # runner_up: present only for an uncertain face, another of the emotions scored
        assert ("runner_up" in face) == face["uncertain"]
        if face["uncertain"]:
            assert face["runner_up"] in face["scores"] and face["runner_up"] != face["emotion"]
