"""A fault-injecting TCP proxy: cuts, resets and stalls live connections to a service."""

from __future__ import annotations

import contextlib
import queue
import selectors
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

from harness.processes import LOCALHOST


class TcpProxy:
    """A TCP proxy 127.0.0.1:<port> → target, for cutting and stalling live connections.

    One selector thread owns every socket, so faults are applied between two reads, never in
    the middle of another thread's send. Control methods block until the loop has applied them.
    Bytes held while stalled are delivered in order after `unstall()`.
    """

    _HIGH_WATER = 1 << 20  # stop reading a side while this much is waiting for its peer

    def __init__(
        self,
        target_host: str,
        target_port: int,
        listen_port: int = 0,
        connect_timeout: float = 2.0,
    ) -> None:
        self.target = (target_host, target_port)
        self.connect_timeout = connect_timeout
        self._listener = socket.create_server((LOCALHOST, listen_port), backlog=128)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._commands: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = (
            queue.SimpleQueue()
        )
        self._links: set[_Link] = set()
        self._stalled = False
        self._closed = False
        self.accepted = 0  # connections accepted so far, for tests to wait on
        self._thread = threading.Thread(
            target=self._run, name=f"TcpProxy:{self.port}->{target_port}", daemon=True
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return LOCALHOST

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def connection_count(self) -> int:
        return len(self._links)

    def drop_connections(self) -> None:
        """Reset every open connection on both sides (RST, no FIN), as a dying network would."""
        self._call(self._drop_all)

    def stall(self) -> None:
        """Stop moving bytes in both directions; connections stay open, new ones are accepted."""
        self._call(lambda: self._set_stalled(True))

    def unstall(self) -> None:
        self._call(lambda: self._set_stalled(False))

    def close(self) -> None:
        """Drop all connections, stop listening and end the thread. Idempotent."""
        if self._closed:
            return
        self._call(self._shutdown)
        self._thread.join(5)
        self._wake_w.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<TcpProxy {self.host}:{self.port} -> {self.target[0]}:{self.target[1]} "
            f"links={len(self._links)} stalled={self._stalled}>"
        )

    # -- loop thread only below ----------------------------------------------------------------

    def _call(self, command: Callable[[], None], timeout: float = 5.0) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        done = threading.Event()
        self._commands.put((command, done))
        self._wake_w.send(b"\0")
        if not done.wait(timeout):
            raise TimeoutError(f"{self!r} did not apply a command within {timeout} s")

    def _run(self) -> None:
        while not self._closed:
            for key, mask in self._selector.select():
                if key.data == "wake":
                    self._run_commands()
                elif key.data == "accept":
                    self._accept()
                else:
                    link, sock = key.data
                    link.handle(sock, mask)
                    if link.closed:
                        self._links.discard(link)
                    else:
                        link.update_interest(self._stalled)
                if self._closed:
                    break
        self._selector.close()

    def _run_commands(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        while True:
            try:
                command, done = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                command()
            finally:
                done.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except BlockingIOError:
                return
            self.accepted += 1
            try:
                # Blocking connect from the loop thread: targets are local, and a refused
                # upstream should look to the client like the server being down (a reset).
                upstream = socket.create_connection(self.target, timeout=self.connect_timeout)
            except OSError:
                _reset(client)
                continue
            link = _Link(self._selector, client, upstream, self._HIGH_WATER)
            self._links.add(link)
            link.update_interest(self._stalled)

    def _set_stalled(self, stalled: bool) -> None:
        self._stalled = stalled
        for link in self._links:
            link.update_interest(stalled)

    def _drop_all(self) -> None:
        for link in list(self._links):
            link.close(abort=True)
        self._links.clear()

    def _shutdown(self) -> None:
        self._drop_all()
        self._selector.unregister(self._listener)
        self._listener.close()
        self._selector.unregister(self._wake_r)
        self._wake_r.close()
        self._closed = True


class _Link:
    """One proxied connection: two sockets and a buffer per direction."""

    def __init__(
        self,
        selector: selectors.BaseSelector,
        client: socket.socket,
        upstream: socket.socket,
        high_water: int,
    ) -> None:
        self.selector = selector
        self.high_water = high_water
        self.peer = {client: upstream, upstream: client}
        self.outbox: dict[socket.socket, bytearray] = {client: bytearray(), upstream: bytearray()}
        self.eof: set[socket.socket] = set()  # sides that sent FIN
        self.interest: dict[socket.socket, int] = {client: 0, upstream: 0}
        self.closed = False
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self, sock: socket.socket, mask: int) -> None:
        if self.closed:  # an event from the same select() batch as a drop
            return
        try:
            if mask & selectors.EVENT_WRITE:
                self._flush(sock)
            if mask & selectors.EVENT_READ and not self.closed:
                self._read(sock)
        except OSError:
            # A reset on one side is passed on as a reset on the other.
            self.close(abort=True)

    def _read(self, sock: socket.socket) -> None:
        peer = self.peer[sock]
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        if data:
            self.outbox[peer] += data
            self._flush(peer)
            return
        self.eof.add(sock)
        self._forward_eof(peer)

    def _flush(self, sock: socket.socket) -> None:
        box = self.outbox[sock]
        while box:
            try:
                sent = sock.send(box)
            except BlockingIOError:
                return
            del box[:sent]
        if self.peer[sock] in self.eof:
            self._forward_eof(sock)

    def _forward_eof(self, sock: socket.socket) -> None:
        """Half-close `sock` once everything its peer sent before FIN has been written."""
        if self.outbox[sock]:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        if len(self.eof) == 2 and not any(self.outbox.values()):
            self.close(abort=False)

    def update_interest(self, stalled: bool) -> None:
        if self.closed:
            return
        for sock, peer in self.peer.items():
            events = 0
            if not stalled:
                if sock not in self.eof and len(self.outbox[peer]) < self.high_water:
                    events |= selectors.EVENT_READ
                if self.outbox[sock]:
                    events |= selectors.EVENT_WRITE
            self._set_interest(sock, events)

    def _set_interest(self, sock: socket.socket, events: int) -> None:
        current = self.interest[sock]
        if events == current:
            return
        if current == 0:
            self.selector.register(sock, events, (self, sock))
        elif events == 0:
            self.selector.unregister(sock)
        else:
            self.selector.modify(sock, events, (self, sock))
        self.interest[sock] = events

    def close(self, abort: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in self.peer:
            if self.interest[sock]:
                self.selector.unregister(sock)
            if abort:
                _reset(sock)
            else:
                sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0, which sends RST instead of FIN: the peer sees ECONNRESET."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
