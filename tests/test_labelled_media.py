"""The hand-labelled faces of ../shared/media (tests/media_labels.csv), the generalisation check of
benchmarks/accuracy.py: every labelled face is found by the pipeline where the table says, each
label is one of the model's classes, and a point off every face finds none."""

from __future__ import annotations

from pathlib import Path

from conftest import need_shared

from facial_emotion import EmotionRecognizer
from facial_emotion.evaluation.labelled_media import LabelledFace, read_labels, score_labelled_media
from facial_emotion.labels import EMOTIONS

LABELS = Path(__file__).with_name("media_labels.csv")


def test_every_labelled_face_is_found_and_scored() -> None:
    media = need_shared("media")
    labels = read_labels(LABELS)
    assert len(labels) >= 30 and {lab.emotion for lab in labels} <= set(EMOTIONS)
    assert all((media / lab.file).is_file() for lab in labels)
    scored = score_labelled_media(labels, media, EmotionRecognizer())
    assert [s.label for s in scored] == labels  # one result per row, in order
    for s in scored:
        assert s.face is not None, f"no face at {s.label}"
        x, y, w, h = s.face.box
        assert x <= s.label.x < x + w and y <= s.label.y < y + h
        assert s.correct == (s.face.emotion == s.label.emotion)


def test_a_point_off_every_face_finds_none() -> None:
    media = need_shared("media")
    corner = LabelledFace("two_people.jpg", 0, 2, 2, "happy")
    (scored,) = score_labelled_media([corner], media, EmotionRecognizer())
    assert scored.face is None and not scored.correct
