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
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schakel.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    federation_pb2,
    federation_pb2_grpc,
    partner_pb2,
    partner_pb2_grpc,
)

from adapters.sdk.subjects import decrypt_subject, encrypt_subject
from certs.ca_store import CaStore, load_certificate
from certs.identity import Identity, PeerKind, make_identity
from gateway.audit import merkle
from gateway.config import ConfigError, load_config
from gateway.devkeys import DevKeys
from gateway.logging import configure_logging
from gateway.node import Node, open_node
from gateway.server import StartupError
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

    @property
    def keys(self) -> DevKeys:
        """The dev pseudonym, policy and audit keys."""
        return DevKeys(self.root / "keys")

    def channel(self, node_id: str, who: str) -> grpc.aio.Channel:
        """An mTLS channel to ``node_id`` presenting the certificate named ``who``."""
        cred = self.credentials[who]
        creds = channel_credentials(self.ca_file, cred.cert_file, cred.key_file)
        return node_channel(self.nodes[node_id].address, node_id, creds)


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


def _still_good(cert_file: Path) -> bool:
    if not cert_file.exists():
        return False
    cert = load_certificate(cert_file)
    return cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


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
        if not _still_good(cert_file) or not key_file.exists():
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
{sections}"""
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
    checkpointer = fed.nodes[ROTTERDAM].parts.checkpointer
    for _ in range(100):
        final = await asyncio.to_thread(checkpointer.latest_final)
        if final is not None:
            return f"checkpoint of size {final.size} cosigned by {HAAGLANDEN}"
        await asyncio.sleep(0.1)
    raise AssertionError("no checkpoint was cosigned within 10 s")


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
        say("== checks over mTLS")
        failures = 0
        for title, check in CHECKS:
            try:
                seen = await check(fed)
                say(f"   ok      {title}: {seen}")
            except (AssertionError, grpc.aio.AioRpcError) as exc:
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
