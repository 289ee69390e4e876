"""Stable face ids across video frames (greedy IoU matching) and temporal smoothing of scores."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facial_emotion.inference.detectors import Detection, FaceDetector, find_faces
from facial_emotion.inference.pipeline import Face
from facial_emotion.settings import DEFAULT_DETECT_EVERY


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    track_id: int
    box: tuple[int, int, int, int]
    scores: np.ndarray
    last_seen: int
    frames: int = 1


class FaceTracker:
    """Gives each face the id of the track it overlaps most (IoU >= ``min_iou``); tracks unseen for
    ``max_age`` processed frames are dropped. A face that matches no track takes the id of a dropped
    track last seen at most ``reid_frames`` processed frames ago, if it appears near where that track
    was last seen (centres less than half a face width apart) at a similar size (within a factor
    1.5): a person who looked away, was hidden or stepped out briefly comes back as themselves.
    Otherwise it gets a new id. ``smoothing`` in [0, 1) is the weight of the past in an exponential
    moving average of each track's scores (a returning person starts afresh)."""

    REID_DISTANCE = 0.5  # centre distance, in face widths
    REID_SCALE = 1.5  # largest size ratio

    def __init__(
        self,
        classes: list[str],
        min_iou: float = 0.3,
        max_age: int = 15,
        smoothing: float = 0.0,
        reid_frames: int = 150,
    ):
        self.classes = classes
        self.min_iou = min_iou
        self.max_age = max_age
        self.smoothing = smoothing
        self.reid_frames = reid_frames
        self.tracks: dict[int, Track] = {}
        self.finished: list[Track] = []  # dropped tracks that may still come back
        self.next_id = 1
        self.frame = 0

    def _returning(self, box: tuple[int, int, int, int]) -> Track | None:
        """The closest dropped track this face could be (see the class doc), or None."""
        x, y, w, h = box
        best, best_d = None, self.REID_DISTANCE
        for t in self.finished:
            tx, ty, tw, th = t.box
            scale = max(w, tw) / max(1, min(w, tw))
            d = np.hypot(x + w / 2 - tx - tw / 2, y + h / 2 - ty - th / 2) / ((w + tw) / 2)
            if scale <= self.REID_SCALE and d < best_d:
                best, best_d = t, d
        return best

    def update(self, faces: list[Face]) -> list[Face]:
        self.frame += 1
        self.finished = [t for t in self.finished if self.frame - t.last_seen <= self.reid_frames]
        pairs = sorted(
            ((iou(f.box, t.box), i, tid) for i, f in enumerate(faces) for tid, t in self.tracks.items()),
            reverse=True,
        )
        assigned: dict[int, int] = {}
        used: set[int] = set()
        for overlap, i, tid in pairs:
            if overlap < self.min_iou:
                break
            if i in assigned or tid in used:
                continue
            assigned[i] = tid
            used.add(tid)
        for i, face in enumerate(faces):
            p = np.array([face.scores[c] for c in self.classes], dtype=np.float64)
            if i in assigned:
                track = self.tracks[assigned[i]]
            else:
                back = self._returning(face.box)
                if back is not None:
                    self.finished.remove(back)
                    track, track.frames = back, 0  # frames 0: the smoothing starts afresh
                else:
                    track = Track(self.next_id, face.box, p, self.frame, 0)
                    self.next_id += 1
                self.tracks[track.track_id] = track
            track.scores = self.smoothing * track.scores + (1 - self.smoothing) * p if track.frames else p
            track.box, track.last_seen = face.box, self.frame
            track.frames += 1
            k = int(track.scores.argmax())
            face.track_id = track.track_id
            face.scores = {c: float(v) for c, v in zip(self.classes, track.scores, strict=True)}
            face.emotion, face.confidence = self.classes[k], float(track.scores[k])
        for tid in [t for t, tr in self.tracks.items() if self.frame - tr.last_seen > self.max_age]:
            self.finished.append(self.tracks.pop(tid))
        return faces


class VideoFaceFinder:
    """Face boxes for consecutive frames: a full-frame detection every ``refresh`` frames (to find
    new faces and fix drift), and in between each known face is followed by template matching of
    its previous appearance in a window around it, which costs well under a millisecond where a
    full Haar search costs tens. A face that no longer matches triggers a full search next frame."""

    TEMPLATE_SIDE = 32  # px: the face is matched at this width, enough to locate it, very cheap
    MIN_MATCH = 0.5  # normalised correlation below this: the face is lost

    def __init__(self, detector: FaceDetector, refresh: int = DEFAULT_DETECT_EVERY):
        self.detector = detector
        self.refresh = max(1, refresh)
        self.last: list[Detection] = []
        self.last_gray: np.ndarray | None = None
        self.since_full = 0

    def _follow(self, gray: np.ndarray, det: Detection) -> Detection | None:
        assert self.last_gray is not None
        x, y, w, h = det.box
        cx, cy = x + w / 2, y + h / 2
        s = self.TEMPLATE_SIDE / max(w, h, 1)
        size = (max(8, round(w * s)), max(8, round(h * s)))
        # getRectSubPix replicates the border, so faces at the edge of the frame are fine.
        template = cv2.resize(
            cv2.getRectSubPix(self.last_gray, (w, h), (cx, cy)), size, interpolation=cv2.INTER_AREA
        )
        window = cv2.resize(
            cv2.getRectSubPix(gray, (2 * w, 2 * h), (cx, cy)),
            (2 * size[0], 2 * size[1]),
            interpolation=cv2.INTER_AREA,
        )
        scores = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (dx, dy) = cv2.minMaxLoc(scores)
        if best < self.MIN_MATCH:
            return None
        shift_x = (dx - size[0] / 2) / s
        shift_y = (dy - size[1] / 2) / s
        nx, ny = round(x + shift_x), round(y + shift_y)
        fh, fw = gray.shape[:2]
        if nx >= fw or ny >= fh or nx + w <= 0 or ny + h <= 0:
            return None  # the face left the picture
        landmarks = (
            None if det.landmarks is None else det.landmarks + np.array([shift_x, shift_y], dtype=np.float32)
        )
        return Detection((nx, ny, w, h), det.score, landmarks)

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        if self.refresh == 1:  # a full search on every frame: nothing to follow
            self.last = find_faces(self.detector, bgr)
            return self.last
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        resized = self.last_gray is not None and self.last_gray.shape != gray.shape  # boxes mean nothing
        if not self.last or self.last_gray is None or resized or self.since_full + 1 >= self.refresh:
            # held to the pipeline's rules (a custom detector's float, empty or tuple boxes crashed
            # the following below) and in its order
            self.last, self.since_full = find_faces(self.detector, bgr), 0
        else:
            followed = [self._follow(gray, d) for d in self.last]
            found = [d for d in followed if d is not None]
            # A lost face: search the whole next frame rather than wait for the refresh.
            self.since_full = self.refresh if len(found) < len(self.last) else self.since_full + 1
            self.last = found
        self.last_gray = gray
        return self.last
