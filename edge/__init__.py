"""edge: a camera streaming appliance (MJPEG, snapshots and a WebSocket frame channel)."""

__version__ = "0.1.0"
