"""Emotions of every face in a video over time, as a pandas-free list of rows.

python examples/video_timeline.py ../shared/media/woman2.mp4
"""

import sys

from facial_emotion import EmotionRecognizer
from facial_emotion.inference.video import analyze_video

result = analyze_video(EmotionRecognizer(detector="blazeface"), sys.argv[1], every=3, smoothing=0.6)
for row in result.timeline[:10]:
    print(f"{row.time_s:6.2f}s face #{row.face.track_id}: {row.face.emotion} {row.face.confidence:.0%}")
for person in result.summary:
    print(f"face #{person.track_id}: mostly {person.dominant_emotion} over {person.frames} frames")
