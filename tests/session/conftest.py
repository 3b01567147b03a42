"""Fixtures for the session tests: a test project (signing key, JWKS), a verifier on it, and a
JWKS server on a loopback port for the URL path.

Every test here needs PyJWT (the ``session`` extra); without it the directory is skipped, so a
core-only environment still runs the rest of the suite.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("jwt", reason="the session extra (PyJWT) is not installed")

from skaala_auth.session import StackAuthVerifier
from skaala_auth.testing import SessionKit

#: The instant every session test decides at (2030-03-17), far from the real clock on purpose:
#: a check that read the system clock instead of ``now`` would fail these tests.
NOW = 1_900_000_000.0
PROJECT = "test-project"


@pytest.fixture
def kit() -> SessionKit:
    return SessionKit(project_id=PROJECT, clock=lambda: NOW)


@pytest.fixture
def verifier(kit: SessionKit) -> StackAuthVerifier:
    return kit.verifier()


class JwksServer:
    """A JWKS endpoint on 127.0.0.1: what it answers is set by the test, and it counts GETs."""

    def __init__(self) -> None:
        self.document: Any = {"keys": []}
        self.status = 200
        self.body: bytes | None = None  # raw bytes instead of ``document``
        self.delay = 0.0
        self.location: str | None = None  # a redirect
        self.requests = 0
        self.paths: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests += 1
                    server.paths.append(self.path)
                if server.delay:
                    time.sleep(server.delay)
                if server.location is not None:
                    self.send_response(302)
                    self.send_header("Location", server.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.body
                if body is None:
                    body = json.dumps(server.document).encode()
                try:
                    self.send_response(server.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (a body over its limit, its timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/v1/projects/{PROJECT}/.well-known/jwks.json"

    def start(self) -> JwksServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def jwks_server(kit: SessionKit) -> Iterator[JwksServer]:
    server = JwksServer().start()
    server.document = kit.jwks
    try:
        yield server
    finally:
        server.stop()
