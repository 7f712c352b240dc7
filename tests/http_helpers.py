"""Plain HTTP clients for the control-server tests: real requests over loopback, no mocks."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

from herdexec import ControlServer


def call(
    server: ControlServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request on its own connection: the status, the headers and the raw body."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def call_json(
    server: ControlServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, Any]:
    """Like :func:`call`, for an answer that must be JSON."""
    status, response_headers, data = call(server, method, path, body, headers)
    assert response_headers["Content-Type"] == "application/json", data
    return status, response_headers, json.loads(data)


def raw(server: ControlServer, data: bytes, *, half_close: bool = False) -> tuple[int, Any]:
    """Send bytes as they are (malformed requests, short bodies); parse the answer."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            assert response.headers["Content-Type"] == "application/json"
            return response.status, json.loads(response.read())
        finally:
            response.close()
