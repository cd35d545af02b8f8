"""What a transcryptor does with a call: check, convert its link, audit, answer.

A Transcrypt call is checked in this order, each refusal audited in the
transcryptor's own log before the caller hears of it: the batch's shape
(count, domain ids), this transcryptor's policy for every (from, to) pair,
the caller's rate. Then every item is converted with this transcryptor's
factors and rerandomised, split over the worker threads (libsodium releases
the GIL), and the call's record is durably in the log before the answer
leaves. One record per call: the transcryptor never learns whom a
ciphertext is about, so its records carry no subject, only who asked for
which pairs, how many, for which activity, and which rules allowed it.

In a transcryptor's records ``categories_asked`` lists each pair with its
count as ``<from>><to>:<count>`` (``Y`` for the federation key), and
``decision.rule_ids`` the allow-list rules that decided.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from schakel.v1 import audit_pb2, common_pb2, transcryptor_pb2

from certs.identity import Identity
from gateway.audit.store import AuditLog
from gateway.errors import (
    DeniedError,
    ExhaustedError,
    InvalidInputError,
    NotConfiguredError,
    quote,
)
from gateway.flows.crossing import UNKNOWN, Crossing, record
from gateway.transcryptor.allowlist import GLOBAL_KEY, AllowListFile, own_domain
from gateway.transcryptor.ratelimit import RateLimiter
from policy.pseudonyms import Ciphertext, PseudonymError, Transcryptor, check_domain
from policy.pseudonyms.shares import TranscryptorShare

SERVICE = "schakel.v1.TranscryptorService"
TRANSCRYPT = f"{SERVICE}/Transcrypt"
ENROL = f"{SERVICE}/Enrol"
ENROL_ACTIVITY = "schakel.enrolment"
"""The processing activity under which enrolments are logged."""

MAX_PAIRS_RECORDED = 256
"""Distinct (from, to) pairs one audit record names."""
RATE_LIMITED = "rate-limit"
"""In ``decision.rule_ids`` of a call refused because the caller's rate was used up."""

_DOMAIN = re.compile(r"^(Y|[a-z0-9][a-z0-9._-]{0,62})$")


def _safe(domain: str) -> str:
    return domain if _DOMAIN.match(domain) else UNKNOWN


@dataclass
class Conversion(Crossing):
    """A transcryptor's crossing: the pairs it was asked for, with their counts."""

    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record(self, *, ok: bool) -> audit_pb2.AuditRecord:
        """The crossing's record with the pairs in ``categories_asked``.

        At most :data:`MAX_PAIRS_RECORDED` pairs are named; a last entry
        ``more>pairs:<n>`` counts the rest, so no call can bloat the log.
        """
        out = super().record(ok=ok)
        pairs = sorted(self.pairs.items())
        out.categories_asked.extend(
            f"{_safe(a)}>{_safe(b)}:{n}" for (a, b), n in pairs[:MAX_PAIRS_RECORDED]
        )
        if len(pairs) > MAX_PAIRS_RECORDED:
            out.categories_asked.append(f"more>pairs:{len(pairs) - MAX_PAIRS_RECORDED}")
        return out


@dataclass
class TranscryptorParts:
    """Everything a running transcryptor works with, loaded from its config."""

    id: str
    share: TranscryptorShare
    global_public_key: bytes
    allow: AllowListFile
    limiter: RateLimiter
    audit: AuditLog
    pool: ThreadPoolExecutor
    workers: int
    max_items: int
    link: Transcryptor = field(init=False)

    def __post_init__(self) -> None:
        self.link = self.share.step()

    @property
    def uri(self) -> str:
        """This transcryptor's identity."""
        return f"schakel://transcryptor/{self.id}"


Chunk = list[tuple[int, common_pb2.EncryptedPseudonym, str]]


def _convert(
    link: Transcryptor, chunk: Chunk, from_domain: str | None
) -> list[common_pb2.EncryptedPseudonym]:
    """One worker's share of a batch; InvalidInputError names the first bad item."""
    out = []
    for index, subject, to_domain in chunk:
        try:
            ct = Ciphertext.for_conversion(subject)
            out.append(link.transcrypt(ct, to_domain, from_domain).to_proto())
        except PseudonymError as exc:
            raise InvalidInputError(f"items[{index}].subject: {exc}") from None
    return out


def _usable(domain: str) -> bool:
    try:
        check_domain(domain)
    except PseudonymError:
        return False
    return True


def _domain(value: str, where: str) -> str:
    try:
        return check_domain(value)
    except PseudonymError as exc:
        raise InvalidInputError(f"{where}: {exc}") from None


async def transcrypt(
    parts: TranscryptorParts, caller: Identity, request: transcryptor_pb2.TranscryptRequest
) -> transcryptor_pb2.TranscryptResponse:
    """This transcryptor's link for the batch in ``request``, audited before it answers."""
    activity = request.purpose.processing_activity_id
    source = request.from_domain or GLOBAL_KEY
    crossing = Conversion(name=TRANSCRYPT, caller=caller, activity=activity, provider=parts.uri)
    count = len(request.items)
    if not 1 <= count <= parts.max_items:
        raise InvalidInputError(f"items: between 1 and {parts.max_items} per call, not {count}")
    crossing.pairs = Counter((source, item.to_domain) for item in request.items)
    from_domain = _domain(request.from_domain, "from_domain") if request.from_domain else None
    # Each distinct domain is checked once: a batch names few, and the first bad item is named.
    bad = {to for _, to in crossing.pairs if not _usable(to)}
    for i, item in enumerate(request.items):
        if item.to_domain in bad:
            _domain(item.to_domain, f"items[{i}].to_domain")
        if not item.HasField("subject"):
            raise InvalidInputError(f"items[{i}].subject is required")
    rules = parts.allow.current().decide(caller, activity, crossing.pairs)
    crossing.decision = common_pb2.DecisionSummary(
        outcome=common_pb2.DECISION_OUTCOME_DENY, rule_ids=rules
    )
    try:
        parts.limiter.take(caller.uri, count)
    except ExhaustedError:
        crossing.decision.rule_ids.append(RATE_LIMITED)
        raise
    items = [(i, item.subject, item.to_domain) for i, item in enumerate(request.items)]
    size = -(-count // parts.workers)
    loop = asyncio.get_running_loop()
    chunks = await asyncio.gather(
        *(
            loop.run_in_executor(
                parts.pool, _convert, parts.link, items[start : start + size], from_domain
            )
            for start in range(0, count, size)
        )
    )
    crossing.decision.outcome = common_pb2.DECISION_OUTCOME_ALLOW
    await record(parts.audit, crossing)
    return transcryptor_pb2.TranscryptResponse(subjects=[s for chunk in chunks for s in chunk])


async def enrol(parts: TranscryptorParts, caller: Identity) -> transcryptor_pb2.EnrolResponse:
    """The caller's domain factor ``k_{d,i} * y_i``, audited before it answers."""
    domain = own_domain(caller)
    crossing = Conversion(name=ENROL, caller=caller, activity=ENROL_ACTIVITY, provider=parts.uri)
    crossing.pairs = Counter({(GLOBAL_KEY, domain or UNKNOWN): 1})
    if not parts.allow.current().may_enrol(caller):
        raise DeniedError(
            f"this transcryptor's policy does not enrol {caller.uri} (only domains: "
            "nodes and partner organisations the policy names)"
        )
    try:
        factor = parts.share.domain_factor(domain, parts.global_public_key)
    except PseudonymError as exc:
        raise NotConfiguredError(f"enrolment of {quote(domain)}: {exc}") from None
    crossing.decision = common_pb2.DecisionSummary(outcome=common_pb2.DECISION_OUTCOME_ALLOW)
    await record(parts.audit, crossing)
    return transcryptor_pb2.EnrolResponse(
        transcryptor_id=parts.id,
        domain=domain,
        factor=factor.factor,
        global_public_key=parts.global_public_key,
    )
