"""``schakel certs``: run the federation CA from the command line.

Sub-commands: ``init-ca``, ``request`` (at the key's owner), ``sign`` (at the
CA), ``issue`` (the dev PKI: the CA makes the key), ``revoke``, ``crl``,
``show`` and ``encrypt-key``. Every error prints one line saying what is
wrong and exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs import enrol, pep_cli
from certs.authority import new_key
from certs.ca_store import (
    REVOCATION_REASONS,
    CaError,
    CaStore,
    default_file_name,
    format_serial,
    load_certificate,
    write_private_key,
)
from certs.enrol import RequestError, check_request, load_request, make_request
from certs.identity import (
    PARTNER_ORG_TYPES,
    Identity,
    IdentityError,
    PeerKind,
    identity_from_certificate,
    make_identity,
)
from certs.keys import (
    KeyFileError,
    atomic_write,
    load_private_key,
    read_passphrase,
    write_key_file,
)
from policy.vocabulary import OFFICER_ROLES

EXIT_ERROR = 1


def _ca_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ca-dir", type=Path, default=Path("ca"), help="the CA directory (default: ./ca)"
    )


def _ca_passphrase(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ca-passphrase-file",
        type=Path,
        help="file holding the passphrase of an encrypted ca.key (not needed with ca.pkcs11)",
    )


def _identity_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind", choices=[k.value for k in PeerKind], help="what the certificate identifies"
    )
    parser.add_argument("--node-id", default="", help="the node (ZVH) id, e.g. zvh-haaglanden")
    parser.add_argument(
        "--org-id",
        default="",
        help="partner: its organisation id; collector, transcryptor: its own id",
    )
    types = ", ".join(sorted(PARTNER_ORG_TYPES))
    parser.add_argument("--org-type", default="", help=f"partner only: one of {types}")
    parser.add_argument(
        "--role", default="", help=f"officer only: {' or '.join(sorted(OFFICER_ROLES))}"
    )
    parser.add_argument("--oin", required=True, help="the organisation's OIN (20 digits)")
    parser.add_argument(
        "--dns", action="append", default=[], help="DNS name of a node or transcryptor, repeatable"
    )
    parser.add_argument("--name", help="file stem (default derived from the identity)")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    parser.add_argument(
        "--passphrase-file",
        type=Path,
        help="encrypt the new private key (PKCS#8) with the passphrase in this file",
    )


def register(subparsers: Any) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add the ``certs`` area to the ``schakel`` command.

    The ``pep`` key tools of the pseudonym scheme join as ``schakel certs pep``.
    Returns the area's sub-parsers.
    """
    certs: argparse.ArgumentParser = subparsers.add_parser(
        "certs",
        help="federation PKI: CA, enrolment, revocation",
        description="The federation PKI: one CA per federation, kept in a directory (ca.pem, "
        "ca.key, index.json, crl.pem); keep it offline. In production the owner of a key runs "
        "`request` and sends the .csr to the CA operator, who runs `sign`; `issue` (the CA "
        "makes the key too) is for development federations. Every error is one line on "
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
    keep = init.add_mutually_exclusive_group()
    keep.add_argument(
        "--ca-passphrase-file",
        type=Path,
        help="encrypt ca.key (PKCS#8) with the passphrase in this file",
    )
    keep.add_argument(
        "--pkcs11-uri",
        help="keep the CA key in an HSM: pkcs11:token=..;object=..?module-path=..&pin-source=.. "
        "(the key pair is made in the token unless it holds one of that label)",
    )
    init.set_defaults(func=_init_ca)

    request = sub.add_parser(
        "request",
        help="make a key and a certificate signing request (run by the key's owner)",
        description="Make a P-256 key (0600, encrypted with --passphrase-file if given) and "
        "a signing request for one identity; send only the .csr to the CA operator.",
        epilog="""examples:
  schakel certs request node --node-id zvh-haaglanden --oin 00000001234567890000 \\
      --dns schakel.zvh-haaglanden.nl --passphrase-file tls.pass --out etc/
  schakel certs request partner --node-id zvh-haaglanden --org-id politie-dh \\
      --org-type politie --oin 00000001234567890001 --out etc/
  schakel certs request officer --node-id zvh-haaglanden --role fg \\
      --oin 00000001234567890000 --out etc/""",
    )
    _identity_args(request)
    request.add_argument("--out", type=Path, default=Path("."), help="output directory")
    request.set_defaults(func=_request)

    sign = sub.add_parser(
        "sign",
        help="issue a certificate from a signing request (at the CA)",
        description="Check a signing request (its signature, a P-256 key, the identity "
        "profile, no id that collides with another kind) and issue its certificate.",
        epilog="""examples:
  schakel certs sign etc/node-zvh-haaglanden.csr --ca-dir ca --ca-passphrase-file ca.pass \\
      --expect schakel://node/zvh-haaglanden""",
    )
    sign.add_argument("csr", type=Path, help="the .csr file from `schakel certs request`")
    _ca_dir(sign)
    _ca_passphrase(sign)
    sign.add_argument("--days", type=int, default=365, help="validity (default 365)")
    sign.add_argument(
        "--expect", metavar="URI", help="refuse unless the request asks for this identity URI"
    )
    sign.add_argument("--out", type=Path, help="certificate file (default: <csr stem>.pem)")
    sign.add_argument("--force", action="store_true", help="replace an existing file")
    sign.set_defaults(func=_sign)

    issue = sub.add_parser(
        "issue",
        help="dev PKI: make a key and issue its certificate in one step",
        description="Issue a certificate and a fresh key for one identity (development "
        "federations: in production the owner makes the key, see `request`). Writes "
        "<name>.pem and <name>.key (0600) into --out.",
        epilog="""examples:
  schakel certs issue node --ca-dir ca --node-id zvh-haaglanden --oin 00000001234567890000 \\
      --dns schakel.zvh-haaglanden.nl --out etc/
  schakel certs issue partner --ca-dir ca --node-id zvh-haaglanden --org-id politie-dh \\
      --org-type politie --oin 00000001234567890001 --out etc/""",
    )
    _identity_args(issue)
    _ca_dir(issue)
    _ca_passphrase(issue)
    issue.add_argument("--days", type=int, default=365, help="validity (default 365)")
    issue.add_argument("--out", type=Path, default=Path("."), help="output directory")
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
    _ca_passphrase(revoke)
    revoke.add_argument(
        "--reason",
        default="unspecified",
        choices=sorted(REVOCATION_REASONS),
        help="the CRL reason code (default unspecified)",
    )
    revoke.set_defaults(func=_revoke)

    crl = sub.add_parser(
        "crl",
        help="publish a CRL of every revoked certificate, with a higher CRL number",
        description="Sign a CRL of every revoked serial. Nodes read it from [tls] crl_file and "
        "take a new one up without a restart; publish one before a node's first start.",
        epilog="""examples:
  schakel certs crl --ca-dir ca
  schakel certs crl --ca-dir ca --out /srv/crl/crl.pem --next-update-days 3""",
    )
    _ca_dir(crl)
    _ca_passphrase(crl)
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

    encrypt = sub.add_parser(
        "encrypt-key",
        help="encrypt an unencrypted PEM private key in place (PKCS#8)",
        description="Rewrite a PEM private key as PKCS#8 encrypted with the passphrase in a "
        "file, so that it is not readable at rest; the node reads it with the matching "
        "*_passphrase_file setting.",
        epilog="""examples:
  schakel certs encrypt-key /etc/schakel/node-zvh-haaglanden.key --passphrase-file tls.pass""",
    )
    encrypt.add_argument("key", type=Path, help="the PEM private key file to encrypt")
    encrypt.add_argument(
        "--passphrase-file", type=Path, required=True, help="file holding the new passphrase"
    )
    encrypt.set_defaults(func=_encrypt_key)
    pep_cli.register(sub)
    return sub


def _fail(message: str) -> int:
    print(f"schakel certs: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _open(args: argparse.Namespace) -> CaStore:
    return CaStore.open(args.ca_dir, passphrase_file=args.ca_passphrase_file)


def _init_ca(args: argparse.Namespace) -> int:
    try:
        store = CaStore.init(
            args.ca_dir,
            args.name,
            days=args.days,
            force=args.force,
            passphrase_file=args.ca_passphrase_file,
            pkcs11_uri=args.pkcs11_uri,
        )
    except (CaError, OSError) as exc:
        return _fail(str(exc))
    serial = format_serial(store.cert.serial_number)
    where = "in the HSM" if args.pkcs11_uri else "encrypted" if args.ca_passphrase_file else ""
    print(f"created CA {args.name!r} in {store.directory} (serial {serial})")
    if where:
        print(f"  key {where}")
    return 0


def _identity(args: argparse.Namespace) -> Identity:
    return make_identity(
        PeerKind(args.kind),
        node_id=args.node_id,
        org_id=args.org_id,
        org_type=args.org_type,
        role=args.role,
        oin=args.oin,
    )


def _request(args: argparse.Namespace) -> int:
    try:
        identity = _identity(args)
        stem = args.name or default_file_name(identity)
        key_path, csr_path = args.out / f"{stem}.key", args.out / f"{stem}.csr"
        for path in (key_path, csr_path):
            if path.exists() and not args.force:
                raise CaError(f"{path} already exists; pass --force to replace it")
        passphrase = read_passphrase(args.passphrase_file) if args.passphrase_file else None
        key = new_key()
        csr = make_request(identity, key, args.dns)
        write_private_key(key_path, key, force=args.force, passphrase=passphrase)
        atomic_write(csr_path, csr.public_bytes(serialization.Encoding.PEM))
    except (CaError, IdentityError, KeyFileError, OSError) as exc:
        return _fail(str(exc))
    print(f"requested {identity.uri}")
    print(f"  key         {key_path} (0600{', encrypted' if passphrase else ''}; stays here)")
    print(f"  request     {csr_path} (send this to the CA operator)")
    print(f"  key sha256  {enrol.public_key_fingerprint(key.public_key())}")
    return 0


def _sign(args: argparse.Namespace) -> int:
    try:
        request = check_request(load_request(args.csr.read_bytes()))
        if args.expect is not None and args.expect != request.identity.uri:
            raise CaError(
                f"the request asks for {request.identity.uri}, not {args.expect}; not signed"
            )
        store = _open(args)
        out = args.out or args.csr.with_suffix(".pem")
        issued = store.sign(request, out, days=args.days, force=args.force)
    except (CaError, RequestError, OSError) as exc:
        return _fail(f"{args.csr}: {exc}")
    print(f"issued {request.identity.uri} serial {format_serial(issued.cert.serial_number)}")
    print(f"  certificate {issued.cert_path}")
    print(f"  key sha256  {request.key_fingerprint} (compare with the requester's)")
    return 0


def _issue(args: argparse.Namespace) -> int:
    try:
        identity = _identity(args)
        store = _open(args)
        issued = store.issue(
            identity,
            args.out,
            days=args.days,
            dns_names=tuple(args.dns),
            name=args.name,
            force=args.force,
            passphrase_file=args.passphrase_file,
        )
    except (CaError, IdentityError, OSError) as exc:
        return _fail(str(exc))
    print(f"issued {identity.uri} serial {format_serial(issued.cert.serial_number)}")
    print(f"  certificate {issued.cert_path}")
    print(f"  key         {issued.key_path} (0600)")
    return 0


def _encrypt_key(args: argparse.Namespace) -> int:
    try:
        key = load_private_key(args.key)
        write_key_file(args.key, key, passphrase=read_passphrase(args.passphrase_file), force=True)
    except (CaError, KeyFileError, OSError) as exc:
        return _fail(str(exc))
    print(f"encrypted {args.key}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    try:
        store = _open(args)
        serial = store.serial_of(args.target)
        newly = store.revoke(serial, args.reason)
    except (CaError, OSError) as exc:
        return _fail(str(exc))
    state = "revoked" if newly else "was already revoked:"
    print(f"{state} serial {format_serial(serial)}; run `schakel certs crl` to publish")
    return 0


def _crl(args: argparse.Namespace) -> int:
    try:
        store = _open(args)
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
        ("role", identity.role or "-"),
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
