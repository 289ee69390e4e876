"""``facial-emotion batch``: photos and videos by the thousand, on a local process pool or on Ray.

sources.py (inputs -> units of work), work.py (a unit -> face rows, through EmotionRecognizer and
FaceStream), local.py and ray_engine.py (the two engines), job.py (plan, resume, progress, commits).
"""
