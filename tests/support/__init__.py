"""What the tests use to drive and watch a real `edge` server, one module per concern.

- `process.py`  the server as a child process (start, listening line, log, stop) and the
                `StartServer` factory behind the `start_server` fixtures;
- `config.py`   config files (camera entries default to `edge.config.CameraConfig`'s values);
- `waiting.py`  `wait_for`, the one polling loop, always with a deadline;
- `status.py`   `/api/status`: reading it and waiting for a condition on it;
- `sockets.py`  raw TCP client sockets (receive buffer, FIN or RST);
- `http.py`     request and response heads, de-chunked bodies, `fetch`;
- `mjpeg.py`    `MjpegStream`, a viewer that checks the multipart framing byte for byte;
- `websocket.py` `RawWebSocket`, the handshake and client frames; the library client's settings;
- `jpeg.py`     decoding, hashing and walking the segments of frames;
- `frames.py`   `Received`, readers, and `BackgroundReader` for viewers that keep reading;
- `stale.py`    the slow-reader rule (at most two stale frames or 256 KiB after resuming);
- `tls.py`      self-signed certificates;
- `sources.py`  MJPEG clips made with ffmpeg for file, pipe and http cameras;
- `multipart.py` the one incremental parser of the MJPEG edge serves; `response.py` the head
                and chunked coding around it;
- `asgi.py`     in-process clients (Starlette's TestClient) for the pure-ASGI parts;
- `attacks.py`  hostile clients (floods, guessing, stalls); `rate.py` a viewer's fps per second;
- `programs.py` `requires`, the one way a test says which system program it needs.
"""
