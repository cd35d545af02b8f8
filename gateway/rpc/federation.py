"""FederationService: what a node serves to other nodes and to the national collector.

Served here: federated hit/no-hit (HitNoHit), facts this node holds in its
own case (RequestFacts), uitvraag of and delivery to this node's partners
that take part in a peer's case (AskParticipant, DeliverFacts; the checks
are in :mod:`gateway.flows.participants`), case transfer
(TransferCase), checkpoint witnessing (AddCheckpoint) and aggregate signals
(GetSignals). The interceptor admits
only node certificates (the collector for GetSignals); when the node has a
signed directory, HitNoHit, RequestFacts and TransferCase also require the
caller to be listed in it. Subjects arrive transcrypted to this node's own
domain. Every answer waits for its durable audit record.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import sqlalchemy as sa
from schakel.v1 import common_pb2, federation_pb2, federation_pb2_grpc, partner_pb2

from gateway.audit.witness import add_checkpoint_rpc
from gateway.cases.errors import CaseError
from gateway.cases.model import Case, Referral
from gateway.cases.tables import cases
from gateway.federation.directory import NODE_URI_PREFIX
from gateway.flows import participants
from gateway.flows.crossing import Crossing, append, commit, refuse
from gateway.flows.delivery import DELIVERY_TTL_SECONDS
from gateway.flows.participants import RefusedError as _RefusedError
from gateway.flows.signalering import SignalsRequestError, get_signals, signals_audit
from gateway.flows.uitvraag import provider_grounds
from gateway.logging import get_logger
from gateway.rpc.auth import current_identity
from gateway.rpc.status import status_of
from gateway.tracing import current_trace_proto
from policy.evaluator import Decision, Request
from policy.minimise import FactRefusedError, minimise_fact
from policy.model import PolicyError
from policy.pseudonyms import PseudonymError
from policy.vocabulary import OPEN_PHASES, ORG_TYPES, phase_name

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from gateway.cases import CaseRegistry
    from gateway.parts import NodeParts
    from policy.store import PolicyStore

Context = grpc.aio.ServicerContext[Any, Any]

log = get_logger("federation_service")

SERVICE = "schakel.v1.FederationService"
BEKEND = "bekend"
ZVH = "zvh"
NOT_HELD = "not-held"
"""Withheld reason of a category this node holds no fact of for the subject."""


class FederationService(federation_pb2_grpc.FederationServiceServicer):
    """The node's federation endpoint."""

    def __init__(self, parts: NodeParts) -> None:
        self.parts = parts

    async def AddCheckpoint(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.AddCheckpointRequest, context: Context
    ) -> federation_pb2.AddCheckpointResponse:
        """Witness a peer's checkpoint: consistency from what we saw, CAS, cosign."""
        return await add_checkpoint_rpc(
            self.parts.witness, request, context, current_identity().node_id
        )

    def _activity_uri(self, activity_id: str) -> str:
        """The register URI of an activity from the policy in force ("" without one)."""
        if self.parts.policy is None:
            return ""
        activity = self.parts.policy.evaluator.policy.bundle.activities.get(activity_id)
        return activity.uri if activity is not None else ""

    async def GetSignals(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.SignalsRequest, context: Context
    ) -> federation_pb2.SignalsResponse:
        """Suppressed aggregate counts for a period; audited under the signalling activity."""
        refused = signals_audit(answered=False)
        crossing = Crossing(
            name="schakel.v1.FederationService/GetSignals",
            caller=current_identity(),
            activity=refused.activity_id,
            activity_uri=self._activity_uri(refused.activity_id),
            categories=refused.categories,
            decision=refused.decision(),
        )
        try:
            response = await get_signals(request, self.parts.engine, self.parts.node_id)
        except SignalsRequestError as exc:
            await refuse(self.parts.audit, crossing, context, exc.code, str(exc))
        crossing.decision = signals_audit(answered=True).decision()
        await commit(self.parts.audit, crossing, context)
        return response

    # -- case flow between nodes -------------------------------------------

    def _crossing(
        self,
        method: str,
        purpose: common_pb2.Purpose,
        case_ref: common_pb2.CaseRef,
        phase: int,
        categories: tuple[str, ...],
    ) -> Crossing:
        activity = purpose.processing_activity_id
        return Crossing(
            name=f"{SERVICE}/{method}",
            caller=current_identity(),
            activity=activity,
            activity_uri=self._activity_uri(activity),
            phase=phase,
            case_ref=case_ref,
            categories=categories,
            provider=NODE_URI_PREFIX + self.parts.node_id,
        )

    def _check_common(self, crossing: Crossing, case_ref: common_pb2.CaseRef) -> None:
        """Checks every case-flow call shares; raise _RefusedError naming the problem."""
        caller = crossing.caller
        peers = self.parts.peers
        if peers is not None and caller.node_id not in {p.node_id for p in peers.peers()}:
            raise _RefusedError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"node {caller.node_id!r} is not in this node's federation directory",
            )
        if not crossing.activity:
            raise _RefusedError(
                grpc.StatusCode.INVALID_ARGUMENT, "purpose.processing_activity_id is required"
            )
        if case_ref.node_id != caller.node_id or not case_ref.case_id:
            raise _RefusedError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "case_ref must name a case of the calling node (node_id and case_id)",
            )

    def _subject(self, crossing: Crossing, subject: common_pb2.EncryptedPseudonym) -> str:
        """The subject's node-domain pseudonym; sets it on the crossing."""
        subjects = self.parts.subjects
        if subjects is None:
            raise _RefusedError(
                grpc.StatusCode.FAILED_PRECONDITION, "this node has no pseudonym keys configured"
            )
        try:
            ciphertext = subjects.parse(subject)
            # The sender transcrypted to this node's domain, so "from" is our own domain.
            pseudonym = subjects.node_pseudonym(ciphertext, from_domain=self.parts.node_id)
        except PseudonymError as exc:
            raise _RefusedError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"subject must be encrypted for this node's domain {self.parts.node_id!r}: {exc}",
            ) from exc
        crossing.subject = pseudonym
        return pseudonym

    def _policy(self) -> PolicyStore:
        if self.parts.policy is None:
            raise _RefusedError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "this node has no policy bundle, so nothing may cross",
            )
        return self.parts.policy

    def _decide(self, request: Request) -> Decision:
        try:
            return self._policy().decide(request)
        except PolicyError as exc:
            raise _RefusedError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc

    async def _refuse(self, crossing: Crossing, context: Context, exc: _RefusedError) -> NoReturn:
        await refuse(self.parts.audit, crossing, context, exc.code, str(exc))
        raise AssertionError("context.abort returned")  # pragma: no cover

    async def HitNoHit(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.FederatedHitRequest, context: Context
    ) -> federation_pb2.FederatedHitResponse:
        """Is the subject in an active case here? A hit gives the contact handle, nothing else."""
        crossing = self._crossing(
            "HitNoHit", request.purpose, request.case_ref, request.phase, (BEKEND,)
        )
        try:
            self._check_common(crossing, request.case_ref)
            contact = self.parts.config.cases.contact_handle
            if not contact:
                raise _RefusedError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "this node has no [cases] contact_handle to give on a hit",
                )
            pseudonym = self._subject(crossing, request.subject)
            decision = self._decide(
                Request(
                    activity=crossing.activity,
                    phase=phase_name(request.phase),
                    provider=ZVH,
                    recipient=ZVH,
                    categories=(BEKEND,),
                ),
            )
            crossing.decision = decision.to_proto()
            if BEKEND not in decision.released:
                reason = dict(decision.withheld).get(BEKEND, "")
                raise _RefusedError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"policy does not allow hit/no-hit for this purpose and phase ({reason})",
                )
            answer = await asyncio.to_thread(
                self.parts.registry.active_hit, pseudonym, contact_handle=contact
            )
        except _RefusedError as exc:
            await self._refuse(crossing, context, exc)
        await commit(self.parts.audit, crossing, context)
        return federation_pb2.FederatedHitResponse(
            hit=answer.hit, contact_handle=answer.contact_handle, trace=current_trace_proto()
        )

    async def RequestFacts(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.FederatedFactsRequest, context: Context
    ) -> federation_pb2.FederatedFactsResponse:
        """Facts this node holds on the subject's active case, as far as its policy allows.

        Each stored fact is judged with its original provider's organisation
        type as provider and ``recipient_org_type`` as recipient, under the
        grounds recorded for that provider, and minimised before it leaves.
        """
        categories = tuple(request.categories)
        crossing = self._crossing(
            "RequestFacts", request.purpose, request.case_ref, request.phase, categories
        )
        try:
            self._check_common(crossing, request.case_ref)
            participants.check_categories(categories)
            if request.recipient_org_type not in ORG_TYPES:
                raise _RefusedError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"recipient_org_type must be one of {', '.join(sorted(ORG_TYPES))}",
                )
            pseudonym = self._subject(crossing, request.subject)
            policy = self._policy()
            case = await asyncio.to_thread(
                _active_case, self.parts.engine, self.parts.registry, pseudonym
            )
            facts, summary = await asyncio.to_thread(
                self._released_facts, policy, case, request, categories
            )
        except _RefusedError as exc:
            await self._refuse(crossing, context, exc)
        except CaseError as exc:
            await self._refuse(crossing, context, _RefusedError(status_of(exc), str(exc)))
        crossing.decision = summary
        await commit(self.parts.audit, crossing, context)
        return federation_pb2.FederatedFactsResponse(
            facts=facts, decision=summary, trace=current_trace_proto()
        )

    def _released_facts(
        self,
        policy: PolicyStore,
        case: Case | None,
        request: federation_pb2.FederatedFactsRequest,
        categories: tuple[str, ...],
    ) -> tuple[list[common_pb2.Fact], common_pb2.DecisionSummary]:
        released: list[common_pb2.Fact] = []
        reasons: dict[str, str] = {}
        rule_ids: list[str] = []
        bases: list[str] = []
        if case is not None:
            org_types = {(p.node_id, p.org_id): p.org_type for p in case.participants}
            for stored in self.parts.registry.facts(case.id):
                if stored.category not in categories:
                    continue
                provider = org_types.get((stored.provider_node_id, stored.provider_org_id))
                if provider is None:
                    reasons.setdefault(stored.category, "provider-not-participant")
                    continue
                grounds = provider_grounds(case, stored.provider_org_id)
                decision = policy.decide(
                    Request(
                        activity=request.purpose.processing_activity_id,
                        phase=phase_name(request.phase),
                        provider=provider,
                        recipient=request.recipient_org_type,
                        categories=(stored.category,),
                        case_accepted=case.accepted_at is not None,
                        grounds=grounds,
                    )
                )
                if stored.category in decision.released:
                    try:
                        released.append(minimise_fact(stored.fact, decision))
                    except FactRefusedError:
                        # A stored fact that does not fit the plan never leaves whole.
                        reasons.setdefault(stored.category, "malformed")
                        continue
                    rule_ids += [r for r in decision.rule_ids if r not in rule_ids]
                    bases += [b for b in decision.legal_basis if b not in bases]
                else:
                    reasons.setdefault(stored.category, decision.withheld[0][1])
        out_categories = {f.category for f in released}
        withheld = [
            common_pb2.WithheldCategory(category=c, reason=reasons.get(c, NOT_HELD))
            for c in categories
            if c not in out_categories
        ]
        if not withheld:
            outcome = common_pb2.DECISION_OUTCOME_ALLOW
        elif out_categories:
            outcome = common_pb2.DECISION_OUTCOME_PARTIAL
        else:
            outcome = common_pb2.DECISION_OUTCOME_DENY
        summary = common_pb2.DecisionSummary(
            outcome=outcome,
            released=[c for c in categories if c in out_categories],
            withheld=withheld,
            bundle_hash=policy.bundle_hash,
            rule_ids=rule_ids,
            legal_basis=common_pb2.LegalBasis(code=",".join(bases)),
        )
        return released, summary

    async def AskParticipant(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.AskParticipantRequest, context: Context
    ) -> federation_pb2.AskParticipantResponse:
        """Put a peer case's uitvraag to one of this node's partners; release under our policy.

        The question is audited before the partner sees it, and each release
        (one per recipient type) before the answer leaves.
        """
        categories = tuple(request.categories)
        crossing = self._crossing(
            "AskParticipant",
            request.purpose,
            request.case_ref,
            common_pb2.PHASE_CASUSOVERLEG,
            categories,
        )
        crossing.provider = participants.participant_uri(request.provider)
        try:
            self._check_common(crossing, request.case_ref)
            participants.check_categories(categories)
            types = tuple(request.recipient_org_types)
            participants.check_recipient_types(types)
            provider = participants.check_partner(self.parts.config, request.provider, "provider")
            recorded = participants.grounds(request.grounds)
            deadline = participants.deadline_seconds(request.deadline_ms)
            pseudonym = self._subject(crossing, request.subject)
            policy = self._policy()
            decisions = {
                t: participants.decide(
                    policy,
                    activity=crossing.activity,
                    phase="casusoverleg",
                    provider=provider.org_type,
                    recipient=t,
                    categories=categories,
                    recorded=recorded,
                )
                for t in types
            }
        except _RefusedError as exc:
            await self._refuse(crossing, context, exc)
        asked = tuple(c for c in categories if any(c in d.released for d in decisions.values()))
        facts: list[common_pb2.Fact] = []
        answered = False
        if asked:
            question = dataclasses.replace(crossing, categories=asked)
            await commit(self.parts.audit, question, context)
            answer = await self._ask(request, provider.org_id, pseudonym, asked, deadline)
            if answer is not None:
                answered, facts = True, list(answer.facts)
        response = federation_pb2.AskParticipantResponse(
            answered=answered, trace=current_trace_proto()
        )
        for org_type, decision in decisions.items():
            released = participants.release(facts, decision)
            if released.malformed:
                log.warning(
                    "facts_malformed", method="AskParticipant", categories=released.malformed
                )
            record = dataclasses.replace(
                crossing,
                categories=tuple(sorted({f.category for f in released.facts})),
                decision=decision.to_proto(),
            )
            await commit(self.parts.audit, record, context)
            response.releases.add(
                recipient_org_type=org_type, facts=released.facts, decision=decision.to_proto()
            )
        return response

    async def _ask(
        self,
        request: federation_pb2.AskParticipantRequest,
        org_id: str,
        pseudonym: str,
        asked: tuple[str, ...],
        deadline: float,
    ) -> partner_pb2.AnswerFactsRequest | None:
        """A FACT_QUERY to the partner, with the subject in its domain; its answer or None."""
        subjects = self.parts.subjects
        assert subjects is not None  # _subject checked it
        subject = await asyncio.to_thread(subjects.for_domain_from_pseudonym, pseudonym, org_id)
        task = partner_pb2.PartnerTask(
            kind=partner_pb2.TASK_KIND_FACT_QUERY,
            purpose=request.purpose,
            case_ref=request.case_ref,
            phase=common_pb2.PHASE_CASUSOVERLEG,
            subject=subject,
            categories=list(asked),
            trace=current_trace_proto(),
        )
        pending = await self.parts.tasks.send(org_id, task, subject=pseudonym, timeout=deadline)
        answer = await self.parts.tasks.wait(pending)
        return answer if isinstance(answer, partner_pb2.AnswerFactsRequest) else None

    async def DeliverFacts(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.DeliverFactsRequest, context: Context
    ) -> federation_pb2.DeliverFactsResponse:
        """Queue facts released in a peer's case for one of this node's partners.

        The provider's node minimised them; this node decides by category
        under its own policy, audits, and only then queues the delivery.
        """
        categories = tuple(dict.fromkeys(f.category for f in request.facts))
        crossing = self._crossing(
            "DeliverFacts", request.purpose, request.case_ref, request.phase, categories
        )
        crossing.provider = participants.participant_uri(request.provider)
        try:
            self._check_common(crossing, request.case_ref)
            if request.phase not in (common_pb2.PHASE_CASUSOVERLEG, common_pb2.PHASE_AFSCHALING):
                raise _RefusedError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "phase must be PHASE_CASUSOVERLEG or PHASE_AFSCHALING",
                )
            participants.check_categories(categories)
            participants.check_provider(request.provider)
            recipient = participants.check_partner(
                self.parts.config, request.recipient, "recipient"
            )
            recorded = participants.grounds(request.grounds)
            pseudonym = self._subject(crossing, request.subject)
            decision = participants.decide(
                self._policy(),
                activity=crossing.activity,
                phase=phase_name(request.phase),
                provider=request.provider.org_type,
                recipient=recipient.org_type,
                categories=categories,
                recorded=recorded,
            )
        except _RefusedError as exc:
            await self._refuse(crossing, context, exc)
        crossing.decision = decision.to_proto()
        await commit(self.parts.audit, crossing, context)
        released = set(decision.released)
        delivered = [f for f in request.facts if f.category in released]
        if delivered:
            subjects = self.parts.subjects
            assert subjects is not None  # _subject checked it
            subject = await asyncio.to_thread(
                subjects.for_domain_from_pseudonym, pseudonym, recipient.org_id
            )
            task = partner_pb2.PartnerTask(
                kind=partner_pb2.TASK_KIND_FACT_DELIVERY,
                purpose=request.purpose,
                case_ref=request.case_ref,
                phase=request.phase,
                subject=subject,
                facts=delivered,
                decision=decision.to_proto(),
                trace=current_trace_proto(),
            )
            await self.parts.tasks.send(
                recipient.org_id, task, subject=pseudonym, timeout=DELIVERY_TTL_SECONDS
            )
        return federation_pb2.DeliverFactsResponse(
            delivered=[c for c in categories if c in released],
            decision=decision.to_proto(),
            trace=current_trace_proto(),
        )

    async def TransferCase(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.TransferCaseRequest, context: Context
    ) -> federation_pb2.TransferCaseResponse:
        """Open the handed-over case here, in aanmelding; a retry returns the same case.

        The receiving ZVH runs its own triage, so the case starts at
        aanmelding whatever phase it had at the sending node. The pair
        (sending node, idempotency key) identifies the transfer.
        """
        crossing = self._crossing(
            "TransferCase", request.purpose, request.case_ref, request.phase, ("aanmelding",)
        )
        registry = self.parts.registry
        try:
            self._check_common(crossing, request.case_ref)
            pseudonym = self._subject(crossing, request.subject)
            tags = tuple(request.bottlenecks)
            if self.parts.policy is not None:
                known = set(self.parts.policy.evaluator.policy.bundle.bottlenecks)
                unknown = sorted(set(tags) - known)
                if unknown:
                    raise _RefusedError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"bottleneck tag(s) {', '.join(unknown)} are not in the policy bundle",
                    )
            referral = Referral(
                referrer_org_id=crossing.caller.node_id,
                referrer_org_type=ZVH,
                idempotency_key=request.idempotency_key,
                subject=pseudonym,
                activity=crossing.activity,
                theme=request.theme,
                external_ref=f"{request.case_ref.node_id}/{request.case_ref.case_id}",
            )
            result = await asyncio.to_thread(registry.refer, referral)
        except _RefusedError as exc:
            await self._refuse(crossing, context, exc)
        except CaseError as exc:
            await self._refuse(crossing, context, _RefusedError(status_of(exc), str(exc)))
        case_id = result.case.id
        if result.created and tags:
            await asyncio.to_thread(registry.set_bottlenecks, case_id, tags)
        crossing.case_ref = common_pb2.CaseRef(node_id=self.parts.node_id, case_id=case_id)
        if await append(self.parts.audit, crossing) is None:
            if result.created:
                await asyncio.to_thread(registry.withdraw, case_id)
            await commit(self.parts.audit, crossing, context)
        return federation_pb2.TransferCaseResponse(
            case_ref=common_pb2.CaseRef(node_id=self.parts.node_id, case_id=case_id),
            created=result.created,
        )


def _active_case(engine: Engine, registry: CaseRegistry, pseudonym: str) -> Case | None:
    """The subject's active case at this node, or None (the newest if, oddly, several)."""
    query = (
        sa.select(cases.c.id)
        .where(
            cases.c.subject_pseudonym == pseudonym,
            cases.c.phase.in_([p.value for p in OPEN_PHASES]),
        )
        .order_by(cases.c.opened_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        case_id = conn.execute(query).scalar_one_or_none()
    return None if case_id is None else registry.get(case_id)
