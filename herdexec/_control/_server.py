"""The control server: where a herd's HTTP control plane listens, and how it stops.

A stdlib WSGI server (:mod:`wsgiref`) with a thread per connection, so that neither a herd
saturated with CPU-bound work nor a client that connects and goes quiet can hold the
control plane up: a busy herd makes the server wait for the GIL at each system call
(docs/server.md has the figures) but never starves it, and a stuck client holds only its
own thread, which the socket timeout frees. What the server answers is
:mod:`herdexec._control._routes`.

``close()`` has to leave no thread behind, even with clients stuck mid-request, so every
connection is tracked: closing first stops the accept loop (woken through a socket pair,
not by polling), then half-closes each connection for reading, which wakes a handler
blocked on a silent client while letting one that is answering finish, and finally cuts
what is still open after a short grace.

Every server thread is a daemon: a control plane must never keep a process alive, and
``close()`` joins them all anyway.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Final, cast, final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from ._guard import Guard, check_allowed_hosts
from ._routes import make_app

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

    from prometheus_client.registry import CollectorRegistry

    from .._executor import HerdExecutor

__all__ = ["ControlServer"]

#: Seconds a client may stay silent (or not read) before its connection is dropped.
_CLIENT_TIMEOUT: Final = 10.0
#: Seconds close() lets a handler finish its answer before it cuts the connection.
_CLOSE_GRACE: Final = 1.0
#: Seconds to keep reading what a client still sends after its answer (see _linger).
_LINGER: Final = 2.0
#: Pending connections the kernel queues, so that a burst of clients is not refused.
_LISTEN_BACKLOG: Final = 64


@final
class ControlServer:
    """A herd's HTTP control plane, listening in the background (made by
    :meth:`HerdExecutor.serve`).

    It answers ``GET``/``PATCH /herd``, ``GET /metrics`` and the operator's page at
    ``GET /`` (see docs/server.md) until :meth:`close`, which the executor's
    ``shutdown()`` calls too. It holds the executor: a herd that serves stays alive until
    the server is closed or the herd shut down.

    Use it as a context manager to close it on the way out.
    """

    def __init__(
        self,
        executor: HerdExecutor,
        addr: str,
        *,
        registry: CollectorRegistry | None,
        token: str | None,
        protect_reads: bool,
        allowed_hosts: Iterable[str],
    ) -> None:
        host, port = _parse_addr(addr)
        allowed = check_allowed_hosts(allowed_hosts)
        app = make_app(executor, registry=registry, token=token, protect_reads=protect_reads)
        self._logger = executor.logger
        self._listener = _Listener(host, port, self._logger)
        self._listener.set_app(Guard(app, self.host, allowed, self._logger))
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._closing = threading.Event()
        self._close_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread_name = f"herdexec-server-{executor.name}"
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=self._thread_name, daemon=True
        )
        self._acceptor.start()
        self._logger.info("control server for herd %r listening on %s", executor.name, self.url)

    @property
    def host(self) -> str:
        """The address it listens on, as bound (``127.0.0.1`` by default)."""
        return str(self._listener.server_address[0])

    @property
    def port(self) -> int:
        """The port it listens on; the one the system picked if ``addr`` said 0."""
        return int(self._listener.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port``, the base for ``/herd`` and ``/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has begun: it accepts no more connections."""
        return self._closing.is_set()

    def close(self) -> None:
        """Stop listening, end every connection, and return once every server thread
        has exited. Closing again does nothing."""
        with self._close_lock:
            if self._closing.is_set():
                return
            self._closing.set()
            self._wake_w.send(b"\0")
            self._acceptor.join()
            self._listener.server_close()
            self._wake_r.close()
            self._wake_w.close()
            # Only the accept loop adds connections, and it has ended.
            threads = self._cut(socket.SHUT_RD)
            deadline = time.monotonic() + _CLOSE_GRACE
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            self._cut(socket.SHUT_RDWR)
            for thread in threads:
                thread.join()
        self._logger.info("control server on %s closed", self.url)

    def _cut(self, how: int) -> list[threading.Thread]:
        """Shut every open connection down ``how``; return their threads.

        Under the lock, because a handler closes its socket only after it has left the
        table: a socket in the table is never closed (and its descriptor never reused)
        while it is being shut down here.
        """
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):  # the client is gone already
                    connection.shutdown(how)
            return list(self._connections.values())

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "serving"
        return f"<ControlServer {self.url} {state}>"

    # -- the threads -----------------------------------------------------------------

    def _accept_loop(self) -> None:
        listening = self._listener.socket
        with selectors.DefaultSelector() as selector:
            selector.register(listening, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                events = selector.select()
                if any(key.fileobj is self._wake_r for key, _ in events):
                    return
                try:
                    connection, client = listening.accept()
                except (BlockingIOError, ConnectionAbortedError):
                    continue  # the client gave up before we got to it
                except OSError:
                    # Out of descriptors, say: report it, and give the process a moment
                    # rather than spin on the same error.
                    self._logger.exception("control server on %s cannot accept", self.url)
                    if self._closing.wait(0.1):
                        return
                    continue
                self._start(connection, client)

    def _start(self, connection: socket.socket, client: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(connection, client),
            name=f"{self._thread_name}-{client[0]}",
            daemon=True,
        )
        with self._lock:
            self._connections[connection] = thread
        try:
            thread.start()
        except RuntimeError:
            self._logger.exception("control server cannot start a thread for %s", client[0])
            with self._lock:
                del self._connections[connection]
            connection.close()

    def _serve_connection(self, connection: socket.socket, client: Any) -> None:
        try:
            self._listener.finish_request(connection, client)
            _linger(connection)
        except OSError as exc:  # the client went quiet for too long, or went away
            self._logger.debug("control server: connection from %s ended: %r", client[0], exc)
        except Exception:
            self._logger.exception("control server: error serving %s", client[0])
        finally:
            with self._lock:
                del self._connections[connection]
            connection.close()


def _linger(connection: socket.socket) -> None:
    """Half-close, then read whatever the client still sends until it hangs up.

    A socket closed with unread input makes the kernel answer with a reset, and a client
    still sending a body it was refused (401, 413) would then see the reset instead of
    the answer. Reading on for a bounded time (as web servers' "lingering close" does)
    lets curl and urllib read the answer.
    """
    try:
        connection.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + _LINGER
        while (left := deadline - time.monotonic()) > 0:
            connection.settimeout(left)
            if not connection.recv(65536):
                return
    except OSError:
        pass  # timed out, or the client reset: it has what it will get


class _Listener(WSGIServer):
    """The listening socket and the WSGI environment; the threads are ControlServer's."""

    request_queue_size = _LISTEN_BACKLOG

    def __init__(self, host: str, port: int, logger: logging.Logger) -> None:
        self.logger = logger
        try:
            family, _, _, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
        except socket.gaierror as exc:
            raise OSError(exc.errno, f"cannot serve on {host}:{port}: {exc.strerror}") from exc
        self.address_family = family
        super().__init__(cast("tuple[str, int]", address), _Handler, bind_and_activate=False)
        try:
            self.server_bind()
            self.server_activate()
        except OSError as exc:
            self.server_close()
            raise OSError(exc.errno, f"cannot serve on {host}:{port}: {exc.strerror}") from exc
        # The accept loop waits in select(); accept() must then never block.
        self.socket.setblocking(False)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() would look up the host's FQDN, which can wait on DNS,
        # so the SO_REUSEADDR it would set is set here. On POSIX it lets a restarted
        # server bind over its last run's connections in TIME-WAIT, and still refuses a
        # port that another socket listens on; on Windows it would let two listeners
        # share the port, so it is left off there, as asyncio does.
        if os.name == "posix":
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        socket.socket.bind(self.socket, self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])
        self.setup_environ()


class _Handler(WSGIRequestHandler):
    """One connection, one request (HTTP/1.0), logged through the herd's logger."""

    server: _Listener
    timeout = _CLIENT_TIMEOUT
    # Buffered, so that the status line, the headers and the body leave in one send():
    # while gophers hold the GIL, every system call costs the handler a wait for it.
    wbufsize = -1
    # And an answer larger than the buffer is not held back for the client's delayed ACK.
    disable_nagle_algorithm = True

    def get_stderr(self) -> _LogStream:
        # Where wsgiref and bottle write tracebacks ("wsgi.errors"): the log, not stderr.
        return _LogStream(self.server.logger)

    def log_message(self, format: str, *args: Any) -> None:
        self.server.logger.debug("control server: %s %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a request http.server could not parse, in JSON like everything else.

        HTTP/2 and later on the request line, which http.server answers 505, get 400
        instead: this server answers every request it cannot use with a 4xx, so that a
        5xx always means a fault of the server's own. And a request line too broken to
        name its version still gets a status line, which http.server leaves out for
        HTTP/0.9, a version no client of this server speaks.
        """
        code = 400 if code >= 500 else code
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        phrase = self.responses.get(code, ("Error", ""))[0]
        text = (message or phrase)[:200]
        self.log_error("code %d, message %s", code, text)
        body = json.dumps({"msg": text}).encode()
        self.send_response(code)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _LogStream:
    """A text stream that logs what it was given, one record per flush, as an error."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        self._parts.extend(lines)

    def flush(self) -> None:
        text = "".join(self._parts).rstrip()
        self._parts.clear()
        if text:
            self._logger.error("control server: %s", text)


def _parse_addr(addr: object) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6 address]:port"`` into its parts.

    An empty host, which Go's net.Listen reads as every interface, is refused: serving
    beyond this machine must be asked for by name (``0.0.0.0``).
    """
    if not isinstance(addr, str):
        raise TypeError(f"addr must be a str like '127.0.0.1:2112', not {type(addr).__name__}")
    host, colon, port_text = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host:
        raise ValueError(
            f"addr must be 'host:port', like '127.0.0.1:2112' for this machine only or"
            f" '0.0.0.0:2112' for every interface, not {addr!r}"
        )
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError(f"addr {addr!r} needs a port from 0 to 65535 (0 picks a free one)")
    return host, int(port_text)
