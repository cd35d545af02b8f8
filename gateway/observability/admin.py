"""The admin port: ``/metrics``, ``/healthz`` and ``/readyz`` over plain HTTP.

A small threaded WSGI server, like ``prometheus_client.start_http_server``,
so a scrape or a probe never waits on the node's event loop and the node's
calls never wait on a scrape. It answers GET only:

- ``/healthz``: 200 while the process runs (the liveness probe);
- ``/readyz``: 200 when every readiness check passes, else 503; the body
  has one line per check (``ok database`` or ``fail policy: <reason>``);
- ``/metrics``: the Prometheus exposition of the registry it was given;
- anything else: 404.

The port has no TLS and no authentication and shows no personal data: bind
it to loopback or a cluster-internal address.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from gateway.logging import get_logger

__all__ = ["AdminServer", "Check"]

log = get_logger("admin")

Check = Callable[[], str | None]
"""A readiness check: None when ready, else the reason it is not (one line, no data)."""

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _QuietHandler(WSGIRequestHandler):
    """Scrapes and probes come every few seconds: no access log line for each."""

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing."""


def _text(start: StartResponse, status: str, body: str) -> list[bytes]:
    start(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]


class AdminServer:
    """Serves the admin endpoints on ``listen`` (``host:port``) once :meth:`start` ran."""

    def __init__(
        self, listen: str, registry: CollectorRegistry, checks: Mapping[str, Check]
    ) -> None:
        self.listen = listen
        self.checks = dict(checks)
        self._metrics = make_wsgi_app(registry)
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound (``listen`` may ask for port 0)."""
        if self._httpd is None:
            raise RuntimeError("the admin server is not started")
        return int(self._httpd.server_port)

    def start(self) -> None:
        """Bind and serve in a daemon thread; OSError when the address cannot be bound."""
        host, _, port = self.listen.rpartition(":")
        host = host.strip("[]")
        family = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0][0]

        class Server(ThreadingWSGIServer):
            address_family = family

        self._httpd = make_server(host, int(port), self._app, Server, handler_class=_QuietHandler)
        # A short poll, so that stopping the node never waits long on this thread.
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.1)
        self._thread = threading.Thread(target=serve, name="admin-http", daemon=True)
        self._thread.start()
        log.info("admin_started", listen=f"{self.listen.rpartition(':')[0]}:{self.port}")

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def readiness(self) -> tuple[bool, list[str]]:
        """Run every check; (all passed, one line per check)."""
        lines, ready = [], True
        for name, check in self.checks.items():
            try:
                reason = check()
            except Exception as exc:  # a check that breaks means "not ready", never a 500
                reason = f"check failed: {type(exc).__name__}"
            if reason is None:
                lines.append(f"ok {name}")
            else:
                ready = False
                lines.append(f"fail {name}: {reason}")
        return ready, lines

    def _app(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET":
            start("405 Method Not Allowed", [("Allow", "GET")])
            return [b""]
        if path == "/metrics":
            body: Iterable[bytes] = self._metrics(environ, start)
            return body
        if path == "/healthz":
            return _text(start, "200 OK", "ok\n")
        if path == "/readyz":
            ready, lines = self.readiness()
            status = "200 OK" if ready else "503 Service Unavailable"
            return _text(start, status, "\n".join(lines) + "\n")
        return _text(start, "404 Not Found", "not found: try /metrics, /healthz or /readyz\n")
