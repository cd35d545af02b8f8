"""``schakel certs``: run the federation CA from the command line.

Sub-commands: ``init-ca``, ``issue``, ``revoke``, ``crl`` and ``show``.
Every error prints one line saying what is wrong and exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cryptography import x509

from certs import pep_cli
from certs.ca_store import (
    REVOCATION_REASONS,
    CaError,
    CaStore,
    format_serial,
    load_certificate,
)
from certs.identity import IdentityError, PeerKind, identity_from_certificate, make_identity
from policy.vocabulary import ORG_TYPES, ROLES

EXIT_ERROR = 1


def _ca_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ca-dir", type=Path, default=Path("ca"), help="the CA directory (default: ./ca)"
    )


def register(subparsers: Any) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add the ``certs`` area to the ``schakel`` command.

    The ``pep`` key tools of the pseudonym scheme join as ``schakel certs pep``.
    Returns the area's sub-parsers.
    """
    certs: argparse.ArgumentParser = subparsers.add_parser(
        "certs",
        help="federation PKI: CA, issuance, revocation",
        description="Run the federation CA: one per federation, kept in a directory (ca.pem, "
        "ca.key at 0600, index.json, crl.pem). Keep it offline. Every error is one line on "
        "stderr and exit code 1.",
    )
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = certs.add_subparsers(
        dest="certs_command", required=True, metavar="COMMAND"
    )

    init = sub.add_parser(
        "init-ca",
        help="create a federation root CA in a directory",
        description="Create the federation root CA (an ECDSA P-256 key and a self-signed "
        "certificate) and an empty index in --ca-dir.",
        epilog="""examples:
  schakel certs init-ca --ca-dir ca --name 'Schakel federatie CA'""",
    )
    _ca_dir(init)
    init.add_argument("--name", default="Schakel federatie root CA", help="CA common name")
    init.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(func=_init_ca)

    issue = sub.add_parser(
        "issue",
        help="issue a node, partner, officer or collector certificate",
        description="Issue a certificate and a fresh key for one identity: writes "
        "<name>.pem and <name>.key (0600) into --out. The name defaults to the identity "
        "(node-<id>, <org-id>, <org-id>-<role>, collector-<id>).",
        epilog="""examples:
  schakel certs issue node --ca-dir ca --node-id zvh-haaglanden --oin 00000001234567890000 \\
      --dns schakel.zvh-haaglanden.nl --out etc/
  schakel certs issue partner --ca-dir ca --node-id zvh-haaglanden --org-id politie-dh \\
      --org-type politie --oin 00000001234567890001 --out etc/
  schakel certs issue officer --ca-dir ca --node-id zvh-haaglanden --org-id zvh-haaglanden \\
      --org-type zvh --role procesregisseur --oin 00000001234567890000 --out etc/""",
    )
    issue.add_argument(
        "kind", choices=[k.value for k in PeerKind], help="what the certificate identifies"
    )
    _ca_dir(issue)
    issue.add_argument("--node-id", default="", help="the node (ZVH) id, e.g. zvh-haaglanden")
    issue.add_argument(
        "--org-id", default="", help="organisation id (partner, officer) or collector id"
    )
    issue.add_argument("--org-type", default="", help=f"one of {', '.join(sorted(ORG_TYPES))}")
    issue.add_argument(
        "--role",
        action="append",
        default=[],
        help=f"role, repeatable: {', '.join(sorted(ROLES))}",
    )
    issue.add_argument("--oin", required=True, help="the organisation's OIN (20 digits)")
    issue.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    issue.add_argument(
        "--dns",
        action="append",
        default=[],
        help="a DNS name for a node, repeatable (partners connecting by IP still check "
        "the node name <node-id>.node.schakel.invalid, which every node certificate has)",
    )
    issue.add_argument(
        "--out", type=Path, default=Path("."), help="output directory (default: here)"
    )
    issue.add_argument("--name", help="file stem (default derived from the identity)")
    issue.add_argument("--force", action="store_true", help="replace existing files")
    issue.set_defaults(func=_issue)

    revoke = sub.add_parser(
        "revoke",
        help="revoke a certificate (file or hex serial)",
        description="Mark a certificate this CA issued as revoked in its index; publish a "
        "new CRL with 'schakel certs crl' and copy it to the nodes.",
        epilog="""examples:
  schakel certs revoke etc/politie-dh.pem --ca-dir ca --reason key-compromise
  schakel certs revoke 5f3a9c... --ca-dir ca""",
    )
    revoke.add_argument("target", help="certificate file, or serial in hex as `show` prints it")
    _ca_dir(revoke)
    revoke.add_argument(
        "--reason",
        default="unspecified",
        choices=sorted(REVOCATION_REASONS),
        help="the CRL reason code (default unspecified)",
    )
    revoke.set_defaults(func=_revoke)

    crl = sub.add_parser(
        "crl",
        help="publish a CRL of every revoked certificate",
        description="Sign a CRL of every revoked serial. Nodes read it from [tls] crl_file and "
        "take a new one up without a restart; publish one before a node's first start.",
        epilog="""examples:
  schakel certs crl --ca-dir ca
  schakel certs crl --ca-dir ca --out /srv/crl/crl.pem --next-update-days 3""",
    )
    _ca_dir(crl)
    crl.add_argument("--out", type=Path, help="where to write it (default <ca-dir>/crl.pem)")
    crl.add_argument(
        "--next-update-days", type=int, default=7, help="days until the next CRL is due"
    )
    crl.set_defaults(func=_crl)

    show = sub.add_parser(
        "show",
        help="print the identity in a certificate",
        description="Print the identity (URI, kind, node, organisation, roles, OIN), DNS "
        "names, serial, issuer and validity of a certificate.",
        epilog="""examples:
  schakel certs show etc/politie-dh.pem""",
    )
    show.add_argument("cert", type=Path, help="the certificate file (PEM)")
    show.set_defaults(func=_show)
    pep_cli.register(sub)
    return sub


def _fail(message: str) -> int:
    print(f"schakel certs: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _init_ca(args: argparse.Namespace) -> int:
    try:
        store = CaStore.init(args.ca_dir, args.name, days=args.days, force=args.force)
    except (CaError, OSError) as exc:
        return _fail(str(exc))
    serial = format_serial(store.cert.serial_number)
    print(f"created CA {args.name!r} in {store.directory} (serial {serial})")
    return 0


def _issue(args: argparse.Namespace) -> int:
    try:
        identity = make_identity(
            PeerKind(args.kind),
            node_id=args.node_id,
            org_id=args.org_id,
            org_type=args.org_type,
            roles=set(args.role),
            oin=args.oin,
        )
        store = CaStore.open(args.ca_dir)
        issued = store.issue(
            identity,
            args.out,
            days=args.days,
            dns_names=tuple(args.dns),
            name=args.name,
            force=args.force,
        )
    except (CaError, IdentityError, OSError) as exc:
        return _fail(str(exc))
    print(f"issued {identity.uri} serial {format_serial(issued.cert.serial_number)}")
    print(f"  certificate {issued.cert_path}")
    print(f"  key         {issued.key_path} (0600)")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    try:
        store = CaStore.open(args.ca_dir)
        serial = store.serial_of(args.target)
        newly = store.revoke(serial, args.reason)
    except (CaError, OSError) as exc:
        return _fail(str(exc))
    state = "revoked" if newly else "was already revoked:"
    print(f"{state} serial {format_serial(serial)}; run `schakel certs crl` to publish")
    return 0


def _crl(args: argparse.Namespace) -> int:
    try:
        store = CaStore.open(args.ca_dir)
        path = store.publish_crl(args.out, next_update_days=args.next_update_days)
    except (CaError, OSError) as exc:
        return _fail(str(exc))
    print(f"published CRL with {len(store.revoked())} revoked serial(s) to {path}")
    return 0


def describe(cert: x509.Certificate) -> list[tuple[str, str]]:
    """The identity and validity of ``cert`` as labelled lines."""
    identity = identity_from_certificate(cert)
    dns = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        pass
    return [
        ("uri", identity.uri),
        ("kind", identity.kind.value),
        ("node", identity.node_id or "-"),
        ("org", identity.org_id or "-"),
        ("org-type", identity.org_type),
        ("roles", ",".join(sorted(identity.roles)) or "-"),
        ("oin", identity.oin),
        ("dns", ",".join(dns) or "-"),
        ("serial", format_serial(cert.serial_number)),
        ("issuer", cert.issuer.rfc4514_string()),
        ("not-before", cert.not_valid_before_utc.isoformat()),
        ("not-after", cert.not_valid_after_utc.isoformat()),
    ]


def _show(args: argparse.Namespace) -> int:
    try:
        lines = describe(load_certificate(args.cert))
    except (CaError, IdentityError) as exc:
        return _fail(f"{args.cert}: {exc}")
    for label, value in lines:
        print(f"{label + ':':<12}{value}")
    return 0
