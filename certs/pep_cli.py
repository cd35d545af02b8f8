"""``schakel certs pep``: create federation pseudonym keys and enrol domains.

``register(certs_subparsers)`` adds the ``pep`` command to the ``certs``
area's sub-parsers; ``main(argv)`` runs it stand-alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from certs.pep import enrol_domain, init_federation
from policy.pseudonyms import KeyFileError, PseudonymError


def _init(args: argparse.Namespace) -> int:
    files = init_federation(Path(args.out), force=args.force)
    print(f"key authority file (keep offline): {files.federation_keys}")
    print(f"transcryptor file (for every node): {files.transcryptor}")
    print(f"global public key Y: {files.global_public_key.hex()}")
    return 0


def _domain(args: argparse.Namespace) -> int:
    material = enrol_domain(args.org, Path(args.keys), Path(args.out), force=args.force)
    print(f"domain key for {material.domain!r} written to {args.out}")
    print(f"domain public key: {material.public_key.hex()}")
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
    """Add ``pep init`` and ``pep domain`` to the ``certs`` sub-parsers."""
    pep = certs_subparsers.add_parser(
        "pep",
        help="pseudonym keys: federation key pair, transcryptor secrets, domain keys",
        description="The key ceremony of the pseudonym scheme: the federation key pair, the "
        "transcryptor secrets every node holds, and each organisation's domain key.",
    )
    sub = pep.add_subparsers(dest="pep_command", required=True, metavar="COMMAND")
    init = sub.add_parser(
        "init",
        help="create the federation key pair and the transcryptor secrets",
        description="Create the key authority file (the global secret y: keep it offline) "
        "and the transcryptor file (PS, RS and the public key Y, for every node) in --out, "
        "which is created (0700) if missing. Nothing is replaced without --force.",
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
    domain.set_defaults(func=_run(_domain))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pep ...`` stand-alone; returns the exit code."""
    parser = argparse.ArgumentParser(prog="schakel certs")
    register(parser.add_subparsers(dest="certs_command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
