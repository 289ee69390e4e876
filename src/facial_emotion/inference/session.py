"""Sessions: what each tracked person felt over a sequence of frames, and events when it changes.

A ``FaceStream`` feeds its ``Session`` every processed frame (its time in seconds and its tracked,
smoothed faces); the session keeps, per person (track id), the time spent in each emotion, the
timeline of that person's emotions and the events, and calls the ``on_change`` callbacks.

The rule, exactly (``min_duration_s`` = M, ``hold_s`` = H):

* A person's *current* emotion becomes E when E was that person's top (smoothed) emotion in at
  least 60 % (``SWITCH_SHARE``) of their frames of the last M seconds (of the last 2.5 usual frame
  intervals, where frames come further apart than M / 2.5), and the current emotion has
  lasted at least M seconds. A ``change`` event then fires at that frame (``fired_s``), dated back
  (``time_s``) to the start of the longest run of recent frames in which E is the majority, but
  not before the previous change fired. So labels flickering between two emotions fire at most
  once per M seconds, and a flicker with no clear winner never fires (the current emotion stays):
  a hysteresis. A new person's first emotion is decided the same way once they have been seen for
  M seconds (``previous`` is None).
* ``hold`` fires each time the current emotion has lasted another H seconds without a change (at H,
  2H, ...): "still sad after 30 s".
* Time: each frame of a person counts from its time to that person's next frame, so frames missed by
  the detector count as the emotion before them; a gap over ``max_gap_s`` (the person left, or the
  stream stalled; where frames come further apart, as with ``video --every 30`` or a client sending
  one frame a second, over 2.5 of the sequence's usual frame intervals instead) is not counted: the
  timeline has a hole there, the window starts over, and the frame before the gap counts one frame
  interval.
* ``share`` is the time share of each frame's top emotion, before the rule (what the model saw); the
  timeline, ``changes`` and the events follow the rule. Shares sum to 1 per person.

Identity comes from the tracker (``FaceTracker``): a person who leaves the picture keeps their id if
they come back near where they left within its re-identification window; otherwise they are a new
person with a new id.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from facial_emotion.arguments import finite_number
from facial_emotion.inference.pipeline import Face

DEFAULT_MIN_DURATION_S = 1.0
DEFAULT_HOLD_S = 10.0
DEFAULT_MAX_GAP_S = 1.0
# Where frames come further apart than a second (video --every 30), a gap is this many intervals.
GAP_INTERVALS = 2.5


def gap_limit(usual_interval: float, max_gap_s: float = DEFAULT_MAX_GAP_S) -> float:
    """How long a person may go unseen and still be there: the gap rule (module docstring)."""
    return max(max_gap_s, GAP_INTERVALS * usual_interval)


SWITCH_SHARE = 0.6  # share of the window's frames an emotion needs to become the current one


@dataclass(frozen=True)
class EmotionEvent:
    """``kind`` 'change': ``track_id``'s current emotion became ``emotion`` at ``time_s`` (from
    ``previous``, which lasted ``previous_s``); 'hold': ``emotion`` has lasted ``held_s`` seconds at
    ``time_s``. ``fired_s``: the time of the frame that fired it (times are the stream's seconds)."""

    kind: str
    track_id: int
    emotion: str
    time_s: float
    fired_s: float
    previous: str | None = None
    previous_s: float | None = None
    held_s: float | None = None


@dataclass
class Segment:
    """A stretch of time during which a person's current emotion was ``emotion``."""

    emotion: str
    start_s: float
    end_s: float


@dataclass
class PersonSummary:
    track_id: int
    frames: int
    first_s: float
    last_s: float
    seconds: float  # time seen (gaps over max_gap_s excluded)
    dominant_emotion: str | None
    share: dict[str, float]  # time share of each emotion; sums to 1
    changes: int  # changes of the current emotion (the first emotion is not a change)
    timeline: list[Segment]


EventCallback = Callable[[EmotionEvent], object]


@dataclass
class _Person:
    track_id: int
    seconds: np.ndarray  # time per emotion (each frame's own top emotion)
    frames_by_emotion: np.ndarray  # frames per emotion: the shares when no frame interval is known
    first_t: float
    last_t: float
    last_label: str
    step: float = 0.0  # this person's last frame interval: what a frame counts after a gap
    frames: int = 0
    recent: deque[tuple[float, str]] = field(default_factory=deque)  # the last M seconds of frames
    current: str | None = None
    since: float = 0.0  # when the current emotion began (or the person appeared, or came back)
    confirmed: float = 0.0  # when the current emotion was confirmed
    changes: int = 0
    holds: int = 0
    segments: list[Segment] = field(default_factory=list)
    # (left, back) for each absence before the first emotion was confirmed: no segment covers them
    early_holes: list[tuple[float, float]] = field(default_factory=list)

    def presence(self, emotion: str, end_s: float) -> list[Segment]:
        """``emotion`` over the time this person was seen up to ``end_s``, a segment between holes."""
        starts = [self.first_t] + [back for _, back in self.early_holes]
        ends = [left for left, _ in self.early_holes] + [end_s]
        return [Segment(emotion, a, b) for a, b in zip(starts, ends, strict=True)]


class Session:
    """Per-person emotion time, timeline and events of one sequence of frames (see the module doc
    for the exact rule). Thread-safe: a service may read ``summary()`` while frames are processed."""

    def __init__(
        self,
        classes: list[str],
        min_duration_s: float = DEFAULT_MIN_DURATION_S,
        hold_s: float | None = DEFAULT_HOLD_S,
        max_gap_s: float = DEFAULT_MAX_GAP_S,
    ):
        # nan passes every comparison: no event would ever fire
        min_duration_s = finite_number("min_duration_s", min_duration_s)
        max_gap_s = finite_number("max_gap_s", max_gap_s)
        hold_s = None if hold_s is None else finite_number("hold_s", hold_s)
        if min_duration_s < 0 or max_gap_s <= 0 or (hold_s is not None and hold_s <= 0):
            raise ValueError("min_duration_s must be >= 0, max_gap_s and hold_s > 0")
        self.classes = list(classes)
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.min_duration_s = min_duration_s
        self.hold_s = hold_s
        self.max_gap_s = max_gap_s
        self.people: dict[int, _Person] = {}
        self.events: list[EmotionEvent] = []
        self.callbacks: list[EventCallback] = []
        self.last_t: float | None = None
        self.step = 0.0  # the last frame interval: what a new person's single frame counts
        self.intervals: deque[float] = deque(maxlen=15)  # the sequence's recent frame intervals
        # Sparse frames (1 s or more apart: video --every 30, a client streaming a frame a second)
        # would each look like the person leaving, and the rule's window would hold one frame (every
        # flicker a change): both stretch to a few of the sequence's usual frame intervals.
        self.gap_limit = max_gap_s
        self.window_s = min_duration_s
        self._lock = threading.Lock()

    def on_change(self, callback: EventCallback) -> EventCallback:
        """Call ``callback(event)`` for every event, in the thread that processes the frames (keep it
        quick, or hand the event to a queue). Usable as a decorator."""
        self.callbacks.append(callback)
        return callback

    def check_time(self, time_s: float) -> float:
        """``time_s`` as a float if it can be the next frame's time (a finite number of seconds, not
        before the last frame's), else ValueError."""
        time_s = finite_number("the frame time (time_s)", time_s)
        last = self.last_t
        if last is not None and time_s < last:
            raise ValueError(f"frame times must not go back ({time_s} after {last})")
        return time_s

    def expect_frame_interval(self, seconds: float) -> None:
        """The sequence's frame interval, known ahead (a file read every N-th frame): the gap limit
        and the rule's window fit it from the first frame on, not only once intervals were seen."""
        seconds = finite_number("the frame interval", seconds)
        with self._lock:
            self.intervals.append(max(0.0, seconds))
            self._fit_to_intervals()
            if self.last_t is None:  # what the first frame counts: a person seen in it alone had 0 s
                self.step = max(0.0, seconds)

    def _fit_to_intervals(self) -> None:
        if self.intervals:
            usual = float(np.median(self.intervals))
            self.gap_limit = gap_limit(usual, self.max_gap_s)
            self.window_s = max(self.min_duration_s, GAP_INTERVALS * usual) if self.min_duration_s else 0.0

    def update(self, time_s: float, faces: list[Face]) -> list[EmotionEvent]:
        """The faces of the frame at ``time_s`` (tracked: ``track_id`` set) -> the events they fire."""
        unknown = {f.emotion for f in faces} - set(self.index)
        if unknown:
            raise ValueError(f"emotions {sorted(unknown)} are not among this session's {self.classes}")
        with self._lock:
            time_s = self.check_time(time_s)
            if self.last_t is not None:
                self._fit_to_intervals()  # the intervals before this one: a stall is judged, not learnt
                self.intervals.append(time_s - self.last_t)
                if time_s - self.last_t <= self.gap_limit:
                    self.step = time_s - self.last_t
            self.last_t = time_s
            fired: list[EmotionEvent] = []
            for face in faces:
                if face.track_id is not None:
                    fired += self._observe(face.track_id, face.emotion, time_s)
            self.events += fired
        for event in fired:
            for callback in self.callbacks:
                callback(event)
        return fired

    def _observe(self, tid: int, label: str, t: float) -> list[EmotionEvent]:
        p = self.people.get(tid)
        if p is None:
            zeros = np.zeros(len(self.classes))
            p = self.people[tid] = _Person(tid, zeros, zeros.copy(), t, t, label, self.step, since=t)
        else:
            gap = t - p.last_t
            if gap <= self.gap_limit:
                p.step = gap
            p.seconds[self.index[p.last_label]] += p.step
            if gap > self.gap_limit:  # away: a hole in the timeline, and the window starts over
                p.recent.clear()
                p.since, p.holds = t, 0
                if p.segments:
                    p.segments[-1].end_s = p.last_t + p.step
                    p.segments.append(Segment(p.segments[-1].emotion, t, t))
                else:  # before any emotion: kept for the first one's segments
                    p.early_holes.append((p.last_t + p.step, t))
        p.frames += 1
        p.frames_by_emotion[self.index[label]] += 1
        p.last_t, p.last_label = t, label
        p.recent.append((t, label))
        while p.recent[0][0] < t - self.window_s:
            p.recent.popleft()
        events: list[EmotionEvent] = []
        if t - p.since >= self.min_duration_s:
            votes = Counter(lab for _, lab in p.recent)
            top, n = votes.most_common(1)[0]
            if top != p.current and n >= SWITCH_SHARE * len(p.recent):
                events.append(self._change(p, top, self._began(p, top), t))
        if p.segments:
            p.segments[-1].end_s = t
            held = t - p.segments[-1].start_s
            if self.hold_s is not None and held >= (p.holds + 1) * self.hold_s:
                p.holds = int(held // self.hold_s)
                events.append(EmotionEvent("hold", tid, p.segments[-1].emotion, t, t, held_s=round(held, 3)))
        return events

    @staticmethod
    def _began(p: _Person, emotion: str) -> float:
        """When ``emotion`` took over: the start of the longest run of recent frames in which it is
        the majority, but not before the current emotion was confirmed (so that segment stays)."""
        began, lead = p.recent[-1][0], 0
        for t, label in reversed(p.recent):
            lead += 1 if label == emotion else -1
            if lead > 0:
                began = t
        return max(began, p.confirmed)

    def _change(self, p: _Person, new: str, since: float, t: float) -> EmotionEvent:
        previous, previous_s = p.current, None
        if p.segments:
            previous_s = round(since - p.segments[-1].start_s, 3)
            p.segments[-1].end_s = since
            p.changes += 1
            p.segments.append(Segment(new, since, t))
        else:  # the first emotion: over the time the person was seen, holes kept (README: Sessions)
            since = p.since  # when they appeared, or came back after the last hole
            p.segments += p.presence(new, t)
        p.current, p.since, p.confirmed, p.holds = new, since, t, 0
        return EmotionEvent("change", p.track_id, new, since, t, previous, previous_s)

    def summary(self, end_s: float | None = None) -> list[PersonSummary]:
        """Per person, in order of track id: time seen, time share of each emotion, dominant emotion,
        number of changes and the timeline. The last frame of each person counts one frame interval,
        cut at ``end_s`` where the sequence is known to end there (a file: every 10th frame of a
        15.48 s video counted 15.7 s seen); a person seen for less than min_duration_s has one
        segment, of their most seen emotion."""
        with self._lock:
            out = []
            for tid in sorted(self.people):
                p = self.people[tid]
                # one seen in a live stream's first frame alone has no interval of their own: the
                # stream's (0 s before)
                step = p.step or self.step
                last = step if end_s is None else min(step, max(0.0, end_s - p.last_t))
                seconds = p.seconds.copy()
                seconds[self.index[p.last_label]] += last  # the last frame counts one interval
                total = float(seconds.sum())
                # One analysed frame (a photo, a clip sampled once): no interval to time it by, so
                # the frames themselves give the shares and the dominant emotion.
                weights = seconds if total > 0 else p.frames_by_emotion
                share = weights / weights.sum() if weights.sum() > 0 else weights
                timeline = [Segment(s.emotion, s.start_s, s.end_s) for s in p.segments]
                if timeline:
                    timeline[-1].end_s = p.last_t + last
                elif p.frames:  # seen too briefly for the rule: the most seen emotion
                    timeline = p.presence(self.classes[int(weights.argmax())], p.last_t + last)
                out.append(
                    PersonSummary(
                        track_id=tid,
                        frames=p.frames,
                        first_s=p.first_t,
                        last_s=p.last_t,
                        seconds=total,
                        dominant_emotion=self.classes[int(weights.argmax())] if p.frames else None,
                        share={c: float(s) for c, s in zip(self.classes, share, strict=True)},
                        changes=p.changes,
                        timeline=timeline,
                    )
                )
            return out

    def mood(self, window_s: float = 30.0) -> dict[str, float]:
        """Share of each emotion over the last ``window_s`` seconds, everybody together, from the
        timelines (the dominant mood of a room or of one user). Empty before the first emotion."""
        with self._lock:
            if self.last_t is None:
                return {}
            start = self.last_t - window_s
            totals = np.zeros(len(self.classes))
            for p in self.people.values():
                for i, s in enumerate(p.segments):
                    end = p.last_t + p.step if i == len(p.segments) - 1 else s.end_s
                    totals[self.index[s.emotion]] += max(0.0, end - max(start, s.start_s))
            total = totals.sum()
            if total <= 0:
                return {}
            return {c: float(v / total) for c, v in zip(self.classes, totals, strict=True)}
