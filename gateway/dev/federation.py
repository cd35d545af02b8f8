"""The dev federation of ``make run``: two nodes, their PKI and configs, the simulated partners.

Everything lives under one state folder (``.state/dev`` by default, git-ignored)
and is reused on the next run: a CA, two nodes with a node.toml each, partner,
officer and collector certificates, the pseudonym keys (:mod:`gateway.dev.keys`)
and the simulated partner systems' own data (:mod:`gateway.dev.partners`).
:class:`DevFederation` holds it all and is handed to every check.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import socket
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from schakel.v1 import common_pb2

from adapters.sdk import PartnerClient
from certs.ca_store import CaStore, load_certificate, node_dns_name
from certs.identity import (
    Identity,
    IdentityError,
    PeerKind,
    identity_from_certificate,
    make_identity,
)
from certs.keys import load_private_key
from gateway.app import Node
from gateway.dev import partners as devpartners
from gateway.dev.keys import TRANSCRYPTORS, DevKeys
from gateway.dev.partners import SimPartner
from gateway.tasks.broker import TaskBroker
from gateway.tls import channel_credentials, node_channel
from policy.vocabulary import COLLECTOR_ROLE, FG, PROCESREGISSEUR, REGIE

ROTTERDAM = "zvh-rotterdam-rijnmond"
HAAGLANDEN = "zvh-haaglanden"
DEV_PORTS = {
    ROTTERDAM: 7443,
    HAAGLANDEN: 7444,
    "tc-regio": 7445,
    "tc-landelijk": 7446,
    f"console-{ROTTERDAM}": 7480,
    f"console-{HAAGLANDEN}": 7481,
}
P12_PASSWORD = "schakel-dev"  # noqa: S105 - printed by make run
"""The password of the officers' ``.p12`` files that a browser imports (a dev federation only)."""

# Made-up OINs: the 00000099 prefix is not handed out by Logius.
_OIN = "000000990000000{:05d}"

# A made-up BSN that passes the elfproef; it never leaves the partner unencrypted.
DEMO_BSN = "111222333"
"""The person the walkthrough follows; every simulated partner knows them."""
PURPOSE = common_pb2.Purpose(processing_activity_id="zvh.complexe-casuistiek")
"""The processing activity every call of the dev federation serves."""

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
    transcryptors: dict[str, str] = field(default_factory=dict)
    """The running chain, in order: transcryptor id -> address."""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """The transcryptors' processes."""

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


Check = tuple[str, Callable[[DevFederation], Awaitable[str]]]
"""A step of ``make run``: a title and a coroutine returning what it saw."""


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
        for role in (PROCESREGISSEUR, FG):
            found[f"{node_id}-{role}"] = make_identity(
                PeerKind.OFFICER,
                node_id=node_id,
                org_id=node_id,
                org_type=REGIE,
                roles={role},
                oin=found[node_id].oin,
            )
        number += 1
    found["collector-stuurgroep"] = make_identity(
        PeerKind.COLLECTOR, org_id="stuurgroep", roles={COLLECTOR_ROLE}, oin=_OIN.format(99)
    )
    for i, transcryptor in enumerate(TRANSCRYPTORS):
        found[f"transcryptor-{transcryptor}"] = make_identity(
            PeerKind.TRANSCRYPTOR, org_id=transcryptor, oin=_OIN.format(97 - i)
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
    peers = [
        (peer, f"127.0.0.1:{p}")
        for peer, p in ports.items()
        if peer in PARTNERS and peer != node_id
    ]
    sections = fed.keys.node_sections(
        node_id,
        peers,
        checkpoint_every_records=5,
        checkpoint_every_seconds=2,
        transcryptors=fed.transcryptors.items(),
    )
    partners = "".join(
        f'\n[[partners]]\nid = "{org}"\norg_type = "{kind}"\n' for org, kind in PARTNERS[node_id]
    )
    partners += f'\n[console]\nlisten = "127.0.0.1:{ports[f"console-{node_id}"]}"\n'

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


def browser_certificate(fed: DevFederation, stem: str) -> Path:
    """The certificate ``stem`` with its key as ``certs/<stem>.p12`` (password
    :data:`P12_PASSWORD`), to import into a browser for the console."""
    cred = fed.credentials[stem]
    key = load_private_key(cred.key_file)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{cred.key_file} is not an EC key")
    bundle = pkcs12.serialize_key_and_certificates(
        stem.encode(),
        key,
        load_certificate(cred.cert_file),
        None,
        serialization.BestAvailableEncryption(P12_PASSWORD.encode()),
    )
    path = cred.cert_file.with_suffix(".p12")
    path.write_bytes(bundle)
    return path


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


async def shut_down(fed: DevFederation) -> None:
    """Stop the simulated partners, then the nodes, then the transcryptors."""
    for sim in fed.partners.values():
        await sim.stop()
    for node in fed.nodes.values():
        await node.stop(grace=1.0)
    for process in fed.processes:
        process.terminate()
    for process in fed.processes:
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
