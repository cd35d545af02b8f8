"""``schakel certs pep``: pseudonym keys: a domain's key from its transcryptors' factors.

``assemble`` multiplies one factor of every transcryptor of the chain
(``schakel transcryptor enrol`` writes them) into the domain's key file;
``seal`` encrypts a plain key file at rest.
``init`` and ``domain`` are the single scheme (one key authority holding y,
PS and RS), kept to run a chain of one and to migrate from it.

``register(certs_subparsers)`` adds the ``pep`` command to the ``certs``
area's sub-parsers; ``main(argv)`` runs it stand-alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from certs.pep import enrol_domain, init_federation, seal_file
from policy.pseudonyms import KeyFileError, PseudonymError
from policy.pseudonyms.shares import DomainFactor, assemble


def _init(args: argparse.Namespace) -> int:
    files = init_federation(Path(args.out), force=args.force)
    print(f"key authority file (keep offline): {files.federation_keys}")
    print(f"transcryptor file (for every node): {files.transcryptor}")
    print(f"global public key Y: {files.global_public_key.hex()}")
    return 0


def _domain(args: argparse.Namespace) -> int:
    material = enrol_domain(
        args.org,
        Path(args.keys),
        Path(args.out),
        force=args.force,
        passphrase_file=args.passphrase_file,
    )
    print(f"domain key for {material.domain!r} written to {args.out}")
    print(f"domain public key: {material.public_key.hex()}")
    return 0


def _assemble(args: argparse.Namespace) -> int:
    material = assemble(
        [DomainFactor.load(Path(f), args.factor_passphrase_file) for f in args.factors]
    )
    material.save(Path(args.out), force=args.force, passphrase_file=args.passphrase_file)
    print(f"domain key for {material.domain!r} from {len(args.factors)} factors: {args.out}")
    print(f"domain public key: {material.public_key.hex()}")
    print(f"federation key Y: {material.global_public_key.hex()}")
    return 0


def _seal(args: argparse.Namespace) -> int:
    form = seal_file(Path(args.file), Path(args.passphrase_file))
    print(f"{args.file} ({form}) is sealed; give its passphrase file wherever it is read")
    return 0


Handler = Callable[[argparse.Namespace], int]


def _run(handler: Handler) -> Handler:
    """Turn a key or input error into a message on stderr and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            code = handler(args)
        except (KeyFileError, PseudonymError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return code

    return run


def register(certs_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pep assemble``, ``pep init`` and ``pep domain`` to the ``certs`` sub-parsers."""
    pep = certs_subparsers.add_parser(
        "pep",
        help="pseudonym keys: a domain's key from its transcryptors' factors",
        description="Pseudonym keys: assemble a domain's key from its transcryptors' factors, "
        "and the single-transcryptor scheme kept for development and migration.",
    )
    sub = pep.add_subparsers(dest="pep_command", required=True, metavar="COMMAND")
    assembled = sub.add_parser(
        "assemble",
        help="multiply one factor of every transcryptor into the domain's key file (0600)",
        description="Assemble a domain's decryption key y_d = prod(k_(d,i) * y_i) from the "
        "factor files its transcryptors wrote (schakel transcryptor enrol).",
        epilog="""examples:
  schakel certs pep assemble politie-dh.tc-regio.json politie-dh.tc-landelijk.json \\
      --out /etc/schakel/pep/politie-dh.json
  schakel certs pep assemble politie-dh.tc-regio.json politie-dh.tc-landelijk.json \\
      --out /etc/schakel/pep/politie-dh.json --passphrase-file /run/secrets/pep-passphrase \\
      --factor-passphrase-file /run/secrets/politie-dh-transfer""",
    )
    assembled.add_argument("factors", nargs="+", help="factor files from `transcryptor enrol`")
    assembled.add_argument("--out", required=True, help="file to write the domain key to")
    assembled.add_argument("--force", action="store_true", help="replace an existing file")
    assembled.add_argument(
        "--passphrase-file",
        type=Path,
        help="seal the key file with the passphrase on this file's first line (12+ characters)",
    )
    assembled.add_argument(
        "--factor-passphrase-file",
        type=Path,
        help="open factor files sealed by `transcryptor enrol --passphrase-file` with the "
        "passphrase on this file's first line",
    )
    assembled.set_defaults(func=_run(_assemble))
    init = sub.add_parser(
        "init",
        help="single scheme: create the federation key pair and one transcryptor's secrets",
        description="The single-transcryptor scheme, for development and for migrating to a "
        "chain (schakel transcryptor init --from-single): the key authority file (y) and the "
        "transcryptor file (PS, RS, Y) in --out.",
        epilog="""examples:
  schakel certs pep init --out /secure/pep""",
    )
    init.add_argument("--out", required=True, help="directory for the key files (created)")
    init.add_argument("--force", action="store_true", help="replace existing key files")
    init.set_defaults(func=_run(_init))
    domain = sub.add_parser(
        "domain",
        help="derive an organisation's domain decryption key",
        description="Derive the domain decryption key of one organisation (a partner, or a "
        "node for its own domain) from the key authority file and write it (0600) to --out; "
        "its folder is created if missing.",
        epilog="""examples:
  schakel certs pep domain politie-dh --keys /secure/pep/federation-keys.json \\
      --out enrol/politie-dh/domain.json
  schakel certs pep domain zvh-haaglanden --keys /secure/pep/federation-keys.json \\
      --out /etc/schakel/pep/zvh-haaglanden.json""",
    )
    domain.add_argument("org", help="organisation id (the pseudonymisation domain)")
    domain.add_argument("--keys", required=True, help="the key authority file from 'pep init'")
    domain.add_argument(
        "--out", required=True, help="file to write the domain key to (its folder is created)"
    )
    domain.add_argument("--force", action="store_true", help="replace an existing file")
    domain.add_argument(
        "--passphrase-file",
        type=Path,
        help="seal the key file with the passphrase on this file's first line (12+ characters)",
    )
    domain.set_defaults(func=_run(_domain))
    seal = sub.add_parser(
        "seal",
        help="seal a plain pseudonym key file with a passphrase, in place",
        description="Encrypt a plain key file (a transcryptor's share.json, a domain key, a "
        "domain factor) at rest: scrypt and AES-256-GCM under the passphrase on the first line "
        "of --passphrase-file. Afterwards name that passphrase file wherever the key file is "
        "read (transcryptor.share_passphrase_file, pseudonyms.domain_key_passphrase_file).",
        epilog="""examples:
  schakel certs pep seal /var/lib/schakel-tc/share.json \\
      --passphrase-file /run/secrets/tc-share-passphrase
  schakel certs pep seal /etc/schakel/pep/zvh-haaglanden.json \\
      --passphrase-file /run/secrets/pep-passphrase""",
    )
    seal.add_argument("file", help="the plain key file; it is replaced by its sealed form")
    seal.add_argument(
        "--passphrase-file",
        required=True,
        help="the file whose first line is the passphrase (12+ characters)",
    )
    seal.set_defaults(func=_run(_seal))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pep ...`` stand-alone; returns the exit code."""
    parser = argparse.ArgumentParser(prog="schakel certs")
    register(parser.add_subparsers(dest="certs_command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
