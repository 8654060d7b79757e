"""A TCP proxy on 127.0.0.1 that adds latency each way and counts request/response turns.

Cloud SQL is reached over a network where round trips dominate a small operation's time; this
proxy puts a fixed one-way delay on every byte in both directions, so a benchmark shows what
each round trip costs. It also counts **round trips**: a turn starts each time the client
sends after having received (or for the first time); every turn waits for at least one reply,
so turns per call is the number of network round trips the call pays.

It runs in a child process (``multiprocessing`` spawn): inside the benchmark's own process its
threads would wait for the GIL behind the code being timed (Python switches threads every
5 ms), and the delay would be the interpreter's, not the network's. Each connection has a
reader and a writer thread per direction: the reader stamps each chunk with the time it may be
delivered, the writer sleeps until then (``time.sleep``: sub-millisecond, where asyncio's
epoll timers round up to whole milliseconds), so the delay adds to every round trip without
limiting throughput.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import socket
import threading
import time
from collections.abc import Iterator
from multiprocessing.sharedctypes import Synchronized
from typing import Any

_CHUNK = 65_536


class Proxy:
    """A running proxy: ``port`` to connect to, ``turns`` counted so far (all connections)."""

    def __init__(self, port: int, turns: Synchronized[int], latency_ms: float) -> None:
        self.port = port
        self.latency_ms = latency_ms
        self._turns = turns

    @property
    def turns(self) -> int:
        """Request/response turns started by clients since the proxy started."""
        return int(self._turns.value)


@contextlib.contextmanager
def running(upstream_host: str, upstream_port: int, *, latency_ms: float) -> Iterator[Proxy]:
    """A proxy to ``upstream_host:upstream_port`` adding ``latency_ms`` each way, stopped after."""
    context = multiprocessing.get_context("spawn")
    turns: Synchronized[int] = context.Value("q", 0)  # type: ignore[assignment]
    ready = context.Queue()
    process = context.Process(
        target=_serve,
        args=(upstream_host, upstream_port, latency_ms / 1000, turns, ready),
        name="bench-latency-proxy",
        daemon=True,
    )
    process.start()
    try:
        port = ready.get(timeout=30)
        yield Proxy(port, turns, latency_ms)
    finally:
        process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()


def _serve(
    upstream_host: str,
    upstream_port: int,
    delay: float,
    turns: Synchronized[int],
    ready: Any,
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    ready.put(listener.getsockname()[1])
    while True:
        client, _ = listener.accept()
        server = socket.create_connection((upstream_host, upstream_port))
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # One flag per connection: set while the client is sending, cleared by any reply.
        state = {"client_turn": False}
        _pipe(client, server, delay, state, turns, from_client=True)
        _pipe(server, client, delay, state, turns, from_client=False)


def _pipe(
    source: socket.socket,
    target: socket.socket,
    delay: float,
    state: dict[str, bool],
    turns: Synchronized[int],
    *,
    from_client: bool,
) -> None:
    chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def read() -> None:
        try:
            while data := source.recv(_CHUNK):
                if from_client:
                    if not state["client_turn"]:
                        state["client_turn"] = True
                        with turns.get_lock():
                            turns.value += 1
                else:
                    state["client_turn"] = False
                chunks.put((time.perf_counter() + delay, data))
        except OSError:
            pass
        chunks.put((0.0, b""))

    def write() -> None:
        try:
            while True:
                deliver_at, data = chunks.get()
                if not data:
                    break
                wait = deliver_at - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                target.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=write, daemon=True).start()
