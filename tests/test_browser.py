"""The page in a real browser: Debian's Chromium driven by Playwright, against the real service.

Photo: upload a photo through the file input and see its faces. Live: Chromium's fake camera plays
a y4m made from woman2.mp4; the page must draw labelled boxes. Screenshots go to
$FACIAL_EMOTION_ARTIFACTS (default <repo>/test-artifacts) for a human to look at.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import pytest

pytest.importorskip("fastapi", reason="the service needs the [serve] extra")
sync_api = pytest.importorskip("playwright.sync_api")

from facial_emotion.model_file import default_model_path  # noqa: E402
from facial_emotion.service import create_app  # noqa: E402
from facial_emotion.service.background import BackgroundServer  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.shared]

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACIAL_EMOTION_SHARED", REPO.parent / "shared"))
MEDIA = SHARED / "media"
CHROMIUM = Path(os.environ.get("FACIAL_EMOTION_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("FACIAL_EMOTION_ARTIFACTS", REPO / "test-artifacts"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",  # grant the camera without a prompt
    "--use-fake-device-for-media-stream",
]


def write_y4m(video: Path, out: Path, frames: int = 60, width: int = 640) -> Path:
    """The first ``frames`` frames of ``video`` as a y4m file, Chromium's fake-camera format."""
    cap = cv2.VideoCapture(str(video))
    with out.open("wb") as f:
        written = 0
        while written < frames:
            ok, frame = cap.read()
            if not ok:
                break
            h = round(frame.shape[0] * width / frame.shape[1]) // 2 * 2  # 4:2:0 needs even sizes
            frame = cv2.resize(frame, (width, h), interpolation=cv2.INTER_AREA)
            if written == 0:
                f.write(f"YUV4MPEG2 W{width} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
            written += 1
    cap.release()
    assert written == frames, f"{video} gave only {written} frames"
    return out


@pytest.fixture(scope="module")
def server():
    if not CHROMIUM.is_file():
        pytest.skip(f"!!! SKIPPED: no Chromium at {CHROMIUM} (apt-get install chromium) !!!")
    if not (MEDIA / "two_people.jpg").is_file():
        pytest.skip(f"!!! SKIPPED: real media not found in {MEDIA} (set FACIAL_EMOTION_SHARED) !!!")
    if not default_model_path().is_file():
        pytest.skip(
            f"!!! SKIPPED: no model at {default_model_path()} (build it or set FACIAL_EMOTION_MODEL) !!!"
        )
    with BackgroundServer(create_app()) as s:
        yield s


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    camera = write_y4m(MEDIA / "woman2.mp4", tmp_path_factory.mktemp("camera") / "woman2.y4m")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera}"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    problems: list[str] = []  # script errors and console errors (a CSP violation shows up here)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.goto(server.url)
    sync_api.expect(pg.get_by_test_id("model-info")).to_contain_text("Model", timeout=20_000)
    yield pg
    context.close()
    # Chromium logs every 4xx fetch as a console error; the API's answers to bad photos are expected,
    # and so is the refused connection a test makes to play a server that is gone.
    problems = [m for m in problems if not re.search(r"status of 4(13|15|22) |ERR_CONNECTION_REFUSED", m)]
    assert not problems, problems


def upload(page, path: Path) -> None:
    page.get_by_test_id("photo-input").set_input_files(str(path))


def test_photo_two_faces(page):
    upload(page, MEDIA / "two_people.jpg")
    sync_api.expect(page.get_by_test_id("face-count")).to_have_text("2", timeout=60_000)
    items = page.get_by_test_id("face-item")
    sync_api.expect(items).to_have_count(2)
    for i in range(2):
        sync_api.expect(items.nth(i).locator(".bars li")).to_have_count(7)
    canvas = page.get_by_test_id("photo-canvas")
    assert canvas.evaluate("c => c.width") > 0
    sync_api.expect(canvas).to_have_attribute("aria-label", re.compile(r"^Photo with 2 faces"))
    page.screenshot(path=ARTIFACTS / "photo-two-people.png", full_page=True)


def test_photo_mesh_overlay(page):
    """The mesh checkbox asks for ?landmarks=true: each face gets its head pose in the list, and the
    mesh's points are drawn in the face's box (the canvas there changes from the plain drawing)."""
    upload(page, MEDIA / "justin.jpg")
    sync_api.expect(page.get_by_test_id("face-count")).to_have_text("1", timeout=60_000)
    canvas = page.get_by_test_id("photo-canvas")
    box_pixels = "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
    plain = canvas.evaluate(box_pixels)
    sync_api.expect(page.get_by_test_id("face-pose")).to_have_count(0)
    page.get_by_test_id("photo-mesh").check()  # analyses the same photo again, with the mesh
    sync_api.expect(page.get_by_test_id("face-pose")).to_have_text(re.compile(r"yaw -?\d+°"), timeout=60_000)
    meshed = canvas.evaluate(box_pixels)
    assert len(plain) == len(meshed) and plain != meshed
    page.screenshot(path=ARTIFACTS / "photo-mesh.png", full_page=True)


def test_photo_no_face_and_error(page):
    upload(page, MEDIA / "no-faces.jpg")
    sync_api.expect(page.get_by_test_id("photo-status")).to_contain_text("No face", timeout=60_000)
    sync_api.expect(page.get_by_test_id("face-count")).to_have_text("0")
    sync_api.expect(page.get_by_test_id("face-item")).to_have_count(0)
    page.get_by_test_id("photo-input").set_input_files(
        {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"this is not a picture"}
    )
    status = page.get_by_test_id("photo-status")
    sync_api.expect(status).to_contain_text("Could not analyse notes.jpg", timeout=30_000)
    sync_api.expect(status).to_have_class(re.compile(r"\berror\b"))


def test_the_last_photo_picked_wins_and_errors_say_what_to_do(page):
    """A slower earlier upload drew its result over the newer photo's; a server that is gone said
    "Failed to fetch"; the file name came twice in the server's own message."""
    first = {"held": True}

    def slow_first(route):
        if first["held"]:  # the first upload waits until the second has been answered
            first["held"] = False
            page.wait_for_timeout(3000)
        route.continue_()

    page.route("**/v1/analyze*", slow_first)
    upload(page, MEDIA / "two_people.jpg")
    page.wait_for_timeout(300)
    upload(page, MEDIA / "justin.jpg")
    status = page.get_by_test_id("photo-status")
    sync_api.expect(status).to_have_text("1 face found in justin.jpg.", timeout=60_000)
    page.wait_for_timeout(4000)  # the held reply for two_people.jpg has come and gone by now
    sync_api.expect(status).to_have_text("1 face found in justin.jpg.")
    sync_api.expect(page.get_by_test_id("face-count")).to_have_text("1")
    page.unroute("**/v1/analyze*")

    page.get_by_test_id("photo-input").set_input_files(
        {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"this is not a picture"}
    )
    sync_api.expect(status).to_contain_text("Could not analyse notes.jpg: not an image", timeout=30_000)
    page.route("**/v1/analyze*", lambda route: route.abort("connectionrefused"))
    upload(page, MEDIA / "justin.jpg")
    sync_api.expect(status).to_contain_text("the server did not answer", timeout=30_000)
    page.unroute("**/v1/analyze*")


def test_a_photo_over_the_limit_takes_the_previous_result_away(page):
    """The previous photo's faces (and their "wrong?" forms, which would send that photo) stayed
    under the "too large" message."""
    upload(page, MEDIA / "justin.jpg")
    sync_api.expect(page.get_by_test_id("face-count")).to_have_text("1", timeout=60_000)
    sync_api.expect(page.locator("#max-size")).to_have_text("10 MB")
    big = {"name": "big.jpg", "mimeType": "image/jpeg", "buffer": b"\xff" * (10 * 1048576 + 524288)}
    page.get_by_test_id("photo-input").set_input_files(big)
    status = page.get_by_test_id("photo-status")
    sync_api.expect(status).to_have_text("big.jpg is too large (10.5 MB; limit 10 MB).")
    sync_api.expect(page.locator("#photo-result")).to_be_hidden()


def test_a_webp_turned_by_exif_is_shown_upright(page, tmp_path):
    """Chromium does not apply a WebP's EXIF orientation, the server does: the page drew the upright
    result's boxes on a sideways picture. Now it shows the server's upright drawing."""
    from PIL import Image

    upright = Image.open(MEDIA / "two_people.jpg").convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # the pixels as a phone stores them ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... and the tag that turns them upright
    path = tmp_path / "turned.webp"
    stored.save(path, exif=exif.tobytes(), quality=90)
    upload(page, path)
    sync_api.expect(page.get_by_test_id("photo-status")).to_have_text(
        "2 faces found in turned.webp.", timeout=60_000
    )
    width, height = page.get_by_test_id("photo-canvas").evaluate("c => [c.width, c.height]")
    assert width > height and abs(height - width * upright.height / upright.width) <= 1  # as the photo is


def test_an_upside_down_webp_is_drawn_by_the_server(page, tmp_path):
    """EXIF orientation 3 keeps the picture's sides, so the sideways check missed it: Chromium showed
    the WebP upside down with the upright result's boxes on it. The reply's orientation says so now,
    and the page shows the server's drawing."""
    from PIL import Image

    upright = Image.open(MEDIA / "two_people.jpg").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 3  # stored upside down, the tag turns it
    path = tmp_path / "flipped.webp"
    upright.transpose(Image.Transpose.ROTATE_180).save(path, exif=exif.tobytes(), quality=90)
    with page.expect_request(lambda r: "/v1/analyze" in r.url and "annotate=true" in r.url, timeout=60_000):
        upload(page, path)
    sync_api.expect(page.get_by_test_id("photo-status")).to_have_text(
        "2 faces found in flipped.webp.", timeout=60_000
    )
    # and a JPEG with the same tag, which browsers turn themselves, keeps the page's own drawing
    jpeg = tmp_path / "flipped.jpg"
    upright.transpose(Image.Transpose.ROTATE_180).save(jpeg, exif=exif.tobytes(), quality=90)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/v1/analyze" in r.url else None)
    upload(page, jpeg)
    sync_api.expect(page.get_by_test_id("photo-status")).to_have_text(
        "2 faces found in flipped.jpg.", timeout=60_000
    )
    assert asked and not any("annotate=true" in url for url in asked)


def test_tabs_work_with_the_keyboard(page):
    page.get_by_test_id("tab-photo").focus()
    page.keyboard.press("ArrowRight")
    sync_api.expect(page.get_by_test_id("tab-live")).to_have_attribute("aria-selected", "true")
    sync_api.expect(page.get_by_test_id("tab-live")).to_be_focused()
    sync_api.expect(page.locator("#panel-live")).to_be_visible()
    sync_api.expect(page.locator("#panel-photo")).to_be_hidden()
    page.keyboard.press("ArrowLeft")
    sync_api.expect(page.get_by_test_id("tab-photo")).to_have_attribute("aria-selected", "true")


def test_live_camera_draws_labelled_boxes(page):
    page.get_by_test_id("tab-live").click()
    page.get_by_test_id("live-start").click()
    faces = page.get_by_test_id("live-face")
    sync_api.expect(faces.first).to_be_visible(timeout=90_000)
    sync_api.expect(faces.first).to_contain_text("%")
    sync_api.expect(page.get_by_test_id("live-fps")).to_contain_text("fps", timeout=30_000)
    page.wait_for_timeout(3000)  # let the chart collect a few seconds
    # The overlay canvas has something drawn on it (boxes and labels), not only transparent pixels.
    drawn = page.get_by_test_id("live-overlay").evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
    )
    assert drawn > 100
    page.screenshot(path=ARTIFACTS / "live-woman2.png", full_page=True)
    page.get_by_test_id("live-start").click()  # stop
    sync_api.expect(page.get_by_test_id("live-start")).to_have_text("Start camera")


def test_a_server_error_on_the_live_tab_goes_when_results_come_back(page):
    """A frame that timed out under load left "Server: frame timed out" in red for the rest of the
    session, results flowing again under it. The third result is turned into that error here."""
    results = {"n": 0}

    def route(ws):
        server = ws.connect_to_server()

        def from_server(message):
            msg = json.loads(message) if isinstance(message, str) else {}
            if msg.get("type") == "result":
                results["n"] += 1
                if results["n"] == 3:
                    message = json.dumps(
                        {"type": "error", "frame": msg["frame"], "error": "frame timed out after 0.3 s"}
                    )
            ws.send(message)

        server.on_message(from_server)

    page.route_web_socket(re.compile(r"/v1/stream"), route)
    page.evaluate(
        """() => { window.__statuses = [];
            new MutationObserver(() => window.__statuses.push(document.getElementById('live-status').textContent))
              .observe(document.getElementById('live-status'), { childList: true, characterData: true, subtree: true }); }"""
    )
    page.get_by_test_id("tab-live").click()
    page.get_by_test_id("live-start").click()
    status = page.get_by_test_id("live-status")
    page.wait_for_function(
        "() => window.__statuses.some((s) => s.startsWith('Server: frame timed out'))", timeout=90_000
    )
    sync_api.expect(status).to_have_text("Live: analysing the camera.", timeout=30_000)
    sync_api.expect(status).not_to_have_class(re.compile(r"\berror\b"))
    page.get_by_test_id("live-start").click()  # stop
    sync_api.expect(page.get_by_test_id("live-start")).to_have_text("Start camera")


def test_a_double_click_on_start_opens_one_camera_and_stop_closes_it(page):
    """Two clicks while the camera opened started two cameras (and two sockets); Stop closed one and
    the camera light stayed on."""
    page.add_init_script(
        """(() => { window.__tracks = [];
            const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
            navigator.mediaDevices.getUserMedia = async (c) => {
              await new Promise((r) => setTimeout(r, 400));  // as a permission prompt would
              const s = await open(c); window.__tracks.push(...s.getTracks()); return s; }; })()"""
    )
    page.reload()
    sync_api.expect(page.get_by_test_id("model-info")).to_contain_text("Model", timeout=20_000)
    page.get_by_test_id("tab-live").click()
    start = page.get_by_test_id("live-start")
    start.dblclick()  # start, then a second click: Stop while the camera is still opening
    page.wait_for_timeout(1500)
    live = "() => window.__tracks.filter((t) => t.readyState === 'live').length"
    assert page.evaluate(live) == 0 and page.evaluate("() => window.__tracks.length") <= 1
    sync_api.expect(start).to_have_text("Start camera")
    # Start, Stop, Start while the first camera is still opening: one camera runs, Stop closes it.
    start.click()
    start.click()
    start.click()
    sync_api.expect(page.get_by_test_id("live-face").first).to_be_visible(timeout=90_000)
    page.wait_for_timeout(1000)
    assert page.evaluate(live) == 1
    start.click()
    sync_api.expect(start).to_have_text("Start camera")
    assert page.evaluate(live) == 0


def test_live_session_summary_mood_and_downloads(page):
    """Mood panel opted in; when the camera stops, the server's session summary is shown (one person,
    a timeline strip, shares) and offered as CSV and JSON downloads."""
    page.get_by_test_id("tab-live").click()
    sync_api.expect(page.get_by_test_id("mood-panel")).to_be_hidden()  # opt-in: off by default
    page.get_by_test_id("mood-toggle").check()
    page.get_by_test_id("live-start").click()
    sync_api.expect(page.get_by_test_id("live-face").first).to_be_visible(timeout=90_000)
    # asked every 5 s: the dominant mood of the last 30 s and the local table's suggestions for it
    sync_api.expect(page.get_by_test_id("mood-list").locator("li").first).to_be_visible(timeout=30_000)
    sync_api.expect(page.get_by_test_id("mood-name")).to_contain_text("%")
    page.get_by_test_id("live-start").click()  # stop: the summary comes
    summary = page.get_by_test_id("session-summary")
    sync_api.expect(summary).to_be_visible(timeout=30_000)
    people = page.get_by_test_id("session-person")
    sync_api.expect(people.first).to_contain_text("mostly")
    assert people.first.locator(".strip span").count() >= 1
    page.screenshot(path=ARTIFACTS / "live-session.png", full_page=True)
    for testid, check in (
        ("download-csv", lambda text: text.startswith("track_id,") and text.count("\n") >= 2),
        ("download-json", lambda text: json.loads(text)["people"][0]["timeline"]),
    ):
        with page.expect_download() as download:
            page.get_by_test_id(testid).click()
        assert check(Path(download.value.path()).read_text()), testid


def test_phone_layout(browser, server):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    pg = context.new_page()
    pg.goto(server.url)
    upload(pg, MEDIA / "two_people.jpg")
    sync_api.expect(pg.get_by_test_id("face-count")).to_have_text("2", timeout=60_000)
    assert pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
        "horizontal scrolling on a phone"
    )
    pg.screenshot(path=ARTIFACTS / "phone-photo.png", full_page=True)
    context.close()
