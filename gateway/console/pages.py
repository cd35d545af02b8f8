"""Rendering: the jinja2 templates, Dutch labels, and times in Europe/Amsterdam.

Every template extends ``base.html``; autoescaping is on for all of them,
so a value from a record or a form can never become markup.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp
from schakel.v1 import common_pb2

from certs.identity import Identity
from gateway import labels

AMSTERDAM = ZoneInfo("Europe/Amsterdam")

IDENTITY_KEY = web.RequestKey("identity", Identity)
"""The verified officer of a request, set by :mod:`gateway.console.access`."""
CSRF_KEY = web.RequestKey("csrf", str)
"""The form token of a request's browser."""

OUTCOMES = {
    common_pb2.DECISION_OUTCOME_ALLOW: "toegestaan",
    common_pb2.DECISION_OUTCOME_DENY: "geweigerd",
    common_pb2.DECISION_OUTCOME_PARTIAL: "deels",
}
"""Decision outcomes in Dutch; an unspecified one is shown as a dash."""


def local_time(moment: datetime | Timestamp | int | None, with_seconds: bool = False) -> str:
    """``moment`` (aware datetime, protobuf Timestamp or UNIX microseconds) in Amsterdam time."""
    if moment is None:
        return "—"
    if isinstance(moment, Timestamp):
        moment = moment.ToDatetime(tzinfo=UTC)
    elif isinstance(moment, int):
        moment = datetime.fromtimestamp(moment / 1e6, UTC)
    shape = "%d-%m-%Y %H:%M:%S" if with_seconds else "%d-%m-%Y %H:%M"
    return moment.astimezone(AMSTERDAM).strftime(shape)


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``moment`` was, in Dutch (``3 dagen``, ``5 uur``, ``12 min``)."""
    if moment is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if seconds >= 2 * 86400:
        return f"{int(seconds // 86400)} dagen"
    if seconds >= 3600:
        return f"{int(seconds // 3600)} uur"
    return f"{max(int(seconds // 60), 0)} min"


def phase_name(value: str | int) -> str:
    """A phase in Dutch, from its registry value or its ``schakel.v1.Phase`` number."""
    if value in ("", common_pb2.PHASE_UNSPECIFIED):
        return "—"
    return labels.phase(value).capitalize()


def method(name: str) -> str:
    """The method part of an operation name (``schakel.v1.CaseService/Triage`` -> ``Triage``)."""
    return name.rpartition("/")[2] or name


def reason(code: str) -> str:
    """A withheld reason in Dutch with its code, e.g. ``... zonder grondslag (art9-no-ground)``."""
    return f"{labels.REASONS[code]} ({code})" if code in labels.REASONS else code


def field_value(value: common_pb2.FactValue) -> str:
    """A fact field as text: a date as dd-mm-jjjj (coarsened mm-jjjj or jjjj), a flag ja/nee."""
    kind = value.WhichOneof("kind")
    if kind == "date":
        d = value.date
        parts = [f"{d.day:02d}"] if d.day else []
        parts += [f"{d.month:02d}"] if d.month else []
        return "-".join([*parts, f"{d.year:04d}"])
    if kind == "flag":
        return "ja" if value.flag else "nee"
    return "—" if kind is None else str(getattr(value, kind))


class Pages:
    """The console's template environment."""

    def __init__(self) -> None:
        templates = files("gateway.console").joinpath("templates")
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters.update(
            tijd=local_time,
            leeftijd=age,
            fase=phase_name,
            uitkomst=lambda v: OUTCOMES.get(v, "—"),
            operatie=labels.operation,
            methode=method,
            partij=labels.party,
            waarde=field_value,
            reden=reason,
            hexkort=lambda b: bytes(b).hex()[:16] if b else "",
            hex=lambda b: bytes(b).hex(),
        )

    def render(
        self, request: web.Request, template: str, status: int = 200, **values: Any
    ) -> web.Response:
        """``template`` rendered with ``values``, the officer and the form token."""
        body = self.env.get_template(template).render(
            officer=request.get(IDENTITY_KEY),
            csrf=request.get(CSRF_KEY, ""),
            now=local_time(datetime.now(UTC)),
            **values,
        )
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    def error(self, request: web.Request, status: int, title: str, message: str) -> web.Response:
        """A page saying why the request was refused."""
        return self.render(request, "fout.html", status, title=title, message=message, code=status)
