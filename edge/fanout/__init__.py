"""From the camera's slot to every viewer's socket: the latest-frame slot (``slot.py``), the
broadcast that writes each frame once per viewer (``broadcast.py``) to the transports the
server hands it (``wire.py``), and the registry of open streams (``connections.py``)."""
