"""Pure functions over bytes, one format per module: the JPEG frame check (``jpeg.py``), the
JPEG byte-stream splitter (``jpeg_stream.py``) and the MJPEG multipart parser (``multipart.py``).
Nothing here does I/O or imports another part of edge."""
