"""The fact vault's rows: facts the regie may have of a case in casusoverleg, sealed at rest.

The vault holds only what the procesregisseur may receive: the uitvraag
minimises every answer for the regie (:mod:`gateway.flows.uitvraag`) before
it calls :meth:`FactStore.store_fact`, never a provider's raw answer. Each
row keeps the days its releasing rule lets the regie keep it after the case
closes (:mod:`gateway.cases.retention` purges it then).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from google.protobuf.message import DecodeError
from schakel.v1 import common_pb2

from gateway.cases.base import CaseStoreBase
from gateway.cases.errors import CaseInputError, CaseNotFoundError, FactIntegrityError
from gateway.cases.model import Participant, check_case_id, check_code
from gateway.cases.phases import Action
from gateway.cases.retention import check_retention_days
from gateway.cases.tables import case_facts, cases

MAX_FACT_BYTES = 64 * 1024
"""Upper bound on one serialized fact; a minimised fact is a few hundred bytes."""


@dataclass(frozen=True)
class StoredFact:
    """A fact from the vault, decrypted."""

    id: str
    category: str
    provider_node_id: str
    provider_org_id: str
    fact: common_pb2.Fact
    received_at: datetime


class FactStore(CaseStoreBase):
    """The registry's facts: sealed by the vault on the way in, checked on the way out."""

    def store_fact(
        self,
        case_id: str,
        fact: common_pb2.Fact,
        *,
        provider: Participant,
        retention_days: int | None = None,
    ) -> str:
        """Seal and store a fact for a case in casusoverleg; returns the fact id.

        ``fact`` is already minimised for the regie. ``retention_days`` is how
        long after the case closes it may be kept (None: the case's retention).
        """
        check_case_id(case_id)
        if retention_days is not None:
            check_retention_days(retention_days)
        if not isinstance(fact, common_pb2.Fact):
            raise CaseInputError("fact must be a schakel.v1.Fact message")
        check_code(fact.category, "fact category")
        provider.check()
        plaintext = fact.SerializeToString(deterministic=True)
        if len(plaintext) > MAX_FACT_BYTES:
            raise CaseInputError(f"fact is larger than {MAX_FACT_BYTES} bytes serialized")
        fact_id = uuid.uuid4().hex
        sealed = self._vault.seal(case_id, fact.category, fact_id, plaintext)
        with self._engine.begin() as conn:
            self._guard(conn, case_id, Action.STORE_FACT)
            conn.execute(
                sa.insert(case_facts).values(
                    id=fact_id,
                    case_id=case_id,
                    category=fact.category,
                    provider_node_id=provider.node_id,
                    provider_org_id=provider.org_id,
                    key_id=self._vault.key_id,
                    sealed=sealed,
                    received_at=self._now(),
                    retention_days=retention_days,
                )
            )
        return fact_id

    def facts(self, case_id: str, category: str | None = None) -> list[StoredFact]:
        """The decrypted facts of a case, oldest first, optionally of one category.

        Raises FactIntegrityError when a row fails authentication.
        """
        check_case_id(case_id)
        query = sa.select(case_facts).where(case_facts.c.case_id == case_id)
        if category is not None:
            query = query.where(case_facts.c.category == check_code(category, "category"))
        with self._engine.connect() as conn:
            if conn.execute(sa.select(cases.c.id).where(cases.c.id == case_id)).first() is None:
                raise CaseNotFoundError(f"no case {case_id} at this node")
            rows = conn.execute(query.order_by(case_facts.c.received_at, case_facts.c.id)).all()
        out = []
        for row in rows:
            plaintext = self._vault.open(row.case_id, row.category, row.id, row.sealed, row.key_id)
            fact = common_pb2.Fact()
            try:
                fact.ParseFromString(plaintext)
            except DecodeError:
                raise FactIntegrityError(
                    f"fact {row.id} of case {case_id} decrypted but is not a schakel.v1.Fact"
                ) from None
            if fact.category != row.category:
                raise FactIntegrityError(
                    f"fact {row.id} of case {case_id} carries another category than its row"
                )
            out.append(
                StoredFact(
                    row.id,
                    row.category,
                    row.provider_node_id,
                    row.provider_org_id,
                    fact,
                    row.received_at,
                )
            )
        return out
