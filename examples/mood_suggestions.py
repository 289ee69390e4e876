"""Suggestions by mood: the dominant emotion of the last 30 s -> music or films from a local table.

python examples/mood_suggestions.py ../shared/media/woman2.mp4 --window 10
python examples/mood_suggestions.py 0                      # camera 0, until Ctrl-C
python examples/mood_suggestions.py clip.mp4 --table my_moods.json

The table is a JSON file, ``{"happy": {"label": ..., "suggestions": [...]}, ...}``; the default is the
one the browser page's mood panel uses (facial_emotion/service/static/moods.json): copy and edit it.
Nothing is looked up online. A suggestion is printed when the dominant mood changes, checked at every
emotion change event and every ``--every-s`` seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import facial_emotion
from facial_emotion import EmotionRecognizer
from facial_emotion.inference.stream import FaceStream
from facial_emotion.inference.video import frames, is_camera, open_capture, video_fps

DEFAULT_TABLE = Path(facial_emotion.__file__).parent / "service" / "static" / "moods.json"


def suggest(mood: dict[str, float], table: dict) -> tuple[str, dict] | None:
    """(dominant emotion, its table entry) for shares of each emotion, or None without a mood."""
    if not mood:
        return None
    top = max(mood, key=mood.__getitem__)
    return top, table.get(top, {"label": top, "suggestions": []})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="video file, or a camera index")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="JSON table of suggestions")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of mood to look at")
    parser.add_argument("--every-s", type=float, default=5.0, help="check the mood this often")
    args = parser.parse_args()
    table = json.loads(args.table.read_text())
    cap = open_capture(args.source)
    fps, live = video_fps(cap), is_camera(args.source)
    stream = FaceStream(EmotionRecognizer(), smoothing=0.6)
    changed = []
    stream.on_change(lambda event: changed.append(event) if event.kind == "change" else None)
    shown, next_check = None, 0.0
    try:
        for i, frame in enumerate(frames(cap)):
            stream.process(frame, None if live else i / fps)
            now = stream.session.last_t or 0.0
            if not changed and now < next_check:
                continue
            changed.clear()
            next_check = now + args.every_s
            pick = suggest(stream.session.mood(args.window), table)
            if pick and pick[0] != shown:
                shown, entry = pick[0], pick[1]
                print(f"{now:7.1f} s  mood {shown} -> {entry['label']}: {', '.join(entry['suggestions'])}")
    except KeyboardInterrupt:
        pass
    finally:
        cap.release()


if __name__ == "__main__":
    main()
