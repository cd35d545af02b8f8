"""``schakel audit``: the privacy officer's tools.

- ``keygen``   a checkpoint (log) or cosignature (witness) key pair and its vkey;
- ``keys``     the vkeys of existing key files (or of a checkpoint key in an HSM);
- ``verify``   a database or an export bundle, with only pinned public keys;
- ``query``    records by subject pseudonym, purpose, partner, time or decision;
- ``export``   the log as JSON lines, checkpoints and cosignatures included;
- ``erase``    erase the bodies whose retention ended (leaf hashes stay);
- ``inzage``   every record about one person (by BSN), with inclusion proofs.

Exit codes: 0 success; 1 a finding (verification failed); 2 a usage problem,
including every problem with ``--db`` (a missing file, not a Schakel database,
a server that does not answer): one line naming ``--db``, no traceback. No
command creates a database: a mistyped SQLite path fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit import notes, query, verify
from gateway.audit.cli_io import (
    FINDING,
    OK,
    DatabaseError,
    ProgressBar,
    db_failed,
    fail,
    key_args,
    load_keys,
    moment,
    node_args,
    open_engine,
)

_OUTCOMES = {"allow": 1, "deny": 2, "partial": 3}


_DB = "the node's database URL: sqlite:///path/node.db or postgresql+psycopg://user@host/db"
_NODE = "a running node's gRPC address: asks it over AuditService with --cert/--key/--ca"


def register(sub: Any) -> None:
    """Add the ``audit`` area to the ``schakel`` command."""
    parser = sub.add_parser(
        "audit",
        help="audit log: verify, query, export, erase, inzage",
        description="The privacy officer's tools for a node's audit log. Exit codes: 0 "
        "success, 1 a finding (verification failed), 2 a usage or --db problem.",
    )
    cmds = parser.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")

    p = cmds.add_parser(
        "keygen",
        help="create a checkpoint or cosignature key and its vkey",
        description="Create an Ed25519 key for signing checkpoints (--kind log) or cosigning "
        "peers' checkpoints (--kind witness); writes OUT.key (0600) and OUT.vkey, prints "
        "the vkey. Nodes create their own keys on first start; this is for keys made ahead.",
        epilog="""examples:
  schakel audit keygen --name zvh-haaglanden --kind log --out /etc/schakel/audit-log
  schakel audit keygen --name zvh-haaglanden --kind witness --out /etc/schakel/audit-witness""",
    )
    p.add_argument("--name", required=True, help="key name: the node id")
    p.add_argument(
        "--kind",
        choices=["log", "witness"],
        required=True,
        help="log: signs this node's checkpoints; witness: cosigns peers' checkpoints",
    )
    p.add_argument("--out", type=Path, required=True, help="writes OUT.key (0600) and OUT.vkey")
    p.set_defaults(func=cmd_keygen)

    p = cmds.add_parser(
        "keys",
        help="print the vkeys of key files, e.g. to recover a lost vkey",
        description="Print the C2SP vkey of each key file (or HSM key): the public key "
        "officers and witnesses pin. The name is the node id the key signs for.",
        epilog="""examples:
  schakel audit keys /var/lib/schakel/audit-log.key --name zvh-haaglanden
  schakel audit keys audit-witness.key --name zvh-haaglanden --passphrase-file audit.pass
  schakel audit keys 'pkcs11:token=schakel;object=audit-log' --name zvh-haaglanden --kind log""",
    )
    p.add_argument(
        "key_files", nargs="+", metavar="KEYFILE", help="a PEM key file, or a pkcs11: URI"
    )
    p.add_argument("--name", required=True, help="key name: the node id")
    p.add_argument(
        "--kind",
        choices=["log", "witness"],
        help="default: witness when the file name says 'witness', log when it says 'log'",
    )
    p.add_argument("--passphrase-file", type=Path, help="passphrase of encrypted key files")
    p.set_defaults(func=cmd_keys)

    p = cmds.add_parser(
        "verify",
        help="verify a database, an export bundle or a running node",
        description="Recompute the Merkle tree of every record, check every checkpoint "
        "against the pinned log key and its cosignatures against the witness keys, in "
        "constant memory. Prints OK or FAILED with the first bad leaf; exit 1 on FAILED. "
        "With --node: check the node's latest checkpoint with the pinned keys, prove it "
        "consistent with every checkpoint seen before (--checkpoint, --state) and prove "
        "the oldest --sample records included; also prints the node's own full check.",
        epilog="""examples:
  schakel audit verify --node zvh-haaglanden.example:50051 --cert fg.pem --key fg.key \\
      --ca federation-ca.pem --log-key log.vkey --witness-key rr-witness.vkey --quorum 1 \\
      --state ~/.schakel/zvh-haaglanden.checkpoint
  schakel audit verify --db sqlite:////var/lib/schakel/node.db --log-key log.vkey
  schakel audit verify --bundle export.jsonl --log-key 'zvh-haaglanden+1a2b3c4d+AU...' \\
      --witness-key rr-witness.vkey --quorum 1
  schakel audit verify --db postgresql+psycopg://fg@db/schakel --log-key log.vkey \\
      --checkpoint from-witness.note""",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", help=_DB)
    source.add_argument(
        "--bundle", type=Path, help="an export bundle (JSON lines from 'schakel audit export')"
    )
    source.add_argument("--node", metavar="HOST:PORT", help=_NODE)
    key_args(p)
    p.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="a signed checkpoint obtained elsewhere (e.g. from a witness) that must agree",
    )
    p.add_argument(
        "--state",
        type=Path,
        help="with --node: a file keeping the last verified checkpoint; the next run proves "
        "the log grew from it (a rolled-back or forked log fails)",
    )
    p.add_argument(
        "--sample",
        type=int,
        default=20,
        help="with --node: prove this many of the oldest records included (default 20)",
    )
    node_args(p)
    p.set_defaults(func=cmd_verify)

    p = cmds.add_parser(
        "query",
        help="find records",
        description="Print the records that match every filter given, as JSON lines, oldest "
        "first. Times are ISO 8601 (2026-03-01, 2026-03-01T09:30, 2026-03-01T09:30+01:00); "
        "a time without a zone is UTC.",
        epilog="""examples:
  schakel audit query --db sqlite:///state/node.db --subject 3f9a...e1 --limit 50
  schakel audit query --db sqlite:///state/node.db --decision deny --since 2026-03-01
  schakel audit query --db sqlite:///state/node.db \\
      --partner schakel://partner/zvh-haaglanden/politie-dh | head
  schakel audit query --node zvh-haaglanden.example:50051 --node-id zvh-haaglanden \\
      --cert fg.pem --key fg.key --ca federation-ca.pem --decision deny --since 2026-03-01""",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", help=_DB)
    source.add_argument("--node", metavar="HOST:PORT", help=_NODE)
    p.add_argument("--subject", help="the person's node-domain pseudonym (64 hex characters)")
    p.add_argument("--purpose", help="processing activity id, e.g. zvh.complexe-casuistiek")
    p.add_argument(
        "--partner", help="the caller's identity URI, e.g. schakel://partner/<node>/<org>"
    )
    p.add_argument("--since", type=moment, help="ISO 8601 time, inclusive (UTC if no zone)")
    p.add_argument("--until", type=moment, help="ISO 8601 time, exclusive (UTC if no zone)")
    p.add_argument("--decision", choices=sorted(_OUTCOMES), help="the policy decision's outcome")
    p.add_argument(
        "--limit",
        type=int,
        default=query.MAX_LIMIT,
        help=f"at most this many records (default and maximum {query.MAX_LIMIT:,})",
    )
    node_args(p)
    p.set_defaults(func=cmd_query)

    p = cmds.add_parser(
        "export",
        help="write the log as JSON lines",
        description="Write every leaf, checkpoint and cosignature to one JSON-lines bundle "
        "that 'schakel audit verify --bundle' checks offline. Never overwrites a file.",
        epilog="""examples:
  schakel audit export --db sqlite:////var/lib/schakel/node.db --out audit-2026-03.jsonl""",
    )
    p.add_argument("--db", required=True, help=_DB)
    p.add_argument("--out", type=Path, required=True, help="the bundle file to create")
    p.set_defaults(func=cmd_export)

    p = cmds.add_parser(
        "erase",
        help="erase record bodies whose retention ended",
        description="Erase the bodies of the records whose retention deadline passed; their "
        "leaf hashes stay, so the log still verifies. A running node does this every minute.",
        epilog="""examples:
  schakel audit erase --db postgresql+psycopg://schakel@db/schakel""",
    )
    p.add_argument("--db", required=True, help=_DB)
    p.set_defaults(func=cmd_erase)

    p = cmds.add_parser(
        "inzage",
        help="every record about one person, with proofs",
        description="Find every record about one person by their BSN (turned into the "
        "node's pseudonym, never stored), each with an inclusion proof against a verified "
        "checkpoint. Give - to read the BSN from stdin. With --node the BSN is encrypted "
        "under the federation key Y here, the node converts it through its transcryptor "
        "chain and records the lookup on the person's record; with --db the node's key "
        "files convert it here and nothing is recorded.",
        epilog="""examples:
  echo 123456782 | schakel audit inzage - --node zvh-haaglanden.example:50051 \\
      --cert fg.pem --key fg.key --ca federation-ca.pem --federation-key ceremony.json \\
      --log-key log.vkey --witness-key rr-witness.vkey --quorum 1 --html inzage.html
  echo 123456782 | schakel audit inzage - --db sqlite:////var/lib/schakel/node.db \\
      --transcryptor-keys pep/transcryptor.json --domain-key pep/zvh-haaglanden.json \\
      --log-key log.vkey --html inzage.html""",
    )
    p.add_argument("bsn", help="the BSN, or - to read it from stdin (keeps it out of ps)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", help=_DB)
    where.add_argument("--node", metavar="HOST:PORT", help=_NODE)
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--node-config",
        type=Path,
        help="the node's node.toml: converts through its [[transcryptors]] with its certificate",
    )
    source.add_argument(
        "--transcryptor-keys",
        type=Path,
        help="a federation of one transcryptor: its PS/RS file (with --domain-key)",
    )
    p.add_argument("--domain-key", type=Path, help="the node's domain key file")
    p.add_argument("--domain-key-passphrase-file", type=Path, help="for a sealed --domain-key")
    key_args(p)
    p.add_argument("--html", type=Path, help="also write the readable HTML report here")
    node_args(p)
    p.add_argument(
        "--federation-key",
        help="with --node: Y from the key ceremony's public ceremony.json (or 64 hex "
        "characters); without it the node is asked for Y",
    )
    p.set_defaults(func=cmd_inzage)


def cmd_keygen(args: argparse.Namespace) -> int:
    """Write a private key (0600, never overwritten) and its vkey."""
    sig_type = notes.ED25519 if args.kind == "log" else notes.COSIGNATURE_V1
    try:
        signer = notes.Signer.generate(args.name, sig_type)
    except notes.NoteError as exc:
        return fail(str(exc))
    key_path, vkey_path = args.out.with_suffix(".key"), args.out.with_suffix(".vkey")
    for path in (key_path, vkey_path):
        if path.exists():
            return fail(f"{path} exists; not overwriting a key")
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(signer.pem())
    vkey_path.write_text(signer.verifier().vkey() + "\n", encoding="utf-8")
    print(signer.verifier().vkey())
    return OK


def _key_kind(source: str, kind: str | None) -> int:
    name = Path(source).name if not source.startswith("pkcs11:") else source
    if kind is None:
        kind = "witness" if "witness" in name else "log" if "log" in name else None
    if kind is None:
        raise ValueError(f"{source}: say --kind log or --kind witness")
    return notes.ED25519 if kind == "log" else notes.COSIGNATURE_V1


def cmd_keys(args: argparse.Namespace) -> int:
    """Print ``<vkey>  <source>`` for every key file (or PKCS#11 URI) given."""
    from certs import hsm  # noqa: PLC0415 - only this command needs them
    from certs.keys import load_private_key  # noqa: PLC0415

    for source in args.key_files:
        try:
            sig_type = _key_kind(source, args.kind)
            if source.startswith("pkcs11:"):
                key: object = hsm.load_ed25519_key(source)
            else:
                key = load_private_key(Path(source), args.passphrase_file)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{source}: not an Ed25519 private key")
            vkey = notes.Signer(args.name, sig_type, key).verifier().vkey()
            notes.Verifier.from_vkey(vkey)  # refuses a --name a vkey cannot carry
        except ValueError as exc:
            return fail(str(exc))
        print(f"{vkey}  {source}")
    return OK


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify and print the outcome; exit 1 when anything fails."""
    if args.node:
        from gateway.audit import cli_remote  # noqa: PLC0415 - pulls in gRPC

        return cli_remote.cmd_verify(args)
    try:
        keys = load_keys(args)
        extra = [p.read_bytes() for p in args.checkpoint]
    except (OSError, ValueError) as exc:
        return fail(str(exc))
    bar = ProgressBar("verify")
    try:
        if args.db:
            report = verify.verify_database(open_engine(args.db), keys, extra, progress=bar)
        else:
            report = verify.verify_bundle(args.bundle, keys, extra, progress=bar)
    except (OSError, verify.BundleError) as exc:
        return fail(str(exc))
    except (SQLAlchemyError, DatabaseError) as exc:
        return db_failed(exc, args.db)
    finally:
        bar.close()
    if report.ok:
        print(f"OK: {report.message}; root {report.root.hex()}")
        for warning in report.warnings:
            print(f"note: {warning}")
        return OK
    where = (
        f" (first bad leaf: {report.first_bad_index})" if report.first_bad_index is not None else ""
    )
    print(f"FAILED: {report.message}{where}")
    return FINDING


def cmd_query(args: argparse.Namespace) -> int:
    """Print matching records as JSON lines."""
    try:
        where = query.Filter(
            data_subject_id=args.subject,
            processing_activity_id=args.purpose,
            peer=args.partner,
            since=args.since,
            until=args.until,
            outcome=_OUTCOMES[args.decision] if args.decision else None,
            limit=args.limit,
        ).checked()
        if args.node:
            from gateway.audit import cli_remote  # noqa: PLC0415 - pulls in gRPC

            return cli_remote.cmd_query(args, where.to_proto())
        entries = query.query(open_engine(args.db), where)
    except ValueError as exc:
        return fail(str(exc))
    except (SQLAlchemyError, DatabaseError) as exc:
        return db_failed(exc, args.db)
    for entry in entries:
        print(json.dumps(json_format.MessageToDict(entry), sort_keys=True))
    return OK


def cmd_export(args: argparse.Namespace) -> int:
    """Write the export bundle."""
    from gateway.audit.export import export  # noqa: PLC0415 - only this command needs it

    try:
        engine = open_engine(args.db)
        out = args.out.open("x", encoding="utf-8")
    except FileExistsError:
        return fail(f"{args.out} exists; not overwriting")
    except DatabaseError as exc:
        return db_failed(exc, args.db)
    bar = ProgressBar("export")
    try:
        with out:
            count = export(engine, out, progress=bar)
    except SQLAlchemyError as exc:
        args.out.unlink()  # a partial bundle would only fail verification later
        return db_failed(exc, args.db)
    finally:
        bar.close()
    print(f"exported {count} leaves to {args.out}")
    return OK


def cmd_erase(args: argparse.Namespace) -> int:
    """Erase expired bodies."""
    from gateway.audit.store import AuditLog  # noqa: PLC0415 - only this command needs it

    try:
        count = AuditLog(open_engine(args.db)).erase_expired()
    except (SQLAlchemyError, DatabaseError) as exc:
        return db_failed(exc, args.db)
    print(f"erased {count} record bodies; their leaf hashes stay")
    return OK


def cmd_inzage(args: argparse.Namespace) -> int:
    """Print (and optionally write as HTML) the report about one person."""
    from gateway.audit import inzage  # noqa: PLC0415 - pulls in libsodium
    from gateway.audit.checkpoint import Checkpoints  # noqa: PLC0415
    from gateway.audit.inzage_chain import chain_pseudonym  # noqa: PLC0415 - pulls in gRPC
    from gateway.audit.store import AuditLog  # noqa: PLC0415
    from gateway.errors import SchakelError  # noqa: PLC0415
    from policy.pseudonyms import (  # noqa: PLC0415
        DomainKey,
        KeyFileError,
        PseudonymError,
        TranscryptorKeys,
    )

    bsn = sys.stdin.readline().strip() if args.bsn == "-" else args.bsn
    if args.node:
        from gateway.audit import cli_remote  # noqa: PLC0415 - pulls in gRPC

        return cli_remote.cmd_inzage(args, bsn)
    if args.node_config is None and args.transcryptor_keys is None:
        return fail("--db needs --node-config or --transcryptor-keys to find the pseudonym")
    try:
        keys = load_keys(args)
        if args.node_config is not None:
            pseudonym = chain_pseudonym(args.node_config, bsn)
        else:
            if args.domain_key is None:
                return fail("--transcryptor-keys needs --domain-key")
            transcryptor = TranscryptorKeys.load(args.transcryptor_keys).transcryptor()
            domain_key = DomainKey.load(args.domain_key, args.domain_key_passphrase_file)
            ciphertext = inzage.encrypt_bsn(bsn, domain_key.global_public_key)
            pseudonym = inzage.resolve_locally(transcryptor, domain_key, ciphertext)
    except (OSError, ValueError, KeyFileError, PseudonymError, SchakelError) as exc:
        # PseudonymError messages name the problem, never the value.
        return fail(str(exc))
    del bsn
    try:
        log = AuditLog(open_engine(args.db))
        checkpointer = Checkpoints(log, witnesses=keys.witnesses, quorum=keys.quorum)
        report = inzage.build_report(checkpointer, pseudonym)
        inzage.check_report(report.response, keys)
    except inzage.InzageError as exc:
        return fail(str(exc))
    except (SQLAlchemyError, DatabaseError) as exc:
        return db_failed(exc, args.db)
    sys.stdout.write(inzage.render_text(report))
    if args.html:
        args.html.write_text(inzage.render_html(report), encoding="utf-8")
        print(f"HTML report: {args.html}")
    return OK
