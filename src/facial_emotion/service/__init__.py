"""The web service and browser page (``facial-emotion serve``; needs the ``[serve]`` extra).

>>> from facial_emotion.service import create_app
>>> app = create_app()  # an ASGI app: uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from facial_emotion.service.app import create_app

__all__ = ["create_app"]
