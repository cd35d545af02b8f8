"""The procesregisseur's pages: the case list, one case, and the actions on it.

Every action calls the flow the CaseService servicer calls
(:mod:`gateway.rpc.case`), under the case's own processing activity and
holding the case's lock, so policy, phase rules and audit apply exactly
as over gRPC. Reading a case is audited by :func:`gateway.flows.casebook.view_case`.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from schakel.v1 import case_pb2

from gateway.cases import Participant
from gateway.cases.listing import CaseFilter
from gateway.console.forms import Form
from gateway.console.pages import IDENTITY_KEY, Pages
from gateway.errors import InvalidInputError
from gateway.flows import afschaling, bottlenecks, casebook, hitnohit, overdracht, triage, uitvraag
from gateway.flows.regie import CaseCall
from gateway.parts import NodeParts
from policy.vocabulary import ORG_TYPES, Phase

GROUND_KINDS = {
    "consent": ("Toestemming", case_pb2.GROUND_KIND_CONSENT),
    "legal_duty": ("Wettelijke plicht", case_pb2.GROUND_KIND_LEGAL_DUTY),
    "conflict_van_plichten": ("Conflict van plichten", case_pb2.GROUND_KIND_CONFLICT_VAN_PLICHTEN),
}

Action = Callable[[NodeParts, CaseCall, Form], Awaitable[dict[str, Any] | None]]
"""Runs one action; what it returns is shown on the case page as the action's result."""


def _vocabulary(parts: NodeParts) -> dict[str, Any]:
    """The bundle's codes the forms offer, and this node's partners and peers."""
    bundle = parts.policy.evaluator.policy.bundle if parts.policy is not None else None
    peers = parts.peers.peers() if parts.peers is not None else []
    return {
        "themes": bundle.themes if bundle else (),
        "categories": sorted(bundle.categories) if bundle else (),
        "outcomes": bundle.outcomes if bundle else (),
        "tags": bundle.bottlenecks if bundle else (),
        "partners": parts.config.partners,
        "peers": [p.node_id for p in peers],
        "org_types": sorted(ORG_TYPES),
        "ground_kinds": {k: v[0] for k, v in GROUND_KINDS.items()},
        "phases": [p.value for p in Phase],
        "node_id": parts.node_id,
    }


def _idempotency_key() -> str:
    """A fresh hand-over key of letters only: no run of digits a text check could read as a
    BSN or a date (see :mod:`policy.text`), so a random key is never refused."""
    return "console-" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(26))


def _filter(query: Any) -> CaseFilter:
    phase = query.get("fase") or None
    if phase is not None and phase not in {p.value for p in Phase}:
        raise InvalidInputError(f"fase must be one of {[p.value for p in Phase]}")
    days = query.get("ouder_dan") or ""
    if days and (not days.isdigit() or int(days) > 36500):
        raise InvalidInputError("ouder_dan must be a number of days")
    return CaseFilter(
        phase=Phase(phase) if phase else None,
        theme=query.get("thema") or None,
        opened_before=datetime.now(UTC) - timedelta(days=int(days)) if days else None,
        tag=query.get("knelpunt") or None,
    )


async def _triage(parts: NodeParts, call: CaseCall, form: Form) -> None:
    accept = form.one("besluit") == "accepteren"
    named = [_participant_of(value) for value in form.many("deelnemers")] if accept else []
    await triage.triage(
        parts, call, accept=accept, reason_code=form.one("reden"), participants=named
    )


def _participant_of(value: str) -> Participant:
    """A checkbox's ``org_id|org_type|node_id``."""
    org_id, _, rest = value.partition("|")
    org_type, _, node_id = rest.partition("|")
    if not (org_id and org_type and node_id):
        raise InvalidInputError("a participant is org_id|org_type|node_id")
    return Participant(org_id, org_type, node_id)


async def _start_triage(parts: NodeParts, call: CaseCall, form: Form) -> None:
    await triage.start_triage(parts, call)


async def _participant(parts: NodeParts, call: CaseCall, form: Form) -> None:
    org_id, org_type, node_id = (form.one("org_id"), form.one("org_type"), form.one("node_id"))
    await triage.add_participant(parts, call, Participant(org_id, org_type, node_id))


async def _ground(parts: NodeParts, call: CaseCall, form: Form) -> None:
    kind = GROUND_KINDS.get(form.one("soort"))
    if kind is None:
        raise InvalidInputError(f"soort must be one of {sorted(GROUND_KINDS)}")
    await triage.record_ground(
        parts,
        call,
        kind=kind[1],
        category=form.one("categorie"),
        provider_org_id=form.one("verstrekker"),
        evidence_ref=form.one("bewijs"),
    )


async def _hitnohit(parts: NodeParts, call: CaseCall, form: Form) -> dict[str, Any]:
    result = await hitnohit.ask_again(parts, call, 0)
    return {"ronde": result}


async def _uitvraag(parts: NodeParts, call: CaseCall, form: Form) -> dict[str, Any]:
    categories = form.many("categorieen")
    result = await uitvraag.start_uitvraag(parts, call, categories, 0)
    return {"uitvraag": result}


async def _tags(parts: NodeParts, call: CaseCall, form: Form) -> None:
    await bottlenecks.set_bottlenecks(parts, call, form.many("knelpunten"))


async def _close(parts: NodeParts, call: CaseCall, form: Form) -> dict[str, Any] | None:
    closed = await afschaling.close_case(parts, call, form.one("uitkomst"))
    return {"niet_bereikt": closed.undelivered} if closed.undelivered else None


async def _hand_over(parts: NodeParts, call: CaseCall, form: Form) -> dict[str, Any]:
    done = await overdracht.hand_over(
        parts,
        call,
        target=form.one("naar"),
        idempotency_key=form.one("sleutel"),
        reason_code=form.one("reden"),
    )
    return {"overdracht": done.remote_case_ref}


ACTIONS: dict[str, tuple[str, Action]] = {
    "triage-starten": ("StartTriage", _start_triage),
    "triage": ("Triage", _triage),
    "deelnemer": ("AddParticipant", _participant),
    "grondslag": ("RecordGround", _ground),
    "hitnohit": ("RunHitNoHit", _hitnohit),
    "uitvraag": ("StartUitvraag", _uitvraag),
    "knelpunten": ("SetBottlenecks", _tags),
    "afsluiten": ("CloseCase", _close),
    "overdragen": ("HandOverCase", _hand_over),
}
"""The form's path segment -> (the CaseService method it is, the flow call)."""


def add_routes(app: web.Application, parts: NodeParts, pages: Pages) -> None:
    """The procesregisseur's pages under ``/zaken``."""

    async def case_list(request: web.Request) -> web.Response:
        where = _filter(request.query)
        lines = await casebook.list_cases(parts, where)
        return pages.render(
            request,
            "zaken.html",
            zaken=lines,
            filters=dict(request.query),
            **_vocabulary(parts),
        )

    async def case_page(
        request: web.Request, result: dict[str, Any] | None = None, status: int = 200
    ) -> web.Response:
        view = await casebook.view_case(parts, request[IDENTITY_KEY], request.match_info["case"])
        return pages.render(
            request,
            "zaak.html",
            status,
            view=view,
            result=result or {},
            handover_key=_idempotency_key(),
            **_vocabulary(parts),
        )

    async def act(request: web.Request) -> web.StreamResponse:
        case_id = request.match_info["case"]
        action = ACTIONS.get(request.match_info["action"])
        if action is None:
            raise web.HTTPNotFound(reason="Onbekende actie")
        method, run = action
        form = Form(await request.post())
        async with parts.case_locks.hold(case_id):
            call = CaseCall(
                caller=request[IDENTITY_KEY],
                method=method,
                purpose=await casebook.case_activity(parts, case_id),
                node_id=parts.node_id,
                case_id=case_id,
            )
            result = await run(parts, call, form)
        if result is None:
            raise web.HTTPSeeOther(f"/zaken/{case_id}")
        return await case_page(request, result)

    async def show(request: web.Request) -> web.Response:
        return await case_page(request)

    app.router.add_get("/zaken", case_list)
    app.router.add_get("/zaken/{case:[0-9a-f]{32}}", show)
    app.router.add_post("/zaken/{case:[0-9a-f]{32}}/{action}", act)
