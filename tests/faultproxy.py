"""A TCP proxy on 127.0.0.1 that injects real network faults between casdb and PostgreSQL.

``reset()`` sends a TCP RST on every open connection (SO_LINGER 0, then close), ``silence()``
stops forwarding in both directions while keeping every socket open (a network that goes
silent: no reset, no close, nothing to read), ``resume()`` forwards again. New connections made
while silent are accepted and then hang, as a black-holed route would behave. Every loop is
bounded: the proxy thread stops with ``close()`` (or the context manager). ``round_trips``
counts request/reply turns (one client at a time).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from collections.abc import Iterator

from sqlalchemy import URL


class FaultProxy:
    """Forwards 127.0.0.1:<port> to ``target``; faults are switched on from the test."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._silent = threading.Event()
        self._closing = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.connections_made = 0
        self.round_trips = 0
        """Request/reply turns: data from a client after the server's last reply (or first)."""
        self._clients: set[socket.socket] = set()
        self._replied = True
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self._thread.start()

    @classmethod
    def for_url(cls, url: URL) -> FaultProxy:
        return cls(url.host or "127.0.0.1", url.port or 5432)

    def url(self, url: URL) -> URL:
        """``url`` rewritten to go through the proxy."""
        return url.set(host="127.0.0.1", port=self.port)

    # -- faults ---------------------------------------------------------------------------

    def reset(self) -> None:
        """RST every open connection (both sides): the client sees ECONNRESET."""
        with self._lock:
            sockets = list(self._peers)
            self._peers.clear()
        for sock in sockets:
            # A black-holed connection (accepted while silent) was never registered.
            with contextlib.suppress(OSError, KeyError, ValueError):
                self._selector.unregister(sock)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.close()
        self._wake()

    def silence(self) -> None:
        """Stop forwarding anything; every socket stays open (a silent network)."""
        self._silent.set()
        self._wake()

    def resume(self) -> None:
        self._silent.clear()
        self._wake()

    def close(self) -> None:
        self._closing.set()
        self._wake()
        self._thread.join(timeout=10)
        self.reset()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the forwarding loop ---------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        self.connections_made += 1
        if self._silent.is_set():
            # A black hole: the connection is accepted but nothing ever crosses it.
            with self._lock:
                self._peers[client] = client
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._peers[client] = upstream
            self._peers[upstream] = client
            self._clients.add(client)
        self._selector.register(client, selectors.EVENT_READ, None)
        self._selector.register(upstream, selectors.EVENT_READ, None)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            other = self._peers.pop(sock, None)
            if other is not None:
                self._peers.pop(other, None)
        for each in (sock, other):
            if each is None:
                continue
            with contextlib.suppress(OSError, KeyError, ValueError):
                self._selector.unregister(each)
            with contextlib.suppress(OSError):
                each.close()

    def _serve(self) -> None:
        while not self._closing.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data == "wake":
                    with contextlib.suppress(OSError):
                        sock.recv(4096)
                    continue
                if sock is self._listener:
                    self._accept()
                    continue
                if self._silent.is_set():
                    continue  # leave the bytes unread: nothing crosses a silent network
                with self._lock:
                    other = self._peers.get(sock)
                if other is None:
                    continue
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    self._drop(sock)
                    continue
                if not data:
                    self._drop(sock)
                    continue
                if sock not in self._clients:
                    self._replied = True
                elif self._replied:
                    self.round_trips += 1
                    self._replied = False
                try:
                    other.setblocking(True)
                    other.sendall(data)
                    other.setblocking(False)
                except OSError:
                    self._drop(sock)
            if self._silent.is_set():
                # Busy readable sockets would spin the loop: sleep instead of select().
                self._closing.wait(0.05)


@contextlib.contextmanager
def fault_proxy(url: URL) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the server at ``url``, closed at the end."""
    proxy = FaultProxy.for_url(url)
    try:
        yield proxy
    finally:
        proxy.close()
