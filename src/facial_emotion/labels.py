"""The one definition of the emotions this project recognises, their order, names and colours.

Everything else imports from here. The canonical order is FER-2013's own id order, so a
FER-2013 label *is* an index into ``EMOTIONS``.
"""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)
INDEX: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}

DISPLAY_NAMES: dict[str, str] = {
    "angry": "Angry",
    "disgust": "Disgust",
    "fear": "Fear",
    "happy": "Happy",
    "sad": "Sad",
    "surprise": "Surprise",
    "neutral": "Neutral",
    "contempt": "Contempt",  # FER+'s eighth class (8-class models)
}

# RGB colours, chosen to be distinguishable on photos and for common colour blindness.
COLORS_RGB: dict[str, tuple[int, int, int]] = {
    "angry": (230, 57, 70),
    "disgust": (106, 153, 78),
    "fear": (155, 93, 229),
    "happy": (255, 190, 11),
    "sad": (58, 134, 255),
    "surprise": (255, 120, 40),
    "neutral": (160, 160, 160),
    "contempt": (141, 96, 56),
}
OTHER_RGB = (200, 200, 200)  # a class of a user's own model that has no colour here


def color_rgb(emotion: str) -> tuple[int, int, int]:
    return COLORS_RGB.get(emotion, OTHER_RGB)


def color_bgr(emotion: str) -> tuple[int, int, int]:
    """OpenCV draws in BGR."""
    r, g, b = color_rgb(emotion)
    return (b, g, r)


# FER-2013 csv: the `emotion` column is the index into EMOTIONS (0 angry ... 6 neutral).
FER2013_IDS: dict[int, str] = dict(enumerate(EMOTIONS))
FER2013_USAGES: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")

# FER+ (fer2013new.csv) vote columns, in file order, and the emotion each maps to.
# contempt has no FER-2013 counterpart; unknown / NF ("not a face") are not emotions.
FERPLUS_COLUMNS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
FERPLUS_TO_EMOTION: dict[str, str] = {
    "neutral": "neutral",
    "happiness": "happy",
    "surprise": "surprise",
    "sadness": "sad",
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
}
FERPLUS_8_CLASSES: tuple[str, ...] = (*EMOTIONS, "contempt")


def trained_classes(count: int) -> tuple[str, ...]:
    """The classes, in output order, of a net with ``count`` outputs trained here: FER-2013's seven,
    or FER+'s eight (``--labels ferplus8``)."""
    return EMOTIONS if count == NUM_CLASSES else FERPLUS_8_CLASSES


# Folder names users give their data, mapped onto the canonical names.
FOLDER_ALIASES: dict[str, str] = {
    **{name: name for name in EMOTIONS},
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprised": "surprise",
}


def emotion_from_folder(name: str) -> str | None:
    return FOLDER_ALIASES.get(name.strip().lower())


def class_from_folder(name: str, classes: tuple[str, ...] | list[str] = EMOTIONS) -> str | None:
    """The class among ``classes`` (a model's, in its order) that a folder named ``name`` holds: an
    emotion or its alias (``emotion_from_folder``), or any class by its name in any case (FER+'s
    "contempt"); None for a folder that is none of them."""
    emotion = emotion_from_folder(name) or name.strip().lower()
    return emotion if emotion in classes else None
