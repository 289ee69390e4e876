"""Sessions and events: the rule on made-up label sequences, then on the real model and woman2.mp4
(deterministic, and consistent with the summary), a person who leaves and comes back, and the
``video --summary`` files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import need_shared

from facial_emotion import EmotionRecognizer
from facial_emotion.inference.pipeline import Face
from facial_emotion.inference.session import EmotionEvent, Session
from facial_emotion.inference.stream import FaceStream
from facial_emotion.inference.video import analyze_video
from facial_emotion.labels import EMOTIONS

FPS = 30.0


def face(emotion: str, track_id: int = 1) -> Face:
    scores = {e: (0.9 if e == emotion else 0.1 / 6) for e in EMOTIONS}
    return Face((10, 10, 50, 50), emotion, 0.9, scores, track_id=track_id)


def feed(session: Session, labels: list[str], start: float = 0.0) -> list[EmotionEvent]:
    events = []
    for i, label in enumerate(labels):
        events += session.update(start + i / FPS, [face(label)])
    return events


def test_flicker_does_not_fire_and_changes_are_dated_back() -> None:
    session = Session(list(EMOTIONS), min_duration_s=1.0, hold_s=None)
    seen: list[EmotionEvent] = []
    session.on_change(seen.append)
    labels = ["happy"] * 60 + ["sad", "neutral"] * 45 + ["sad"] * 60  # 2 s, 3 s of flicker, 2 s
    events = feed(session, labels)
    assert events == seen == session.events
    assert [(e.kind, e.emotion, e.previous) for e in events] == [
        ("change", "happy", None),
        ("change", "sad", "happy"),
    ]
    first, second = events
    assert first.time_s == 0 and first.fired_s == pytest.approx(1.0)
    # sad alone from 5 s, half the frames before: confirmed within the window after 5 s, dated back
    # to where sad became the majority of the recent frames (within the window before it fired)
    assert 5.0 < second.fired_s <= 6.0 and second.fired_s - 1.0 <= second.time_s <= 5.0
    (person,) = session.summary()
    assert person.changes == 1
    assert [s.emotion for s in person.timeline] == ["happy", "sad"]
    assert person.timeline[0].end_s == person.timeline[1].start_s == second.time_s
    # shares are what the model saw, frame by frame: the flicker counts as sad and neutral
    assert person.share["happy"] == pytest.approx(2 / 7, abs=0.01)
    assert person.share["neutral"] == pytest.approx(1.5 / 7, abs=0.01)
    assert sum(person.share.values()) == pytest.approx(1)


def test_hold_fires_every_hold_s_and_a_gap_leaves_a_hole() -> None:
    session = Session(list(EMOTIONS), min_duration_s=0.5, hold_s=2.0)
    events = feed(session, ["neutral"] * 150)  # 5 s
    assert [(e.kind, e.held_s) for e in events if e.kind == "hold"] == [("hold", 2.0), ("hold", 4.0)]
    events = feed(session, ["neutral"] * 30, start=8.0)  # away for 3 s, back for 1 s
    assert events == []  # same emotion: no change, and the hold count starts over
    (person,) = session.summary()
    assert [(s.start_s, round(s.end_s, 3)) for s in person.timeline] == [
        (0.0, round(150 / FPS, 3)),
        (8.0, round(8.0 + 30 / FPS, 3)),
    ]
    assert person.seconds == pytest.approx(6.0, abs=0.05)  # the 3 s away are not counted
    with pytest.raises(ValueError):
        session.update(1.0, [])  # time cannot go back


def test_frames_a_second_apart_are_not_each_a_person_leaving() -> None:
    """video --every 30 on a 29.97 fps clip (frames 1.001 s apart), or a client streaming one frame a
    second: every frame was over the 1 s gap, so nobody was ever "seen" and no event fired."""
    session = Session(list(EMOTIONS), min_duration_s=1.0, hold_s=None)
    session.expect_frame_interval(1.001)  # as analyze_video says for a file (a live stream learns it)
    events = []
    for i, label in enumerate(["happy"] * 8 + ["sad"] * 8):
        events += session.update(i * 1.001, [face(label)])
    assert [(e.kind, e.emotion) for e in events] == [("change", "happy"), ("change", "sad")]
    (person,) = session.summary()
    assert person.seconds == pytest.approx(16 * 1.001, abs=0.01)
    assert [s.emotion for s in person.timeline] == ["happy", "sad"]
    # ... while a real absence in that sequence (four missed frames) is still a hole
    for i in range(16, 20):
        session.update(i * 1.001, [])
    session.update(20 * 1.001, [face("sad")])
    (person,) = session.summary()
    assert person.seconds == pytest.approx(17 * 1.001, abs=0.01)
    assert len(person.timeline) == 3 and person.timeline[-1].start_s == pytest.approx(20.02)


def test_a_stall_after_the_first_frames_is_not_time_seen() -> None:
    """The usual interval comes from the intervals before a gap: a 10 s stall right after two frames
    at 30 fps is a hole, not 10 s seen."""
    session = Session(list(EMOTIONS))
    for t in (0.0, 1 / FPS, *(10 + i / FPS for i in range(60))):
        session.update(t, [face("happy")])
    (person,) = session.summary()
    assert person.seconds == pytest.approx(2.07, abs=0.01)


def woman2_events(every: int = 2) -> tuple[list[EmotionEvent], list]:
    result = analyze_video(
        EmotionRecognizer(), str(need_shared("media", "woman2.mp4")), every=every, smoothing=0.6
    )
    return result.events, result.summary


def test_events_on_woman2_are_deterministic_and_agree_with_the_summary() -> None:
    events, people = woman2_events()
    again, _ = woman2_events()
    assert events == again  # same order, same times, same emotions
    (person,) = people  # one woman, one id through the clip
    changes = [e for e in events if e.kind == "change"]
    assert changes[0].previous is None and changes[0].time_s == 0
    assert len(changes) - 1 == person.changes >= 2  # her expression changes in this clip
    for before, after in zip(changes, changes[1:], strict=False):
        assert after.previous == before.emotion != after.emotion
        assert before.fired_s <= after.time_s < after.fired_s  # in order, never dated before the last
        assert after.previous_s == pytest.approx(after.time_s - before.time_s, abs=1e-3)
    # the timeline is the events: one segment per change, each starting at its change's time
    assert [(s.emotion, round(s.start_s, 3)) for s in person.timeline] == [
        (e.emotion, round(e.time_s, 3)) for e in changes
    ]
    # time per emotion from the events agrees with the summary's shares on the dominant emotion
    end = person.timeline[-1].end_s
    totals: dict[str, float] = {}
    for e, nxt in zip(changes, [*changes[1:], None], strict=True):
        totals[e.emotion] = totals.get(e.emotion, 0.0) + (nxt.time_s if nxt else end) - e.time_s
    assert max(totals, key=totals.__getitem__) == person.dominant_emotion
    assert sum(person.share.values()) == pytest.approx(1)
    cap = cv2.VideoCapture(str(need_shared("media", "woman2.mp4")))
    duration = cap.get(cv2.CAP_PROP_FRAME_COUNT) / cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    assert person.seconds == pytest.approx(duration, rel=0.02)
    sparse_events, (sparse,) = woman2_events(every=30)  # a frame a second: the same time seen ...
    assert sparse.seconds == pytest.approx(duration, rel=0.07)
    sparse_changes = [e for e in sparse_events if e.kind == "change"]
    assert sparse_changes and sparse_changes[0].previous is None  # ... her first emotion fires ...
    assert len(sparse_changes) <= len(changes) + 1  # ... and a flicker between frames is no change


def test_a_person_who_leaves_and_comes_back_keeps_their_id() -> None:
    """woman2.mp4 with frames 100-189 blanked (3 s away): the tracker drops her track after 15
    frames; she comes back where she was, so she takes her id again (within reid_frames), and
    the timeline has a hole. Without re-identification she is a second person."""
    cap = cv2.VideoCapture(str(need_shared("media", "woman2.mp4")))
    frames = [cap.read()[1] for _ in range(260)]
    cap.release()
    rec = EmotionRecognizer()
    streams = {"reid": FaceStream(rec, smoothing=0.6), "none": FaceStream(rec, smoothing=0.6)}
    streams["none"].tracker.reid_frames = 0
    for i, frame in enumerate(frames[::2]):
        index = 2 * i
        frame = np.zeros_like(frame) if 100 <= index < 190 else frame
        for stream in streams.values():
            stream.process(frame, index / FPS)
    (person,) = streams["reid"].summary()
    assert len(streams["none"].summary()) == 2
    away = [(a.end_s, b.start_s) for a, b in zip(person.timeline, person.timeline[1:], strict=False)]
    assert any(start - end > 2.5 for end, start in away)
    assert person.seconds == pytest.approx((260 - 90) / FPS, abs=0.2)


def test_video_cli_writes_the_summary(tmp_path: Path) -> None:
    video = need_shared("media", "woman2.mp4")
    out = [tmp_path / f"session.{ext}" for ext in ("json", "csv", "png")]
    args = ["video", str(video), "--every", "3", *(a for p in out for a in ("--summary", str(p)))]
    proc = subprocess.run(
        [sys.executable, "-m", "facial_emotion", *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "person #1:" in proc.stdout and "timeline: " in proc.stdout
    doc = json.loads(out[0].read_text())
    (person,) = doc["people"]
    assert sum(person["share"].values()) == pytest.approx(1, abs=1e-3)
    changes = [e for e in doc["events"] if e["kind"] == "change"]
    assert person["changes"] == len(changes) - 1 and len(person["timeline"]) == len(changes)
    assert max(person["share"], key=person["share"].get) == person["dominant_emotion"]
    (row,) = list(csv.DictReader(out[1].open()))
    assert row["dominant_emotion"] == person["dominant_emotion"] and int(row["changes"]) == person["changes"]
    assert row["timeline"].count(";") == len(person["timeline"]) - 1
    image = cv2.imread(str(out[2]))
    assert image is not None and image.shape[1] > 500
    webcam = subprocess.run(
        [sys.executable, "-m", "facial_emotion", "webcam", "--source", str(video), "--no-window"]
        + ["--max-frames", "45", "--summary", str(tmp_path / "webcam.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert webcam.returncode == 0, webcam.stderr
    assert "person #1: 1.5 s seen (45 frames)" in webcam.stdout  # printed when it stops
    assert json.loads((tmp_path / "webcam.json").read_text())["people"][0]["frames"] == 45
    bad = subprocess.run(
        [sys.executable, "-m", "facial_emotion", "video", str(video), "--summary", "x.txt"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--summary" in bad.stderr and "Traceback" not in bad.stderr


def test_one_analysed_frame_still_has_a_dominant_emotion(tmp_path: Path) -> None:
    # No frame interval to time one frame by: its share comes from the frame itself, not "mostly None".
    session = Session(list(EMOTIONS))
    session.update(0.0, [face("happy")])
    (person,) = session.summary()
    assert person.dominant_emotion == "happy" and person.share["happy"] == 1.0 and person.seconds == 0
    assert [s.emotion for s in person.timeline] == ["happy"]
    import cv2

    photo = cv2.imread(str(need_shared("media", "justin.jpg")))
    one_frame = tmp_path / "one.mp4"  # a one-frame video of a real face
    writer = cv2.VideoWriter(str(one_frame), cv2.VideoWriter_fourcc(*"mp4v"), 25, photo.shape[1::-1])
    writer.write(photo)
    writer.release()
    proc = subprocess.run(
        [sys.executable, "-m", "facial_emotion", "video", str(one_frame), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (summary,) = doc["faces"]
    frame_emotion = doc["timeline"][0]["emotion"]
    assert summary["dominant_emotion"] == frame_emotion and summary["share"][frame_emotion] == 1.0
    assert summary["seconds"] == pytest.approx(1 / 25)  # one frame of a 25 fps file, not 0 s
    assert (
        "(1 frame)"
        in subprocess.run(
            [sys.executable, "-m", "facial_emotion", "video", str(one_frame)],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    )


def test_an_absence_before_the_first_emotion_is_a_hole_too() -> None:
    """Somebody who left before their first emotion was confirmed had one segment across the time
    away (3.0 s seen, "happy 0.0-5.0 s"); and a person seen in a file's first analysed frame alone
    counted 0 s, where everyone else seen once counts one frame interval."""
    session = Session(list(EMOTIONS), min_duration_s=1.0, hold_s=None)
    feed(session, ["happy"] * 15)  # 0.5 s: too short for the rule
    events = feed(session, ["happy"] * 75, start=2.5)  # away for 2 s, then 2.5 s
    assert [(e.kind, e.emotion, e.time_s) for e in events] == [("change", "happy", 2.5)]
    (person,) = session.summary()
    assert [(s.start_s, round(s.end_s, 3)) for s in person.timeline] == [(0.0, 0.5), (2.5, 5.0)]
    assert person.seconds == pytest.approx(3.0, abs=0.01)
    brief = Session(list(EMOTIONS), min_duration_s=1.0, hold_s=None)
    feed(brief, ["sad"] * 6)
    feed(brief, ["sad"] * 6, start=3.0)  # never confirmed: its most seen emotion, holes kept
    (person,) = brief.summary()
    assert [(s.emotion, s.start_s, round(s.end_s, 3)) for s in person.timeline] == [
        ("sad", 0.0, 0.2),
        ("sad", 3.0, 3.2),
    ]
    sampled = Session(list(EMOTIONS))
    sampled.expect_frame_interval(1.0)  # video --every 30
    sampled.update(0.0, [face("fear", track_id=1)])
    sampled.update(1.0, [face("happy", track_id=2)])
    first, second = sampled.summary(end_s=2.0)
    assert first.seconds == second.seconds == 1.0
    live = Session(list(EMOTIONS))  # a camera: no interval known ahead
    live.update(0.0, [face("fear", track_id=1)])
    for i in range(1, 10):
        live.update(i / FPS, [face("happy", track_id=2)])
    first, _ = live.summary()
    assert first.seconds == pytest.approx(1 / FPS)
