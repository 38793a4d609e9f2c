"""Publishing over RTSP (``rtsp://``, ``rtsps://``): ANNOUNCE the stream, SETUP one track
interleaved on the RTSP connection (TCP: a lost packet would cost a reader a broken picture until
the next key frame, and a dead server is only noticed on TCP), RECORD, then PyAV's RTP packets.
MediaMTX, go2rtc and GStreamer's RTSP server take a publisher this way."""

from __future__ import annotations

import time

from ..config.target import PublishTarget
from ..fanout.units import AccessUnit
from ..formats import rtsp
from .link import Link, PublishError
from .muxer import Muxer

TRANSPORT = "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"


def control_url(url: str) -> str:
    """The track's URL (the SDP's ``a=control:streamid=0``) below the stream's, before its query."""
    path, mark, query = url.partition("?")
    return f"{path.rstrip('/')}/streamid=0{mark}{query}"


class RtspSession:
    def __init__(self, target: PublishTarget, link: Link, fps: float) -> None:
        self.target = target
        self.link = link
        self.fps = fps
        self._reader = rtsp.ResponseReader()
        self._cseq = 0
        self._auth_challenges: tuple[str, ...] = ()
        self._auth_count = 0
        self._session: str | None = None
        self._keepalive = 30.0
        self._last_request = 0.0
        self._muxer: Muxer | None = None

    def open(self, first: AccessUnit) -> None:
        self.link.connect()
        url = self.target.url
        params = first.params
        description = rtsp.sdp(params.sps, params.pps).encode()
        self._request("ANNOUNCE", url, {"Content-Type": "application/sdp"}, description)
        reply = self._request("SETUP", control_url(url), {"Transport": TRANSPORT})
        self._session, timeout = rtsp.session_id(reply.header("session"))
        self._keepalive = timeout / 2
        self._request("RECORD", url, {"Session": self._session, "Range": "npt=0.000-"})
        self._muxer = Muxer("rtp", first, self.fps)

    def send(self, unit: AccessUnit) -> None:
        assert self._muxer is not None
        frames = []
        for packet in self._muxer.write(unit):
            # RTCP (sender reports, payload types 200 to 204) goes on the track's odd channel.
            channel = 1 if len(packet) > 1 and 200 <= packet[1] <= 204 else 0
            frames.append(rtsp.interleaved(channel, packet))
        if time.monotonic() - self._last_request > self._keepalive:
            # Servers time a session out without requests; the reply is read (and dropped) by poll.
            frames.append(self._build("GET_PARAMETER", self.target.url, {"Session": self._session or ""}))
        self.link.send(b"".join(frames))

    def poll(self) -> None:
        data = self.link.receive(0.0)
        if data:
            for reply in self._reader.feed(data):
                if reply.status >= 400 and reply.status != 405:  # 405: a server without GET_PARAMETER
                    raise PublishError(f"the server ended the stream: {reply.status} {reply.reason}".strip())

    def close(self, abort: bool) -> None:
        try:
            if self._session is not None and not abort:
                self.link.send(self._build("TEARDOWN", self.target.url, {"Session": self._session}))
        except Exception:  # a goodbye to a server that is gone
            pass
        finally:
            if self._muxer is not None:
                self._muxer.close()
            self.link.close(abort)

    # -- requests ----------------------------------------------------------------------------

    def _build(self, method: str, url: str, headers: dict[str, str], body: bytes = b"") -> bytes:
        self._cseq += 1
        self._last_request = time.monotonic()
        headers = dict(headers)
        target = self.target
        if self._auth_challenges and target.user is not None:
            self._auth_count += 1
            answer = rtsp.authorization(
                self._auth_challenges, method, url, target.user, target.password or "", self._auth_count
            )
            if answer is not None:
                headers["Authorization"] = answer
        return rtsp.request(method, url, self._cseq, headers, body)

    def _request(self, method: str, url: str, headers: dict[str, str], body: bytes = b"") -> rtsp.Response:
        for attempt in range(2):
            self.link.send(self._build(method, url, headers, body))
            reply = self._reply(method)
            if reply.status == 401 and attempt == 0 and reply.auth:
                if self.target.user is None:
                    raise PublishError(f"the server wants a user and password for {method}: write rtsp://USER:PASS@…")
                self._auth_challenges = reply.auth
                continue
            if reply.status == 401:
                raise PublishError(f"the server refused the user name or password ({method}: 401)")
            if reply.status >= 300:
                raise PublishError(f"the server refused {method}: {reply.status} {reply.reason}".strip())
            return reply
        raise PublishError(f"the server refused {method}")  # pragma: no cover - the loop returns or raises

    def _reply(self, method: str) -> rtsp.Response:
        return self.link.answer(self._reader.feed, method)[-1]
