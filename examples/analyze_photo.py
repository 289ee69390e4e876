"""Print every face's emotion in a photo and save an annotated copy.

python examples/analyze_photo.py ../shared/media/two_people.jpg annotated.jpg
"""

import sys

import cv2

from facial_emotion import EmotionRecognizer, load_image
from facial_emotion.results.draw import annotate

image = load_image(sys.argv[1])  # BGR, EXIF-upright
recognizer = EmotionRecognizer()
faces = recognizer.analyze(image)
for face in faces:
    top3 = sorted(face.scores.items(), key=lambda kv: -kv[1])[:3]
    print(face.box, face.emotion, f"{face.confidence:.0%}", top3)
if len(sys.argv) > 2:
    cv2.imwrite(sys.argv[2], annotate(image, faces))
