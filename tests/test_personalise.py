"""Issue #22's loop through the service: corrections posted, the model swapped without a restart,
and, in the real browser, correct faces -> finetune -> the new model gives the corrected label."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the service needs the [serve] extra")
import httpx  # noqa: E402
from conftest import MEDIA, model_with_description, need_shared, poll  # noqa: E402

from facial_emotion.cli import main  # noqa: E402
from facial_emotion.feedback import FeedbackError, count_corrections, load_feedback  # noqa: E402
from facial_emotion.inference.tracking import iou  # noqa: E402
from facial_emotion.service import create_app  # noqa: E402
from facial_emotion.service.background import BackgroundServer  # noqa: E402

PHOTOS = ["two_people.jpg", "justin.jpg", "obama-720p.jpg", "32bit.png", "obama_partial_face.jpg"]


def post_photo(url: str, path: Path, **params: str) -> httpx.Response:
    with path.open("rb") as f:
        return httpx.post(url, params=params, files={"file": (path.name, f)}, timeout=60)


def test_feedback_is_off_by_default_and_refuses_bad_corrections(tmp_path: Path) -> None:
    photo = need_shared("media", "two_people.jpg")
    with BackgroundServer(create_app(workers=1)) as off:
        assert post_photo(f"{off.url}/v1/feedback", photo, face="1", emotion="sad").status_code == 404
        # off whatever the query says (a query it would refuse was a 422)
        assert post_photo(f"{off.url}/v1/feedback", photo).status_code == 404
        assert post_photo(f"{off.url}/v1/feedback", photo, face="0", emotion="x").status_code == 404
        assert httpx.get(f"{off.url}/v1/model").json()["feedback"] == {"enabled": False, "dir": None}
    with pytest.raises(FeedbackError, match="not writable"):
        (tmp_path / "file").write_text("x")
        create_app(feedback_dir=tmp_path / "file" / "fb")
    fb = tmp_path / "fb"
    with BackgroundServer(create_app(workers=2, feedback_dir=fb)) as on:
        url = f"{on.url}/v1/feedback"
        assert post_photo(url, photo, face="1", emotion="contempt").status_code == 422
        assert post_photo(url, photo, face="3", emotion="sad").status_code == 422
        # two pages correcting at the same moment: every correction is kept, whole
        with ThreadPoolExecutor(6) as pool:
            replies = list(
                pool.map(lambda i: post_photo(url, photo, face=str(i % 2 + 1), emotion="sad"), range(12))
            )
        assert [r.status_code for r in replies] == [200] * 12, [r.text for r in replies]
        assert {r.json()["face"] for r in replies} == {1, 2}
        # A paused live frame names its face by the tracker's box, which may sit a little off a fresh
        # detection's: the face overlapping it most is taken, whatever number came with it.
        x, y, w, h = post_photo(f"{on.url}/v1/analyze", photo).json()["faces"][1]["box"]
        near = f"{x + w // 8},{y + h // 10},{w},{h}"
        by_box = post_photo(url, photo, face="1", box=near, emotion="happy")
        assert by_box.status_code == 200 and by_box.json()["face"] == 2, by_box.text
        assert post_photo(url, photo, box="0,0,4,4", emotion="happy").status_code == 422  # no face there
        assert post_photo(url, photo, emotion="happy").status_code == 422  # neither face nor box
    assert len(load_feedback(fb)) == 13
    happy = json.loads(next((fb / "happy").glob("*.json")).read_text())
    assert iou(tuple(happy["box"]), (x, y, w, h)) > 0.9
    sidecar = json.loads(next((fb / "sad").glob("*.json")).read_text())
    assert sidecar["source"] == "two_people.jpg" and sidecar["model"]["name"] == "emotion.onnx"


def test_a_correction_of_a_large_photo_is_saved_at_full_resolution_as_correct_saves_it(
    tmp_path: Path,
) -> None:
    """The service finds faces on the photo reduced to 2048 px: it saved that reduced crop, with its
    box in the reduced pixels, where `correct` saves the full-resolution crop and box."""
    import cv2

    big = tmp_path / "big.jpg"
    photo = cv2.imread(str(need_shared("media", "two_people.jpg")))
    cv2.imwrite(str(big), cv2.resize(photo, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC))  # 3378 px
    served, by_cli = tmp_path / "served", tmp_path / "cli"
    with BackgroundServer(create_app(workers=1, feedback_dir=served)) as server:
        analyzed = post_photo(f"{server.url}/v1/analyze", big).json()["faces"][1]["box"]
        reply = post_photo(f"{server.url}/v1/feedback", big, face="2", emotion="disgust")
        assert reply.status_code == 200, reply.text
    assert (
        main(["correct", str(big), "--face", "2", "--emotion", "disgust", "--feedback-dir", str(by_cli)]) == 0
    )
    (saved,) = (served / "disgust").glob("*.json")
    (from_cli,) = (by_cli / "disgust").glob("*.json")
    box = json.loads(saved.read_text())["box"]
    assert iou(tuple(box), tuple(analyzed)) > 0.95  # in the upload's pixels, as /v1/analyze says
    assert iou(tuple(box), tuple(json.loads(from_cli.read_text())["box"])) > 0.9
    original = cv2.imread(str(served / "disgust" / "originals" / saved.with_suffix(".png").name))
    assert original.shape[:2] == (box[3], box[2]) and original.shape[0] > 400  # the full-size crop


def test_model_reload_swaps_while_requests_run(tmp_path: Path) -> None:
    photo = need_shared("media", "justin.jpg")
    with BackgroundServer(create_app(workers=2)) as server:
        before = httpx.get(f"{server.url}/v1/model").json()["name"]

        def analyze(_: int) -> httpx.Response:
            return post_photo(f"{server.url}/v1/analyze", photo)

        with ThreadPoolExecutor(4) as pool:
            running = [pool.submit(analyze, i) for i in range(16)]
            swapped = httpx.post(f"{server.url}/v1/model/reload", params={"model": "fp32"}, timeout=60)
            results = [f.result() for f in running]
        assert swapped.status_code == 200 and swapped.json()["model"]["name"] == "emotion-fp32.onnx"
        assert [r.status_code for r in results] == [200] * 16  # none lost or broken by the swap
        assert {r.json()["model"]["name"] for r in results} <= {before, "emotion-fp32.onnx"}
        assert analyze(0).json()["model"]["name"] == "emotion-fp32.onnx"
        assert httpx.get(f"{server.url}/v1/model").json()["name"] == "emotion-fp32.onnx"
        bad = httpx.post(f"{server.url}/v1/model/reload", params={"model": str(tmp_path / "none.onnx")})
        assert bad.status_code == 422 and "old model stays" in bad.json()["error"]
        assert analyze(0).status_code == 200
        # A graph that does not take the crop its description names: refused at the swap, not a 500
        # on every request after it.
        wrong = model_with_description(tmp_path, "wrong-crop", crop=30)
        bad = httpx.post(f"{server.url}/v1/model/reload", params={"model": str(wrong)}, timeout=60)
        assert bad.status_code == 422 and "its description says N x 1 x 30 x 30" in bad.json()["error"]
        assert analyze(0).status_code == 200
    # A request running when the reload came: its reply names the model that made it. It said the
    # new one over the old one's scores (an A/B log then mixed the two). The detector holds the job
    # until the reload is done.
    import threading

    from facial_emotion.inference.detectors import create_detector

    started, release = threading.Event(), threading.Event()

    class HeldDetector:
        name = "blazeface, held"

        def __init__(self) -> None:
            self.real = create_detector(None)

        def detect(self, bgr):
            started.set()
            release.wait(30)
            return self.real.detect(bgr)

    with BackgroundServer(create_app(detector=HeldDetector())) as server:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(post_photo, f"{server.url}/v1/analyze", photo)
            assert started.wait(30)
            swapped = httpx.post(f"{server.url}/v1/model/reload", params={"model": "fp32"}, timeout=60)
            release.set()
            held = running.result()
        assert swapped.status_code == 200 and swapped.json()["model"]["name"] == "emotion-fp32.onnx"
        assert held.status_code == 200 and held.json()["model"]["name"] == before
        fresh = post_photo(f"{server.url}/v1/analyze", photo).json()
        assert fresh["model"]["name"] == "emotion-fp32.onnx"
        assert fresh["faces"][0]["scores"] != held.json()["faces"][0]["scores"]  # two models' answers
    with BackgroundServer(create_app(workers=1, admin_token="s3cret")) as guarded:
        assert httpx.post(f"{guarded.url}/v1/model/reload").status_code == 403
        ok = httpx.post(
            f"{guarded.url}/v1/model/reload", headers={"authorization": "Bearer s3cret"}, timeout=60
        )
        assert ok.status_code == 200


@pytest.mark.browser
@pytest.mark.shared
def test_another_site_s_page_can_neither_swap_the_model_nor_save_corrections(tmp_path: Path) -> None:
    """A page of any site the user visits could post to a server on their machine: a no-cors fetch
    needs no CORS answer, and the reload endpoint checked only that the client was on loopback,
    which a browser on that machine is. It swapped the model and saved a correction (reported with
    this page, in a real Chromium). The endpoints that change the server now refuse a request whose
    Origin is neither the server's own nor a --cors-origin; scripts send none."""
    import functools
    import http.server
    import shutil
    import threading

    sync_api = pytest.importorskip("playwright.sync_api")
    from test_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.is_file():
        pytest.skip(f"!!! SKIPPED: no Chromium at {CHROMIUM} (apt-get install chromium) !!!")
    photo = need_shared("media", "justin.jpg")
    site, fb = tmp_path / "site", tmp_path / "fb"
    site.mkdir()
    shutil.copy(photo, site / "face.jpg")
    (site / "index.html").write_text("<!doctype html><title>another site</title>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    with (
        BackgroundServer(create_app(workers=1, feedback_dir=fb)) as server,
        http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as other,
        sync_api.sync_playwright() as p,
    ):
        threading.Thread(target=other.serve_forever, daemon=True).start()
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{other.server_address[1]}/")
        page.evaluate(
            """async (api) => {
                await fetch(api + '/v1/model/reload?model=fast', {method: 'POST', mode: 'no-cors'});
                const form = new FormData();
                form.append('file', await (await fetch('/face.jpg')).blob(), 'face.jpg');
                await fetch(api + '/v1/feedback?face=1&emotion=disgust', {method: 'POST', mode: 'no-cors', body: form});
            }""",
            server.url,
        )
        browser.close()
        other.shutdown()
        assert httpx.get(f"{server.url}/v1/model").json()["name"] == "emotion.onnx"
        assert not fb.exists() or count_corrections(fb) == {}
        refused = httpx.post(f"{server.url}/v1/model/reload", headers={"origin": "http://elsewhere.example"})
        assert refused.status_code == 403 and "cross-site" in refused.json()["error"]
        own = {"origin": server.url}  # the server's own page, and a script (no Origin), still may
        assert post_photo(f"{server.url}/v1/feedback", photo, face="1", emotion="sad").status_code == 200
        with photo.open("rb") as f:
            mine = httpx.post(
                f"{server.url}/v1/feedback",
                params={"face": "1", "emotion": "happy"},
                files={"file": (photo.name, f)},
                headers=own,
                timeout=60,
            )
        assert mine.status_code == 200, mine.text
    assert count_corrections(fb) == {"sad": 1, "happy": 1}


@pytest.mark.browser
@pytest.mark.shared
def test_correct_in_the_page_finetune_then_serve_the_new_model(tmp_path: Path) -> None:
    """The whole loop: faces corrected in the real page, `finetune` on them, the new model served
    (swapped in without a restart): it now gives the corrected label on those faces."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from test_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.is_file():
        pytest.skip(f"!!! SKIPPED: no Chromium at {CHROMIUM} (apt-get install chromium) !!!")
    fer = need_shared("datasets", "fer2013", "fer2013.csv.gz")
    need_shared("media", "two_people.jpg")
    fb, tuned, target = tmp_path / "feedback", tmp_path / "tuned.onnx", "disgust"
    with BackgroundServer(create_app(workers=2, feedback_dir=fb)) as server, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(server.url)
        sync_api.expect(page.get_by_test_id("feedback-note")).to_contain_text(
            str(fb.resolve()), timeout=20_000
        )
        sync_api.expect(page.get_by_test_id("active-model")).to_have_text("model emotion.onnx")
        corrected = 0
        for photo in PHOTOS:
            page.get_by_test_id("photo-input").set_input_files(str(MEDIA / photo))
            sync_api.expect(page.get_by_test_id("photo-status")).to_contain_text(photo, timeout=60_000)
            sync_api.expect(page.get_by_test_id("photo-status")).not_to_contain_text("Analysing")
            for form in page.get_by_test_id("wrong-form").all():
                form.get_by_test_id("wrong-emotion").select_option(target)
                form.get_by_test_id("wrong-send").click()
                sync_api.expect(form.get_by_test_id("wrong-status")).to_have_text(
                    "Saved as Disgust.", timeout=30_000
                )
                corrected += 1
        assert corrected >= 5 and len(load_feedback(fb)) == corrected

        args = ["finetune", "--feedback", str(fb), "--out", str(tuned), "--fer2013", str(fer), "--quiet"]
        assert main([*args, "--mix", "200", "--epochs", "6", "--lr", "0.05", "--eval-limit", "200"]) == 0

        reload = httpx.post(f"{server.url}/v1/model/reload", params={"model": str(tuned)}, timeout=60)
        assert reload.status_code == 200, reload.text
        page.reload()
        sync_api.expect(page.get_by_test_id("active-model")).to_contain_text(
            f"model tuned.onnx (fine-tuned on {corrected} corrections)", timeout=20_000
        )
        labels = []
        for photo in PHOTOS:
            page.get_by_test_id("photo-input").set_input_files(str(MEDIA / photo))
            sync_api.expect(page.get_by_test_id("photo-status")).to_contain_text(
                re.compile(f"found in {photo}"), timeout=60_000
            )
            labels += [item.get_attribute("data-emotion") for item in page.get_by_test_id("face-item").all()]
        browser.close()
    kept_aside = json.loads(tuned.with_suffix(".json").read_text())["finetune"]["kept_aside"]
    assert labels.count(target) >= corrected - kept_aside, labels  # every face it was taught


@pytest.mark.browser
@pytest.mark.shared
def test_correct_a_paused_live_frame(tmp_path: Path) -> None:
    """Live tab: Pause stops sending frames and keeps the last analysed frame on screen with its faces;
    each face's "wrong?" posts that frame with the face's tracked box, the server saves the face it
    finds there; Resume streams again."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, write_y4m

    if not CHROMIUM.is_file():
        pytest.skip(f"!!! SKIPPED: no Chromium at {CHROMIUM} (apt-get install chromium) !!!")
    camera = write_y4m(need_shared("media", "woman2.mp4"), tmp_path / "woman2.y4m", frames=30)
    fb = tmp_path / "feedback"
    expect = sync_api.expect
    with BackgroundServer(create_app(workers=1, feedback_dir=fb)) as server, sync_api.sync_playwright() as p:
        args = [*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera}"]
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url)
        expect(page.get_by_test_id("feedback-note")).to_contain_text(str(fb.resolve()), timeout=20_000)
        page.get_by_test_id("tab-live").click()
        pause = page.get_by_test_id("live-pause")
        expect(pause).to_be_hidden()  # nothing to pause before the camera runs
        page.get_by_test_id("live-start").click()
        face = page.get_by_test_id("live-face").first
        expect(face).to_contain_text("%", timeout=60_000)
        forms = page.get_by_test_id("live-faces").get_by_test_id("wrong-form")
        expect(forms).to_have_count(0)  # corrections only on a paused frame
        pause.click()
        expect(pause).to_have_text("Resume")
        expect(forms.first).to_be_visible()
        # the overlay shows the frozen frame itself (most pixels drawn), not only boxes over the video
        drawn = """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                         let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
                         return n / (c.width * c.height); }"""
        assert poll(lambda: page.get_by_test_id("live-overlay").evaluate(drawn) > 0.5)
        box = page.evaluate("live.frozen.result.faces[0].box")
        target = "surprise" if face.get_attribute("data-emotion") != "surprise" else "fear"
        forms.first.get_by_test_id("wrong-emotion").select_option(target)
        forms.first.get_by_test_id("wrong-send").click()
        expect(forms.first.get_by_test_id("wrong-status")).to_have_text(
            re.compile("^Saved as "), timeout=30_000
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTIFACTS / "live-paused-correction.png", full_page=True)
        sent = page.evaluate("live.sent")
        page.wait_for_timeout(500)
        assert page.evaluate("live.sent") == sent  # paused: no frame goes out
        pause.click()
        expect(pause).to_have_text("Pause")
        assert poll(lambda: page.evaluate("live.sent") > sent)  # streaming again
        expect(forms).to_have_count(0)
        browser.close()
    assert not errors, errors
    assert count_corrections(fb) == {target: 1}
    saved = next((fb / target).glob("*.png"))
    assert (fb / target / "originals" / saved.name).is_file()
    sidecar = json.loads(saved.with_suffix(".json").read_text())
    assert sidecar["emotion"] == target and sidecar["source"].startswith("live-frame-")
    assert iou(tuple(sidecar["box"]), tuple(box)) >= 0.3  # the face shown is the face saved
