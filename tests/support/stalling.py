"""A TCP proxy on loopback in front of a real server that can stop reading from its clients: the
"server accepts and stops reading" fault, with a real server behind it while it does read.

    with StallProxy("127.0.0.1", nginx.rtmp_port) as proxy:
        url = proxy.url_for(nginx.rtmp_url("cam0"))   # the same URL through the proxy
        ...
        proxy.stall()     # from now on nothing is read from any client (its sends fill up and
                          # block); new connections are accepted and never read
        proxy.resume()    # read again: the connections that are still there go on, new ones are
                          # forwarded (those accepted while stalled stay unread)

One thread, with a selector, for every connection.
"""

from __future__ import annotations

import selectors
import socket
import threading
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

BUFFER = 65536


class StallProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._clients: set[socket.socket] = set()
        self._stalled = threading.Event()
        self._stop = threading.Event()
        self._held: list[socket.socket] = []  # clients accepted while stalled: kept, never read
        self.bytes_from_client = 0
        self.connections = 0
        self._thread = threading.Thread(target=self._run, name="stall-proxy", daemon=True)
        self._thread.start()

    def __enter__(self) -> StallProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def url_for(self, url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.port}"))

    def stall(self) -> None:
        self._stalled.set()

    def resume(self) -> None:
        self._stalled.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for sock in [self._listener, *self._peers, *self._held]:
            sock.close()

    def _run(self) -> None:
        paused: list[socket.socket] = []  # clients not read from while stalled (out of the selector)
        while not self._stop.is_set():
            if self._stalled.is_set() and not paused:
                paused = [s for s in self._peers if self._is_client(s)]
                for sock in paused:
                    self._selector.unregister(sock)
            elif not self._stalled.is_set() and paused:
                # Read again: a client that left meanwhile is noticed, and its server side closed.
                for sock in paused:
                    if sock in self._peers:
                        self._selector.register(sock, selectors.EVENT_READ, "client")
                paused = []
            for key, _ in self._selector.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                else:
                    self._forward(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        self.connections += 1
        if self._stalled.is_set():
            self._held.append(client)
            return
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
        self._peers[client], self._peers[server] = server, client
        self._clients.add(client)
        self._selector.register(client, selectors.EVENT_READ, "client")
        self._selector.register(server, selectors.EVENT_READ, "server")

    def _forward(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(BUFFER)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock, peer)
            return
        if self._is_client(sock):
            self.bytes_from_client += len(data)
        try:
            peer.setblocking(True)
            peer.settimeout(5)
            peer.sendall(data)
            peer.setblocking(False)
        except OSError:
            self._drop(sock, peer)

    def _is_client(self, sock: socket.socket) -> bool:
        return sock in self._clients

    def _drop(self, *socks: socket.socket) -> None:
        for sock in socks:
            if sock in self._peers:
                try:
                    self._selector.unregister(sock)
                except KeyError:  # a paused client
                    pass
                del self._peers[sock]
                self._clients.discard(sock)
                sock.close()
