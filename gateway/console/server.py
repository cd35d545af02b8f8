"""The console's HTTPS server: TLS 1.3 with a required client certificate, on its own port.

aiohttp runs in the node's own event loop, so a page calls the same async
flows as the gRPC servicers, on the same parts, holding the same case
locks. The TLS context asks every browser for a certificate chaining to
the federation CA (a browser without one is refused in the handshake);
who may see what is :mod:`gateway.console.access`.

Like the gRPC port, the console follows a rotation of the node's
certificate, key or CA files: before a handshake it checks whether the
files changed and, if they did, hands that handshake a context built
from the new files (a rotation that cannot be loaded is logged and the
last good context kept).
"""

from __future__ import annotations

import ssl
from importlib.resources import files

from aiohttp import web

from gateway.config import ConfigError, config_error, split_listen
from gateway.console import fg, regie
from gateway.console.access import Gate
from gateway.console.pages import IDENTITY_KEY, Pages
from gateway.logging import get_logger
from gateway.parts import NodeParts
from gateway.tls import RevocationList, TlsFileError, TlsFiles, read_material

log = get_logger("console")


def tls_context(parts: NodeParts) -> ssl.SSLContext:
    """TLS 1.3 only, the node's certificate, and a client certificate from the federation CA."""
    tls = parts.config.tls
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cafile=str(tls.ca_file))
        password = (
            tls.key_passphrase_file.read_bytes().splitlines()[0]
            if tls.key_passphrase_file is not None
            else None
        )
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file), password=password)
    except (OSError, ssl.SSLError, IndexError) as exc:
        raise config_error(
            parts.config, "tls.cert_file", f"the console cannot use it: {exc}"
        ) from exc
    return context


class RotatingContext:
    """The console's TLS context, rebuilt when the node's TLS files change."""

    def __init__(self, parts: NodeParts) -> None:
        self.parts = parts
        tls = parts.config.tls
        self.files = TlsFiles(tls.ca_file, tls.cert_file, tls.key_file, tls.key_passphrase_file)
        self._stamp = self.files.stamp()
        try:
            self.current = self._build()
        except TlsFileError as exc:
            raise config_error(parts.config, f"tls.{exc.key}", str(exc)) from exc
        self.generation = 0
        """Incremented on every rotation taken."""

    def _build(self) -> ssl.SSLContext:
        # The same checks as the gRPC port's: this node's certificate, from the CA, valid now.
        read_material(self.files, self.parts.node_id)
        context = tls_context(self.parts)
        context.sni_callback = self._before_handshake
        return context

    def _before_handshake(
        self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        """OpenSSL's server-name callback, called for every handshake (with or without SNI)."""
        try:
            stamp = self.files.stamp()
        except OSError as exc:
            log.error("console_tls_reload_failed", reason=f"cannot stat: {exc.strerror}")
            stamp = self._stamp
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self.current = self._build()
                self.generation += 1
                log.info("console_tls_rotated", generation=self.generation)
            except (ConfigError, TlsFileError) as exc:
                log.error("console_tls_reload_failed", reason=str(exc))
        if connection.context is not self.current:
            connection.context = self.current


async def _home(request: web.Request) -> web.StreamResponse:
    identity = request[IDENTITY_KEY]
    target = "/zaken" if "procesregisseur" in identity.roles else "/fg/audit"
    raise web.HTTPSeeOther(target)


def build_app(parts: NodeParts, revocations: RevocationList) -> web.Application:
    """The console's routes behind the access checks."""
    pages = Pages()
    gate = Gate(parts, revocations, pages)
    app = web.Application(middlewares=[gate.middleware], client_max_size=64 * 1024)
    app.router.add_get("/", _home)
    regie.add_routes(app, parts, pages)
    fg.add_routes(app, parts, pages)
    app.router.add_static("/static", str(files("gateway.console").joinpath("static")))
    return app


class ConsoleServer:
    """The console of one node on ``[console] listen``; :meth:`start`, then :meth:`stop`."""

    def __init__(self, parts: NodeParts, revocations: RevocationList) -> None:
        self.parts = parts
        self.listen = parts.config.console.listen
        self.tls = RotatingContext(parts)
        self._runner = web.AppRunner(build_app(parts, revocations), access_log=None)
        self._site: web.TCPSite | None = None
        self.port = 0
        """The port actually bound, once started."""

    @property
    def url(self) -> str:
        """Where an officer's browser opens the console."""
        host, _ = split_listen(self.listen)
        shown = f"[{host}]" if ":" in host else host
        return f"https://{shown}:{self.port}/"

    async def start(self) -> None:
        """Bind and serve; ConfigError naming ``console.listen`` when it cannot bind."""
        host, port = split_listen(self.listen)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port, ssl_context=self.tls.current)
        try:
            await self._site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(
                f"{self.parts.config.source}: console.listen: cannot listen on {self.listen} "
                f"({exc.strerror or exc})"
            ) from exc
        server = self._site._server  # aiohttp keeps the bound socket there
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        log.info("console_started", url=self.url)

    async def stop(self) -> None:
        """Stop serving and close open connections."""
        await self._runner.cleanup()
