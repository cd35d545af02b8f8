"""Who may open a console page, and the checks every request passes.

The TLS handshake has already verified the browser's certificate chain to
the federation CA. Per request the middleware then:

1. reads the client certificate from the TLS connection, refuses it when it
   is revoked (the node's CRL, as the gRPC interceptor reads it) or expired,
   and turns it into an :class:`~certs.identity.Identity`;
2. lets in only an officer of this node, and a page of the officer's role:
   the procesregisseur's pages under ``/zaken``, the FG's under ``/fg``
   (403 otherwise: a partner's or a node's certificate opens nothing);
3. for a form (POST) checks the CSRF token, which is bound to the
   certificate, and that the browser says the form came from this origin;
4. starts the call's audit tracking, so that a refusal by a flow is
   recorded exactly as the gRPC API records it, and answers it as a page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from cryptography import x509

from certs.identity import Identity, IdentityError, PeerKind, identity_from_certificate
from gateway.console.pages import CSRF_KEY, IDENTITY_KEY, Pages
from gateway.deadline import start_call
from gateway.errors import (
    AuditUnavailableError,
    ConflictError,
    DeniedError,
    InvalidInputError,
    NotAuthenticatedError,
    NotFoundError,
    SchakelError,
    TimedOutError,
    UnavailableError,
    WrongStateError,
)
from gateway.flows.crossing import begin_call, record_refusal
from gateway.logging import get_logger
from gateway.parts import NodeParts
from gateway.tls import RevocationList

log = get_logger("console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ROLE_AREAS = {"/zaken": "procesregisseur", "/fg": "fg"}
"""The first path segment of a page and the officer role it needs."""
OPEN_PATHS = ("/static/",)
"""Paths any officer of this node may fetch (style sheet and scripts)."""


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a browser sends its forms as "Origin: null".
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Pages hold personal data: never cached, framed, or sent along as a referrer."""


TITLES = {
    400: "Onjuiste invoer",
    401: "Niet aangemeld",
    403: "Geweigerd",
    404: "Niet gevonden",
    405: "Niet toegestaan",
    409: "Niet mogelijk in deze toestand",
    413: "Te groot",
    500: "Fout in het knooppunt",
    503: "Niet beschikbaar",
    504: "Geen antwoord op tijd",
}
"""The heading of a refusal's page; the message below it says what was wrong."""


def status_of(error: SchakelError) -> int:
    """The HTTP status a refusal is answered with."""
    table: list[tuple[type[SchakelError], int]] = [
        (NotAuthenticatedError, 401),
        (DeniedError, 403),
        (NotFoundError, 404),
        (InvalidInputError, 400),
        (ConflictError, 409),
        (WrongStateError, 409),
        (TimedOutError, 504),
        (UnavailableError, 503),
    ]
    return next((code for kind, code in table if isinstance(error, kind)), 500)


@dataclass
class Gate:
    """The identity, CSRF and refusal checks of one console."""

    parts: NodeParts
    revocations: RevocationList
    pages: Pages
    secret: bytes = b""

    def __post_init__(self) -> None:
        # Per process: a restart makes the forms of open pages stale, nothing worse.
        self.secret = self.secret or secrets.token_bytes(32)

    def csrf_token(self, der: bytes) -> str:
        """The form token of the browser with this certificate."""
        return hmac.new(self.secret, hashlib.sha256(der).digest(), "sha256").hexdigest()

    def _certificate(self, request: web.Request) -> bytes:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not isinstance(ssl_object, ssl.SSLObject) or not der:
            raise NotAuthenticatedError("geen clientcertificaat")
        return bytes(der)

    def identify(self, der: bytes) -> Identity:
        """The officer of this node that ``der`` names; refused otherwise."""
        try:
            cert = x509.load_der_x509_certificate(der)
            identity = identity_from_certificate(cert)
        except (ValueError, IdentityError) as exc:
            raise NotAuthenticatedError(
                f"client certificate is not a Schakel identity: {exc}"
            ) from None
        self.revocations.refresh()
        if self.revocations.is_revoked(cert.serial_number):
            raise NotAuthenticatedError(f"client certificate of {identity.uri} is revoked")
        if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
            raise NotAuthenticatedError(f"client certificate of {identity.uri} has expired")
        if identity.kind is not PeerKind.OFFICER or identity.node_id != self.parts.node_id:
            raise DeniedError(
                f"the console is for the officers of node {self.parts.node_id}; "
                f"the certificate is of {identity.uri}"
            )
        return identity

    def _check_role(self, identity: Identity, path: str) -> None:
        for prefix, role in ROLE_AREAS.items():
            if (path == prefix or path.startswith(prefix + "/")) and role not in identity.roles:
                raise DeniedError(
                    f"this page is for the {role}; the certificate is of {identity.uri}"
                )

    async def _check_form(self, request: web.Request, der: bytes) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise DeniedError("the form was sent from another site")
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise DeniedError("the form was sent from another site")
        form = await request.post()
        token = form.get("csrf", "")
        if not isinstance(token, str) or not hmac.compare_digest(token, self.csrf_token(der)):
            raise DeniedError("the form's token is missing or stale; reload the page")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticate, authorise and guard ``request``, then answer it or its refusal."""
        begin_call()
        start_call(None)
        try:
            der = self._certificate(request)
            identity = self.identify(der)
            request[IDENTITY_KEY] = identity
            request[CSRF_KEY] = self.csrf_token(der)
            if not request.path.startswith(OPEN_PATHS):
                self._check_role(identity, request.path)
            if request.method == "POST":
                await self._check_form(request, der)
            response = await handler(request)
        except SchakelError as error:
            response = await self._refusal(request, error)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            title = TITLES.get(exc.status, exc.reason)
            response = self.pages.error(request, exc.status, title, exc.reason)
        except Exception as exc:
            # The type only: an exception's text may quote a value, a query or a pseudonym.
            log.error("console_failed", path=request.path, error_type=type(exc).__name__)
            response = self.pages.error(
                request,
                500,
                TITLES[500],
                f"Deze pagina kon niet worden gemaakt ({type(exc).__name__}); "
                "de beheerders vinden het in het log van het knooppunt.",
            )
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        log.info("console", method=request.method, path=request.path, status=response.status)
        return response

    async def _refusal(self, request: web.Request, error: SchakelError) -> web.Response:
        """Audit a flow's refusal as the gRPC API does, and show it.

        Only a refusal after a flow began its crossing is recorded (with the
        subject when the flow knew it); an unknown certificate made none.
        """
        if not isinstance(error, AuditUnavailableError):
            try:
                await record_refusal(self.parts.audit)
            except AuditUnavailableError as failed:
                error = failed
        log.warning("console_refused", path=request.path, error_type=type(error).__name__)
        status = status_of(error)
        return self.pages.error(request, status, TITLES.get(status, "Geweigerd"), error.message)
