"""Results: the row schema of a face and every writer (table, CSV, JSON, timeline, annotated image or
video, plots), all written atomically. Kept free of imports here so that ``results.files`` can be used
by the lower layers (``model_file``) without loading OpenCV."""
