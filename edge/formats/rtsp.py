"""RTSP as a publisher speaks it (RFC 2326, ANNOUNCE/SETUP/RECORD): requests, the server's
responses, the SDP that describes an H.264 stream, Basic and Digest authorization, and RTP
packets framed for TCP (``$``, channel, length: section 10.12).

Pure functions over bytes; the socket is ``edge/publish/rtsp.py``'s and the RTP packets come from
PyAV's RTP muxer. What the server sends is untrusted: :class:`ResponseReader` bounds a response
head and body and raises :class:`RtspError` for anything that is not RTSP.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import struct
from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024
MAX_BODY = 256 * 1024
USER_AGENT = "edge"
_STATUS = re.compile(rb"^RTSP/1\.\d (\d{3})(?: (.*))?$")
_REQUEST = re.compile(rb"^[A-Z_]+ \S+ RTSP/1\.\d$")
_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


class RtspError(ValueError):
    """Bytes that are not what an RTSP server sends."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # names lower-cased; a repeated header's values joined with ", "
    body: bytes = b""
    auth: tuple[str, ...] = field(default=())  # every WWW-Authenticate challenge, in order

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def request(method: str, url: str, cseq: int, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {url} RTSP/1.0", f"CSeq: {cseq}", f"User-Agent: {USER_AGENT}"]
    for name, value in (headers or {}).items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} has a line break")
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def interleaved(channel: int, packet: bytes) -> bytes:
    """An RTP or RTCP packet framed for the RTSP connection."""
    return b"$" + bytes([channel]) + struct.pack(">H", len(packet)) + packet


class ResponseReader:
    """The server's bytes cut into responses. Interleaved frames (the server's RTCP receiver
    reports) and requests from the server are read and dropped."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Response]:
        self._buffer += data
        out: list[Response] = []
        while self._buffer:
            buf = self._buffer
            if buf[0] == 0x24:  # '$': an interleaved frame
                if len(buf) < 4:
                    break
                size = 4 + int.from_bytes(buf[2:4], "big")
                if len(buf) < size:
                    break
                del buf[:size]
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise RtspError("a response head over 64 KiB")
                break
            if end > MAX_HEAD:
                raise RtspError("a response head over 64 KiB")
            lines = bytes(buf[:end]).split(b"\r\n")
            headers, auth = _headers(lines[1:])
            length = _length(headers)
            if len(buf) < end + 4 + length:
                break
            body = bytes(buf[end + 4 : end + 4 + length])
            del buf[: end + 4 + length]
            status = _STATUS.match(lines[0])
            if status is None:
                if _REQUEST.match(lines[0]):
                    continue  # a request from the server (a keep-alive of its own): nothing to do
                raise RtspError("not an RTSP response: " + lines[0][:60].decode("latin-1"))
            reason = (status.group(2) or b"").decode("utf-8", "replace")
            out.append(Response(int(status.group(1)), reason, headers, body, auth))
        return out


def _headers(lines: list[bytes]) -> tuple[dict[str, str], tuple[str, ...]]:
    headers: dict[str, str] = {}
    auth: list[str] = []
    for raw in lines:
        name, colon, value = raw.decode("utf-8", "replace").partition(":")
        if not colon:
            continue
        key, text = name.strip().lower(), value.strip()
        if key == "www-authenticate":
            auth.append(text)
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers, tuple(auth)


def _length(headers: dict[str, str]) -> int:
    raw = headers.get("content-length", "0")
    if not raw.isdigit():
        raise RtspError(f"Content-Length {raw[:20]!r}")
    length = int(raw)
    if length > MAX_BODY:
        raise RtspError(f"a {length}-byte response body")
    return length


def sdp(sps: bytes, pps: bytes, host: str = "127.0.0.1") -> str:
    """The session description of one H.264 stream (RFC 6184), for ANNOUNCE."""
    profile = sps[1:4].hex().upper() if len(sps) >= 4 else "42E01F"
    sets = ",".join(base64.b64encode(nal).decode() for nal in (sps, pps))
    return (
        "v=0\r\n"
        f"o=- 0 0 IN IP4 {host}\r\n"
        "s=edge\r\n"
        "c=IN IP4 0.0.0.0\r\n"
        "t=0 0\r\n"
        "m=video 0 RTP/AVP 96\r\n"
        "a=rtpmap:96 H264/90000\r\n"
        f"a=fmtp:96 packetization-mode=1;profile-level-id={profile};sprop-parameter-sets={sets}\r\n"
        "a=control:streamid=0\r\n"
    )


def authorization(
    challenges: tuple[str, ...],
    method: str,
    uri: str,
    user: str,
    password: str,
    count: int = 1,
    cnonce: str | None = None,
) -> str | None:
    """The Authorization header that answers the server's strongest challenge (Digest MD5 before
    Basic), or None when it offers neither."""
    digest = next((c for c in challenges if c[:7].lower() == "digest "), None)
    if digest is not None:
        params = {
            m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
            for m in _PARAM.finditer(digest[7:])
        }
        algorithm = params.get("algorithm", "MD5")
        if algorithm.upper() == "MD5" and "realm" in params and "nonce" in params:
            realm, nonce = params["realm"], params["nonce"]

            def md5(text: str) -> str:
                return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

            ha1 = md5(f"{user}:{realm}:{password}")
            ha2 = md5(f"{method}:{uri}")
            fields = f'username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
            qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
            if "auth" in qops:
                cnonce = cnonce or os.urandom(8).hex()
                nc = f"{count:08x}"
                answer = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
                fields += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
            else:
                answer = md5(f"{ha1}:{nonce}:{ha2}")
            if "opaque" in params:
                fields += f', opaque="{params["opaque"]}"'
            return f'Digest {fields}, response="{answer}", algorithm=MD5'
    if any(c[:6].lower() == "basic " or c.lower() == "basic" for c in challenges):
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


def session_id(value: str | None) -> tuple[str, float]:
    """The Session header's id and its timeout in seconds (60 when the server gives none)."""
    if not value:
        raise RtspError("SETUP answered without a Session")
    ident, _, rest = value.partition(";")
    timeout = 60.0
    match = re.search(r"timeout=(\d+)", rest)
    if match:
        timeout = max(5.0, min(float(match.group(1)), 3600.0))
    if not ident.strip():
        raise RtspError("an empty Session id")
    return ident.strip(), timeout
