"""``make run``: a dev federation of two nodes on SQLite, with a generated dev PKI.

Everything lives under ``.state/dev`` (git-ignored) and is reused on the
next run: a CA, two nodes with a node.toml each, partner, officer and
collector certificates, the pseudonym keys (federation key, transcryptor
secrets, a domain key per organisation), a signed copy of the baseline
policy bundle, and each node's audit keys; the two nodes witness each
other's checkpoints. Both nodes start in this process; a list of
checks then shows over mTLS that they serve and refuse as they should.
``--once`` exits after the checks (0 only if all passed); otherwise the
nodes serve until Ctrl-C. Later issues append their steps to :data:`CHECKS`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import signal
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schakel.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    case_pb2,
    case_pb2_grpc,
    common_pb2,
    federation_pb2,
    federation_pb2_grpc,
    partner_pb2,
    partner_pb2_grpc,
)

from adapters.sdk.client import PartnerClient
from adapters.sdk.errors import PartnerRpcError
from adapters.sdk.subjects import decrypt_subject, encrypt_subject
from certs.ca_store import CaStore, load_certificate, node_dns_name
from certs.identity import (
    Identity,
    IdentityError,
    PeerKind,
    identity_from_certificate,
    make_identity,
)
from gateway.app import Node, open_node
from gateway.audit import merkle
from gateway.config import ConfigError, load_config
from gateway.dev import partners as devpartners
from gateway.dev.keys import DevKeys
from gateway.dev.partners import SimPartner
from gateway.logging import configure_logging
from gateway.rpc.server import StartupError
from gateway.tasks.broker import TaskBroker
from gateway.tls import channel_credentials, node_channel

ROTTERDAM = "zvh-rotterdam-rijnmond"
HAAGLANDEN = "zvh-haaglanden"
DEV_PORTS = {ROTTERDAM: 7443, HAAGLANDEN: 7444}

# Made-up OINs: the 00000099 prefix is not handed out by Logius.
_OIN = "000000990000000{:05d}"

PARTNERS = {
    ROTTERDAM: [
        ("politie-rr", "politie"),
        ("ggz-rr", "ggz"),
        ("gemeente-rotterdam", "gemeente"),
        ("reclassering-rr", "reclassering"),
    ],
    HAAGLANDEN: [
        ("politie-hl", "politie"),
        ("ggz-hl", "ggz"),
        ("gemeente-den-haag", "gemeente"),
        ("reclassering-hl", "reclassering"),
    ],
}


@dataclass
class Credential:
    """A dev certificate and key on disk."""

    identity: Identity
    cert_file: Path
    key_file: Path


@dataclass
class DevFederation:
    """The dev PKI and the running nodes, handed to every check."""

    root: Path
    ca_file: Path
    credentials: dict[str, Credential] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    partners: dict[str, SimPartner] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    """Makes this run's walkthrough referral a new case, even on a reused state dir."""
    case: common_pb2.CaseRef | None = None
    """The case the walkthrough follows, once referred."""

    @property
    def keys(self) -> DevKeys:
        """The dev pseudonym, policy and audit keys."""
        return DevKeys(self.root / "keys")

    def channel(self, node_id: str, who: str) -> grpc.aio.Channel:
        """An mTLS channel to ``node_id`` presenting the certificate named ``who``."""
        cred = self.credentials[who]
        creds = channel_credentials(self.ca_file, cred.cert_file, cred.key_file)
        return node_channel(self.nodes[node_id].address, node_id, creds)

    def partner_client(self, org_id: str) -> PartnerClient:
        """An SDK client for ``org_id``, to its own node, with its own certificate."""
        node_id = self.credentials[org_id].identity.node_id
        cred = self.credentials[org_id]
        return PartnerClient.from_files(
            self.nodes[node_id].address,
            cert_file=cred.cert_file,
            key_file=cred.key_file,
            ca_file=self.ca_file,
            server_name=node_dns_name(node_id),
            timeout=5.0,
        )

    def walked_case(self) -> common_pb2.CaseRef:
        """The walkthrough's case; fails the step when the referral step did not make one."""
        if self.case is None:
            raise AssertionError("no case to follow: the walkthrough referral failed")
        return self.case


def _dev_identities() -> dict[str, Identity]:
    """Every dev certificate by file stem."""
    found: dict[str, Identity] = {}
    number = 1
    for node_id, partners in PARTNERS.items():
        found[node_id] = make_identity(PeerKind.NODE, node_id=node_id, oin=_OIN.format(number))
        for org_id, org_type in partners:
            number += 1
            found[org_id] = make_identity(
                PeerKind.PARTNER,
                node_id=node_id,
                org_id=org_id,
                org_type=org_type,
                oin=_OIN.format(number),
            )
        for role in ("procesregisseur", "fg"):
            found[f"{node_id}-{role}"] = make_identity(
                PeerKind.OFFICER,
                node_id=node_id,
                org_id=node_id,
                org_type="zvh",
                roles={role},
                oin=found[node_id].oin,
            )
        number += 1
    found["collector-stuurgroep"] = make_identity(
        PeerKind.COLLECTOR, org_id="stuurgroep", roles={"landelijk"}, oin=_OIN.format(99)
    )
    return found


def _still_good(cert_file: Path, identity: Identity) -> bool:
    if not cert_file.exists():
        return False
    cert = load_certificate(cert_file)
    try:
        # A certificate of an older profile is issued again.
        same = identity_from_certificate(cert) == identity
    except IdentityError:
        return False
    return same and cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


def prepare_pki(root: Path, say: Callable[[str], None]) -> DevFederation:
    """Create (or reuse) the dev CA and certificates under ``root``."""
    ca_dir = root / "ca"
    if (ca_dir / "ca.key").exists():
        ca = CaStore.open(ca_dir)
        say(f"reusing the dev CA in {ca_dir}")
    else:
        ca = CaStore.init(ca_dir, "Schakel dev federatie CA")
        say(f"created a dev CA in {ca_dir}")
    fed = DevFederation(root, ca_dir / "ca.pem")
    issued = 0
    for stem, identity in _dev_identities().items():
        cert_file, key_file = root / "certs" / f"{stem}.pem", root / "certs" / f"{stem}.key"
        if not _still_good(cert_file, identity) or not key_file.exists():
            dns = ("localhost",) if identity.kind is PeerKind.NODE else ()
            ca.issue(identity, root / "certs", days=90, dns_names=dns, name=stem, force=True)
            issued += 1
        fed.credentials[stem] = Credential(identity, cert_file, key_file)
    ca.publish_crl()
    say(
        f"{len(fed.credentials)} dev certificates ready ({issued} newly issued) in {root / 'certs'}"
    )
    return fed


def free_port() -> int:
    """A loopback port that was free a moment ago (peers need addresses before start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_node_config(fed: DevFederation, node_id: str, ports: dict[str, int]) -> Path:
    """Write ``<root>/<node-id>/node.toml`` for a node on SQLite; the other node witnesses it."""
    cred = fed.credentials[node_id]
    port = ports[node_id]
    peers = [(peer, f"127.0.0.1:{p}") for peer, p in ports.items() if peer != node_id]
    sections = fed.keys.node_sections(
        node_id, peers, checkpoint_every_records=5, checkpoint_every_seconds=2
    )
    partners = "".join(
        f'\n[[partners]]\nid = "{org}"\norg_type = "{kind}"\n' for org, kind in PARTNERS[node_id]
    )
    path = fed.root / node_id / "node.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""# Written by `make run`; rewritten on every run.
[node]
id = "{node_id}"
listen = "127.0.0.1:{port}"
state_dir = "state"
log_level = "info"

[tls]
ca_file = "{fed.ca_file.resolve()}"
cert_file = "{cred.cert_file.resolve()}"
key_file = "{cred.key_file.resolve()}"
crl_file = "{(fed.root / "ca" / "crl.pem").resolve()}"
{sections}{partners}"""
    )
    return path


async def _health(fed: DevFederation, node_id: str, who: str) -> str:
    async with fed.channel(node_id, who) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    status = str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise AssertionError(f"health is {status}")
    return status


async def _refused(call: Awaitable[object], code: grpc.StatusCode) -> str:
    try:
        await call
    except grpc.aio.AioRpcError as err:
        if err.code() is not code:
            raise AssertionError(
                f"expected {code.name}, got {err.code().name}: {err.details()}"
            ) from err
        return f"{code.name}: {err.details()}"
    raise AssertionError(f"expected {code.name}, but the call succeeded")


async def _partner_elsewhere(fed: DevFederation) -> str:
    async with fed.channel(HAAGLANDEN, "politie-rr") as channel:
        call = partner_pb2_grpc.PartnerServiceStub(channel).GetCaseStatus(
            partner_pb2.GetCaseStatusRequest(), timeout=5
        )
        return await _refused(call, grpc.StatusCode.PERMISSION_DENIED)


async def _collector_signals(fed: DevFederation) -> str:
    now = dt.datetime.now(dt.UTC)
    request = federation_pb2.SignalsRequest(
        purpose=common_pb2.Purpose(processing_activity_id="zvh.signalering")
    )
    request.period_start.FromDatetime(now - dt.timedelta(days=30))
    request.period_end.FromDatetime(now + dt.timedelta(days=1))
    async with fed.channel(ROTTERDAM, "collector-stuurgroep") as channel:
        reply = await federation_pb2_grpc.FederationServiceStub(channel).GetSignals(
            request, timeout=5
        )
    hidden = sum(1 for cell in reply.cells if cell.suppressed)
    return f"{len(reply.cells)} cells from {reply.node_id}, {hidden} suppressed below k={reply.k}"


# A made-up BSN that passes the elfproef; it never leaves the partner unencrypted.
DEMO_BSN = "111222333"
PURPOSE = common_pb2.Purpose(processing_activity_id="zvh.complexe-casuistiek")


def _referral(fed: DevFederation) -> partner_pb2.SubmitReferralRequest:
    return partner_pb2.SubmitReferralRequest(
        idempotency_key="make-run-demo-1",
        purpose=PURPOSE,
        subject=encrypt_subject("bsn", DEMO_BSN, fed.keys.federation().global_public_key),
        theme="complexe-casuistiek",
        criteria=["meervoudige-problematiek", "veiligheidsrisico"],
        reason_codes=["escalatie"],
        external_ref="POL-RR-2026-0042",
    )


async def _refer(fed: DevFederation) -> str:
    async with fed.channel(ROTTERDAM, "politie-rr") as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        first = await stub.SubmitReferral(_referral(fed), timeout=5)
        retry = await stub.SubmitReferral(_referral(fed), timeout=5)
    if retry.case_ref != first.case_ref or retry.created:
        raise AssertionError("a retried referral did not return the first case")
    state = "opened" if first.created else "was already open from an earlier run"
    return f"case {first.case_ref.case_id} {state}; the retry returned the same case"


async def _pseudonymise(fed: DevFederation) -> str:
    key = fed.keys.domain("politie-rr").secret_key
    subject = encrypt_subject("bsn", DEMO_BSN, fed.keys.federation().global_public_key)
    async with fed.channel(ROTTERDAM, "politie-rr") as channel:
        reply = await partner_pb2_grpc.PartnerServiceStub(channel).Pseudonymise(
            partner_pb2.PseudonymiseRequest(purpose=PURPOSE, subjects=[subject, subject]),
            timeout=5,
        )
    seen = {decrypt_subject(s, key) for s in reply.subjects}
    if len(seen) != 1 or reply.subjects[0] == reply.subjects[1]:
        raise AssertionError("pseudonyms were not stable, or ciphertexts not rerandomised")
    return f"politie-rr's own pseudonym {seen.pop()[:16]}... (stable; ciphertexts differ)"


async def _outsider(fed: DevFederation) -> str:
    async with fed.channel(ROTTERDAM, "politie-rr") as channel:
        made = await partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(
            _referral(fed), timeout=5
        )
    async with fed.channel(ROTTERDAM, "ggz-rr") as channel:
        call = partner_pb2_grpc.PartnerServiceStub(channel).GetCaseStatus(
            partner_pb2.GetCaseStatusRequest(purpose=PURPOSE, case_ref=made.case_ref),
            timeout=5,
        )
        return await _refused(call, grpc.StatusCode.NOT_FOUND)


async def _witnessed(fed: DevFederation) -> str:
    parts = fed.nodes[ROTTERDAM].parts
    # Wait for a cosigned checkpoint over everything so far, so the inzage report
    # below proves the walkthrough's own records.
    target = (await asyncio.to_thread(parts.audit.head)).size
    for _ in range(150):
        final = await asyncio.to_thread(parts.checkpointer.latest_final)
        if final is not None and final.size >= target:
            return f"checkpoint of size {final.size} cosigned by {HAAGLANDEN}"
        await asyncio.sleep(0.1)
    raise AssertionError(f"no checkpoint of size {target} or more was cosigned within 15 s")


async def _verify(fed: DevFederation) -> str:
    async with fed.channel(ROTTERDAM, f"{ROTTERDAM}-fg") as channel:
        reply = await audit_pb2_grpc.AuditServiceStub(channel).VerifyLog(
            audit_pb2.VerifyLogRequest(), timeout=30
        )
    if not reply.ok:
        raise AssertionError(reply.message)
    return reply.message


async def _inzage(fed: DevFederation) -> str:
    subject = encrypt_subject("bsn", DEMO_BSN, fed.keys.federation().global_public_key)
    async with fed.channel(ROTTERDAM, f"{ROTTERDAM}-fg") as channel:
        report = await audit_pb2_grpc.AuditServiceStub(channel).SubjectReport(
            audit_pb2.SubjectReportRequest(subject=subject), timeout=30
        )
    if not report.entries:
        raise AssertionError("the report holds no record about the person")
    for proven in report.entries:
        merkle.verify_inclusion(
            merkle.leaf_hash(proven.entry.leaf_data),
            proven.entry.index,
            report.checkpoint.size,
            list(proven.proof.hashes),
            report.checkpoint.root,
        )
    return (
        f"{len(report.entries)} records about the person, each proven against the "
        f"cosigned checkpoint of size {report.checkpoint.size}"
    )


HL_REFERRAL_KEY = "make-run-haaglanden-1"
ANTECEDENTEN = "justitie.antecedenten"
IN_ZORG = "zorg.in_zorg"
HUISVESTING = "sociaal.huisvesting"
SCHULDEN = "sociaal.inkomen_schulden"
PARTICIPANTS = [
    ("politie-rr", "politie", ROTTERDAM),
    ("ggz-rr", "ggz", ROTTERDAM),
    ("gemeente-rotterdam", "gemeente", ROTTERDAM),
    ("politie-hl", "politie", HAAGLANDEN),
]
"""The case's participants; politie-hl takes part through its own node, Haaglanden."""
OUTCOME = "doelen-bereikt"


def _has_stream(broker: TaskBroker, org_id: str) -> bool:
    return broker.streams(org_id) > 0


async def start_partners(fed: DevFederation, say: Callable[[str], None]) -> None:
    """Start the simulated partner systems, each indexing its records through its node."""
    root = fed.root / "partners"
    adapters = {
        "politie-rr": devpartners.police(root, "politie-rr", "rr", DEMO_BSN, seed=1),
        "ggz-rr": devpartners.ggz(root, "ggz-rr", DEMO_BSN, seed=2),
        "politie-hl": devpartners.police(root, "politie-hl", "hl", DEMO_BSN, seed=3),
    }
    drop = devpartners.gemeente(root, "gemeente-rotterdam", DEMO_BSN, seed=4)
    for org_id in ("politie-rr", "ggz-rr", "gemeente-rotterdam", "politie-hl"):
        node_id = fed.credentials[org_id].identity.node_id
        broker = fed.nodes[node_id].parts.tasks
        client = fed.partner_client(org_id)
        adapter = adapters.get(org_id, drop)
        index = drop.index if org_id == "gemeente-rotterdam" else adapters[org_id].index
        try:
            sim = await devpartners.start_partner(
                org_id,
                adapter,
                index,
                client=client,
                keys=fed.keys.domain(org_id),
                purpose=PURPOSE.processing_activity_id,
                streaming=functools.partial(_has_stream, broker, org_id),
                drop=drop if org_id == "gemeente-rotterdam" else None,
            )
        except BaseException:
            await client.close()
            raise
        fed.partners[org_id] = sim
        say(f"   {org_id} serves its task stream at {node_id}: " + "; ".join(sim.notes))


def _regie(fed: DevFederation) -> grpc.aio.Channel:
    """A channel with the procesregisseur's officer certificate at RR."""
    return fed.channel(ROTTERDAM, f"{ROTTERDAM}-procesregisseur")


async def _refer_at_haaglanden(fed: DevFederation) -> str:
    request = _referral(fed)
    request.idempotency_key = HL_REFERRAL_KEY
    request.external_ref = "POL-HL-2026-0007"
    async with fed.channel(HAAGLANDEN, "politie-hl") as channel:
        made = await partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(request, timeout=5)
    await fed.nodes[HAAGLANDEN].parts.tasks.settle()
    state = "opened" if made.created else "still active from an earlier run"
    return f"case {made.case_ref.case_id} at {made.case_ref.node_id} {state}"


async def _sdk_referral(
    fed: DevFederation, org_id: str, bsn: str, *, external_ref: str, key: str
) -> partner_pb2.SubmitReferralResponse:
    """A referral at RR of ``bsn`` by ``org_id`` through the SDK; waits for its round."""
    client = fed.partner_client(org_id)
    async with client:
        made = await client.submit_referral(
            purpose=PURPOSE.processing_activity_id,
            subject=encrypt_subject("bsn", bsn, fed.keys.federation().global_public_key),
            theme="complexe-casuistiek",
            external_ref=external_ref,
            criteria=["meervoudige-problematiek", "veiligheidsrisico"],
            reason_codes=["escalatie"],
            idempotency_key=key,
        )
    await fed.nodes[ROTTERDAM].parts.tasks.settle()
    return made


async def _refer_by_reclassering(fed: DevFederation) -> str:
    made = await _sdk_referral(
        fed,
        "reclassering-rr",
        DEMO_BSN,
        external_ref=f"RN-{fed.run_id}",
        key=f"make-run-{fed.run_id}",
    )
    if not made.created:
        raise AssertionError("the walkthrough referral did not open a new case")
    fed.case = made.case_ref
    return f"case {made.case_ref.case_id} opened at {made.case_ref.node_id} (aanmelding)"


async def _hit_no_hit(fed: DevFederation) -> str:
    ref = fed.walked_case()
    async with _regie(fed) as channel:
        result = await case_pb2_grpc.CaseServiceStub(channel).RunHitNoHit(
            case_pb2.RunHitNoHitRequest(purpose=PURPOSE, case_ref=ref, deadline_ms=3000),
            timeout=10,
        )
    local = sorted(h.org_id for h in result.hits if h.org_id)
    peers = sorted(h.node_id for h in result.hits if not h.org_id)
    if "politie-rr" not in local:
        raise AssertionError(f"no hit at politie-rr; local hits {local}")
    if HAAGLANDEN not in peers:
        raise AssertionError(f"no hit at node {HAAGLANDEN}; peer hits {peers}")
    contacts = ", ".join(f"{h.org_id or h.node_id} -> {h.contact_handle}" for h in result.hits)
    return (
        f"hits: {contacts}; no hit: {sorted(result.no_hit)}; "
        f"unanswered: {sorted(result.unanswered)}"
    )


async def _triage(fed: DevFederation) -> str:
    request = case_pb2.TriageRequest(
        purpose=PURPOSE,
        case_ref=fed.walked_case(),
        accept=True,
        reason_code="ontvankelijk",
        participants=[
            common_pb2.Participant(org_id=org, org_type=kind, node_id=node_id)
            for org, kind, node_id in PARTICIPANTS
        ],
    )
    async with _regie(fed) as channel:
        status = await case_pb2_grpc.CaseServiceStub(channel).Triage(request, timeout=10)
    if status.phase != common_pb2.PHASE_CASUSOVERLEG:
        raise AssertionError(f"phase is {common_pb2.Phase.Name(status.phase)} after triage")
    names = ", ".join(p.org_id for p in status.participants)
    return f"accepted; phase casusoverleg with participants {names}"


async def _uitvraag(fed: DevFederation, categories: Sequence[str]) -> case_pb2.UitvraagResult:
    request = case_pb2.StartUitvraagRequest(
        purpose=PURPOSE, case_ref=fed.walked_case(), categories=categories, deadline_ms=5000
    )
    async with _regie(fed) as channel:
        result: case_pb2.UitvraagResult = await case_pb2_grpc.CaseServiceStub(
            channel
        ).StartUitvraag(request, timeout=15)
    return result


async def _delivered(
    fed: DevFederation, org_id: str, category: str, timeout: float = 5.0, count: int = 1
) -> list[devpartners.Delivery]:
    """This run's deliveries to ``org_id`` carrying ``category``, waiting for ``count``."""
    found: list[devpartners.Delivery] = []
    for _ in range(int(timeout / 0.02)):
        found = [
            d
            for d in fed.partners[org_id].adapter.deliveries
            if any(f.category == category for f in d.task.facts)
        ]
        if len(found) >= count:
            break
        await asyncio.sleep(0.02)
    return found


def _received(fed: DevFederation, category: str) -> list[str]:
    return sorted(
        org_id
        for org_id, sim in fed.partners.items()
        if any(f.category == category for d in sim.adapter.deliveries for f in d.task.facts)
    )


async def _uitvraag_without_consent(fed: DevFederation) -> str:
    result = await _uitvraag(fed, [ANTECEDENTEN, IN_ZORG, HUISVESTING, SCHULDEN])
    answered = {p.provider.org_id: p.answered for p in result.providers}
    if not all(answered.get(org) for org in ("politie-rr", "gemeente-rotterdam", "politie-hl")):
        raise AssertionError(
            f"politie-rr, gemeente-rotterdam and politie-hl did not all answer: {answered}"
        )
    undelivered = [r.org_id for p in result.providers for r in p.undelivered]
    if undelivered:
        raise AssertionError(f"facts did not reach {undelivered}")
    if answered.get("ggz-rr"):
        raise AssertionError("ggz-rr was asked for care data without a ground")
    (ggz,) = [p for p in result.providers if p.provider.org_id == "ggz-rr"]
    withheld = {w.category: w.reason for w in ggz.decision.withheld}
    if IN_ZORG not in withheld:
        raise AssertionError(f"ggz-rr's {IN_ZORG} was not withheld: {withheld}")
    if not await _delivered(fed, "ggz-rr", ANTECEDENTEN):
        raise AssertionError("ggz-rr got no police facts")
    if not await _delivered(fed, "ggz-rr", HUISVESTING):
        raise AssertionError("ggz-rr got no housing facts")
    from_hl = await _delivered(fed, "politie-hl", ANTECEDENTEN)
    if not from_hl:
        raise AssertionError("politie-hl (at zvh-haaglanden) got no police facts from politie-rr")
    # One police summary from politie-rr, one from politie-hl through its node.
    if len(await _delivered(fed, "ggz-rr", ANTECEDENTEN, count=2)) < 2:
        raise AssertionError("ggz-rr did not get police facts from both politie-rr and politie-hl")
    if _received(fed, IN_ZORG):
        raise AssertionError(f"care data reached {_received(fed, IN_ZORG)} without consent")
    return (
        f"politie-rr, gemeente-rotterdam and politie-hl (asked through {HAAGLANDEN}) answered; "
        f"politie-hl got politie-rr's summary through {HAAGLANDEN}; ggz-rr's {IN_ZORG} withheld "
        f"({withheld[IN_ZORG]}), so ggz-rr was not even asked; "
        f"{ANTECEDENTEN} reached {_received(fed, ANTECEDENTEN)}, "
        f"{HUISVESTING} reached {_received(fed, HUISVESTING)}, "
        f"{SCHULDEN} reached {_received(fed, SCHULDEN)}"
    )


async def _consent(fed: DevFederation) -> str:
    request = case_pb2.RecordGroundRequest(
        purpose=PURPOSE,
        case_ref=fed.walked_case(),
        kind=case_pb2.GROUND_KIND_CONSENT,
        category=IN_ZORG,
        provider_org_id="ggz-rr",
        evidence_ref=f"TOESTEMMING-{fed.run_id}",
    )
    async with _regie(fed) as channel:
        await case_pb2_grpc.CaseServiceStub(channel).RecordGround(request, timeout=10)
    return f"consent recorded for {IN_ZORG} from ggz-rr"


async def _uitvraag_with_consent(fed: DevFederation) -> str:
    result = await _uitvraag(fed, [IN_ZORG])
    (ggz,) = [p for p in result.providers if p.provider.org_id == "ggz-rr"]
    if not ggz.answered or IN_ZORG not in ggz.decision.released:
        raise AssertionError(f"ggz-rr's {IN_ZORG} was not released after consent")
    deliveries = await _delivered(fed, "gemeente-rotterdam", IN_ZORG)
    if not deliveries:
        raise AssertionError(f"gemeente-rotterdam got no {IN_ZORG}")
    delivery = deliveries[-1]
    gemeente = fed.partners["gemeente-rotterdam"]
    # The recipient's own view of the person: its pseudonym of the demo BSN, made
    # by the node's Pseudonymise and decrypted with its own domain key.
    (own,) = await gemeente.client.pseudonymise(
        [encrypt_subject("bsn", DEMO_BSN, fed.keys.federation().global_public_key)],
        purpose=PURPOSE.processing_activity_id,
    )
    mine = decrypt_subject(own, gemeente.keys.secret_key)
    if delivery.pseudonym != mine:
        raise AssertionError("the delivered subject is not the recipient's own pseudonym")
    if not delivery.local_keys or gemeente.adapter.index.lookup(mine) != delivery.local_keys:
        raise AssertionError("the recipient's index does not resolve the delivered subject")
    (fact,) = [f for f in delivery.task.facts if f.category == IN_ZORG]
    sinds = fact.fields["sinds"].date
    if sinds.month or sinds.day:
        raise AssertionError("the care start date was not coarsened to the year")
    return (
        f"released to {_received(fed, IN_ZORG)} under {list(delivery.task.decision.rule_ids)}, "
        f"fields {sorted(fact.fields)} with sinds coarsened to {sinds.year}; "
        f"gemeente-rotterdam got it as its own pseudonym "
        f"{mine[:16]}..., which its index resolves to its record(s) {list(delivery.local_keys)}"
    )


async def _close(fed: DevFederation) -> str:
    request = case_pb2.CloseCaseRequest(
        purpose=PURPOSE, case_ref=fed.walked_case(), outcome=OUTCOME
    )
    async with _regie(fed) as channel:
        status = await case_pb2_grpc.CaseServiceStub(channel).CloseCase(request, timeout=10)
    if status.phase != common_pb2.PHASE_AFSCHALING or status.outcome != OUTCOME:
        raise AssertionError(
            f"phase {common_pb2.Phase.Name(status.phase)}, outcome {status.outcome}"
        )
    told = [org for org, _, _ in PARTICIPANTS if await _delivered(fed, org, "uitkomst")]
    if len(told) != len(PARTICIPANTS):
        raise AssertionError(f"only {told} were told the outcome")
    return f"afschaling with outcome {OUTCOME}; {', '.join(told)} got only the outcome code"


MOVER_BSN = "123456782"
"""A second (made-up, elfproef-valid) person, who moves from Rotterdam to Den Haag."""


async def _hand_over(fed: DevFederation) -> str:
    made = await _sdk_referral(
        fed,
        "politie-rr",
        MOVER_BSN,
        external_ref=f"POL-RR-{fed.run_id}",
        key=f"make-run-mover-{fed.run_id}",
    )
    request = case_pb2.HandOverCaseRequest(
        purpose=PURPOSE,
        case_ref=made.case_ref,
        target_node_id=HAAGLANDEN,
        idempotency_key="verhuizing-1",
        reason_code="betrokkene-verhuisd",
    )
    async with _regie(fed) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        first = await stub.HandOverCase(request, timeout=10)
        retry = await stub.HandOverCase(request, timeout=10)
    if not first.created or retry.created or retry.remote_case_ref != first.remote_case_ref:
        raise AssertionError("the retried hand-over did not return the first remote case")
    if first.status.phase != common_pb2.PHASE_AFSCHALING:
        raise AssertionError("the handed-over case is still open at zvh-rotterdam-rijnmond")
    remote = fed.nodes[HAAGLANDEN].parts.registry.get(first.remote_case_ref.case_id)
    if remote.phase.value != "aanmelding":
        raise AssertionError(f"the case at {HAAGLANDEN} is in {remote.phase.value}")
    return (
        f"case {made.case_ref.case_id} handed over to {HAAGLANDEN} as case "
        f"{first.remote_case_ref.case_id} (aanmelding, for its own triage); closed here as "
        f"{first.status.outcome}; the retry returned the same case"
    )


Check = tuple[str, Callable[[DevFederation], Awaitable[str]]]

CHECKS: list[Check] = [
    (
        "politie-rr asks zvh-rotterdam-rijnmond for its health",
        lambda fed: _health(fed, ROTTERDAM, "politie-rr"),
    ),
    (
        "politie-hl asks zvh-haaglanden for its health",
        lambda fed: _health(fed, HAAGLANDEN, "politie-hl"),
    ),
    (
        "node zvh-rotterdam-rijnmond asks node zvh-haaglanden (node to node)",
        lambda fed: _health(fed, HAAGLANDEN, ROTTERDAM),
    ),
    (
        "node zvh-haaglanden asks node zvh-rotterdam-rijnmond (node to node)",
        lambda fed: _health(fed, ROTTERDAM, HAAGLANDEN),
    ),
    ("politie-rr is refused by zvh-haaglanden's partner service", _partner_elsewhere),
    ("politie-rr refers a person to zvh-rotterdam-rijnmond, then retries", _refer),
    ("politie-rr pseudonymises the same BSN twice", _pseudonymise),
    ("ggz-rr, not in the case, asks for its status", _outsider),
    ("the national collector gets suppressed aggregates", _collector_signals),
    ("walkthrough: politie-hl refers the person at zvh-haaglanden first", _refer_at_haaglanden),
    ("walkthrough: reclassering-rr refers the person with the SDK", _refer_by_reclassering),
    ("walkthrough: the procesregisseur runs hit/no-hit", _hit_no_hit),
    ("walkthrough: the procesregisseur accepts at triage", _triage),
    ("walkthrough: uitvraag without consent", _uitvraag_without_consent),
    ("walkthrough: the procesregisseur records GGZ consent", _consent),
    ("walkthrough: uitvraag with consent", _uitvraag_with_consent),
    ("walkthrough: the procesregisseur closes the case", _close),
    ("overdracht: a second person moves; the case goes to zvh-haaglanden", _hand_over),
    ("zvh-haaglanden witnesses zvh-rotterdam-rijnmond's audit log", _witnessed),
    ("the FG verifies zvh-rotterdam-rijnmond's audit log", _verify),
    ("the FG makes an inzage report for the referred person", _inzage),
]
"""Steps shown by ``make run``: a title and a coroutine returning what it saw."""


async def run(args: argparse.Namespace, out: TextIO) -> int:
    """Prepare, start, check and (unless ``--once``) serve; returns the exit code."""

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    root: Path = args.state_dir
    root.mkdir(parents=True, exist_ok=True)
    say(f"== dev PKI in {root}")
    fed = prepare_pki(root, say)
    log_path = root / "nodes.log"
    with log_path.open("a", encoding="utf-8") as log_file:
        configure_logging("info", stream=log_file)
        say(f"== starting nodes (JSON logs in {log_path})")
        ports = {
            node_id: free_port() if args.ports == "auto" else DEV_PORTS[node_id]
            for node_id in (ROTTERDAM, HAAGLANDEN)
        }
        try:
            for node_id in ports:
                config = load_config(write_node_config(fed, node_id, ports), environ={})
                node = open_node(config)
                await node.start()
                fed.nodes[node_id] = node
                say(f"   {node_id} listens on {node.address} ({config.database_url})")
        except (ConfigError, StartupError) as exc:
            say(f"FAILED: {exc}")
            if args.ports != "auto":
                say("   another `make run`? stop it, or use `make run ARGS='--ports auto'`")
            await _stop(fed)
            return 1
        say("== starting the simulated partner systems (data in " + str(root / "partners") + ")")
        try:
            await start_partners(fed, say)
        except (PartnerRpcError, RuntimeError, ValueError) as exc:
            say(f"FAILED: a simulated partner did not start: {exc}")
            await _stop(fed)
            return 1
        say("== checks over mTLS")
        failures = 0
        for title, check in CHECKS:
            try:
                seen = await check(fed)
                say(f"   ok      {title}: {seen}")
            except (AssertionError, grpc.aio.AioRpcError, PartnerRpcError) as exc:
                failures += 1
                detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                say(f"   FAILED  {title}: {detail}")
        say(f"== {len(CHECKS) - failures} of {len(CHECKS)} checks passed")
        if not args.once and not failures:
            say(
                "== serving until Ctrl-C; node configs are in "
                + ", ".join(str(root / n / "node.toml") for n in fed.nodes)
            )
            await _until_interrupted()
        await _stop(fed)
    return 1 if failures else 0


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _stop(fed: DevFederation) -> None:
    for sim in fed.partners.values():
        await sim.stop()
    for node in fed.nodes.values():
        await node.stop(grace=1.0)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of ``make run``."""
    parser = argparse.ArgumentParser(prog="make run ARGS=...", description=__doc__)
    parser.add_argument("--once", action="store_true", help="run the checks, then exit")
    parser.add_argument(
        "--state-dir", type=Path, default=Path(".state/dev"), help="default .state/dev"
    )
    parser.add_argument(
        "--ports",
        choices=["dev", "auto"],
        default="dev",
        help="dev: 7443 and 7444 (default); auto: any free ports",
    )
    args = parser.parse_args(argv)
    return asyncio.run(run(args, out or sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
