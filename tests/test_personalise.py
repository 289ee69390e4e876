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
from conftest import MEDIA, need_shared  # noqa: E402

from facial_emotion.cli import main  # noqa: E402
from facial_emotion.feedback import FeedbackError, load_feedback  # noqa: E402
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
    assert len(load_feedback(fb)) == 12
    sidecar = json.loads(next((fb / "sad").glob("*.json")).read_text())
    assert sidecar["source"] == "two_people.jpg" and sidecar["model"]["name"] == "emotion.onnx"


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
    with BackgroundServer(create_app(workers=1, admin_token="s3cret")) as guarded:
        assert httpx.post(f"{guarded.url}/v1/model/reload").status_code == 403
        ok = httpx.post(
            f"{guarded.url}/v1/model/reload", headers={"authorization": "Bearer s3cret"}, timeout=60
        )
        assert ok.status_code == 200


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
