"""HTTP and WebSocket, as a Starlette app: routes and errors (``app.py``), access control
(``access.py``), what a viewer asks for (``endpoints.py``), one stream's life (``stream.py``) and
its two kinds (``mjpeg.py``, ``websocket.py``), status, health and metrics (``status.py``,
``metrics.py``), the app's state (``state.py``, ``camera.py``) and the viewer page (``static/``)."""
