"""JPEG frames as the tests see them (edge/formats/jpeg.py is the server's side).

Decoding checks that a frame a client received is a whole, decodable picture of the right size;
the hash says whether two frames are the same bytes (passthrough must not re-encode); and the
segment walk finds markers on its own, not with edge.jpeg, so a bug there cannot hide itself in
the tests that check it.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np


def decode_jpeg(jpeg: bytes) -> np.ndarray:
    """Check a complete JPEG (FFD8 ... FFD9) and decode it; returns the image."""
    assert jpeg[:2] == b"\xff\xd8", f"JPEG does not start with FFD8: {jpeg[:4].hex()}"
    assert jpeg[-2:] == b"\xff\xd9", f"JPEG does not end with FFD9: {jpeg[-4:].hex()}"
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "cv2.imdecode could not decode the JPEG"
    return img


def jpeg_size(jpeg: bytes) -> tuple[int, int]:
    """(width, height) of a JPEG after checking it decodes."""
    img = decode_jpeg(jpeg)
    return int(img.shape[1]), int(img.shape[0])


def sha(data: bytes) -> str:
    """SHA-256 of a frame: equal hashes are the same bytes, which is what passthrough promises."""
    return hashlib.sha256(data).hexdigest()


def segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment after SOI up to and including SOS, as cv2 writes them."""
    found = []
    pos = 2
    while True:
        assert data[pos] == 0xFF, f"no marker at {pos}"
        marker = data[pos + 1]
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        found.append((marker, pos, end))
        if marker == 0xDA:
            return found
        pos = end


def strip_dht(data: bytes) -> bytes:
    """The frame without its Huffman tables (DHT segments), like a UVC camera's "AVI1" frames."""
    for marker, start, end in reversed(segments(data)):
        if marker == 0xC4:
            data = data[:start] + data[end:]
    return data
