"""The FG's pages: the audit browser, one record with its proof, the log's verification
status, the policy bundle in force, and an inzage for a person.

For the inzage the browser encrypts the BSN under the federation key Y
(``static/inzage.js``, with the vendored ``@noble/curves`` ristretto255);
the form sends only the ciphertext, which the node converts through its
transcryptor chain like the officers' gRPC SubjectReport. The BSN field
has no name, so the browser never sends it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from schakel.v1 import common_pb2

from gateway.audit import inzage
from gateway.audit.chain import Report
from gateway.audit.query import Filter
from gateway.console.forms import Form
from gateway.console.pages import AMSTERDAM, IDENTITY_KEY, Pages
from gateway.errors import InvalidInputError
from gateway.flows import bundles, oversight
from gateway.flows.inzage import INZAGE_ACTIVITY, make_report
from gateway.parts import NodeParts
from policy.pseudonyms import Ciphertext, PseudonymError

INZAGE_METHOD = "schakel.console/SubjectReport"
OUTCOME_CODES = {
    "toegestaan": common_pb2.DECISION_OUTCOME_ALLOW,
    "geweigerd": common_pb2.DECISION_OUTCOME_DENY,
    "deels": common_pb2.DECISION_OUTCOME_PARTIAL,
}
REPORT_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)
"""The rendered inzage report is a document of its own, with its own inline style sheet."""


@dataclass
class LastVerification:
    """The console's most recent full verification of the log."""

    report: Report | None = None
    at: datetime | None = None


def _moment(value: str, name: str) -> datetime | None:
    """A ``datetime-local`` value, read as Amsterdam time."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=AMSTERDAM).astimezone(UTC)
    except ValueError:
        raise InvalidInputError(f"{name} must be a date and time (JJJJ-MM-DDTUU:MM)") from None


def _browse(query: Any) -> oversight.Browse:
    outcome = query.get("uitkomst") or ""
    if outcome and outcome not in OUTCOME_CODES:
        raise InvalidInputError(f"uitkomst must be one of {sorted(OUTCOME_CODES)}")
    where = Filter(
        processing_activity_id=query.get("activiteit") or None,
        since=_moment(query.get("van", ""), "van"),
        until=_moment(query.get("tot", ""), "tot"),
        outcome=OUTCOME_CODES[outcome] if outcome else None,
    )
    return oversight.Browse(
        where,
        requester=query.get("aanvrager", ""),
        provider=query.get("verstrekker", ""),
        rule=query.get("regel", ""),
    )


def _ciphertext(form: Form) -> Ciphertext:
    try:
        raw = bytes.fromhex(form.one("versleuteld", None))
        return Ciphertext.from_bytes(raw)
    except (ValueError, PseudonymError) as exc:
        raise InvalidInputError(f"versleuteld: not a ciphertext under Y ({exc})") from None


def add_routes(app: web.Application, parts: NodeParts, pages: Pages) -> None:
    """The FG's pages under ``/fg``."""
    last = LastVerification()
    subjects = parts.subjects
    resolver = (
        functools.partial(subjects.node_pseudonym, activity=INZAGE_ACTIVITY)
        if subjects is not None
        else None
    )

    async def audit(request: web.Request) -> web.Response:
        what = _browse(request.query)
        entries = await oversight.browse(parts, what)
        return pages.render(
            request,
            "audit.html",
            entries=entries,
            filters=dict(request.query),
            outcomes=sorted(OUTCOME_CODES),
            limit=what.limit,
        )

    async def audit_record(request: web.Request) -> web.Response:
        proven = await oversight.open_record(
            parts, request[IDENTITY_KEY], int(request.match_info["index"])
        )
        return pages.render(request, "record.html", proven=proven)

    async def verification(request: web.Request) -> web.Response:
        state = await oversight.log_state(parts)
        return pages.render(request, "verificatie.html", state=state, last=last)

    async def verify_now(request: web.Request) -> web.StreamResponse:
        last.report = await oversight.verify_log(parts)
        last.at = datetime.now(UTC)
        raise web.HTTPSeeOther("/fg/verificatie")

    async def policy(request: web.Request) -> web.Response:
        view = await bundles.bundle_in_force(parts)
        return pages.render(request, "beleid.html", bundle=view)

    async def inzage_form(request: web.Request) -> web.Response:
        y = subjects.own.global_public_key.hex() if subjects is not None else ""
        return pages.render(request, "inzage.html", y=y)

    async def inzage_report(request: web.Request) -> web.Response:
        form = Form(await request.post())
        report = await make_report(
            parts.audit,
            parts.checkpointer,
            resolver,
            request[IDENTITY_KEY],
            _ciphertext(form).to_proto(),
            name=INZAGE_METHOD,
        )
        response = web.Response(
            text=inzage.render_html(report), content_type="text/html", charset="utf-8"
        )
        response.headers["Content-Security-Policy"] = REPORT_POLICY
        return response

    app.router.add_get("/fg/audit", audit)
    app.router.add_get("/fg/audit/{index:[0-9]{1,18}}", audit_record)
    app.router.add_get("/fg/verificatie", verification)
    app.router.add_post("/fg/verificatie", verify_now)
    app.router.add_get("/fg/beleid", policy)
    app.router.add_get("/fg/inzage", inzage_form)
    app.router.add_post("/fg/inzage", inzage_report)
