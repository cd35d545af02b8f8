"""``schakel federation``: create, sign and validate the signed federation directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from gateway.federation.directory import (
    DirectoryError,
    load_directory,
    load_directory_key,
    parse_directory,
)
from policy.model import PolicyError
from policy.signing import generate_key, sign_bundle

OK, FINDING, USAGE = 0, 1, 2


def register(sub: Any) -> None:
    """Add the ``federation`` area to the ``schakel`` command."""
    parser = sub.add_parser(
        "federation",
        help="the signed directory of federation nodes",
        description="Create, sign and validate the federation directory: the nodes, their "
        "addresses and their log and witness keys. Exit codes: 0 success, 1 a finding, "
        "2 a usage problem.",
    )
    cmds = parser.add_subparsers(dest="federation_command", required=True, metavar="COMMAND")

    p = cmds.add_parser(
        "keygen",
        help="create a directory signing key (and KEY.pub)",
        description="Create an Ed25519 directory signing key (0600) and KEY.pub, which every "
        "node pins as [federation] public_key. Keep the private key off the nodes.",
        epilog="""examples:
  schakel federation keygen ~/federation/directory.key""",
    )
    p.add_argument("key", type=Path, help="the private key file to create")
    p.set_defaults(func=cmd_keygen)

    p = cmds.add_parser(
        "create",
        help="write a new, unsigned directory file",
        description="Write a new directory YAML listing the nodes; add each node's log_key "
        "and witness_key (from its audit_key_created log lines) before signing it.",
        epilog="""examples:
  schakel federation create directory.yaml --name zvh-nl \\
      --node zvh-haaglanden=schakel.zvh-haaglanden.nl:7443 \\
      --node zvh-rotterdam-rijnmond=schakel.zvh-rr.nl:7443""",
    )
    p.add_argument("directory", type=Path, help="the directory YAML to create")
    p.add_argument(
        "--node",
        action="append",
        required=True,
        metavar="ID=HOST:PORT",
        help="a node and its address (repeatable)",
    )
    p.add_argument("--name", default="", help="the federation's name")
    p.set_defaults(func=cmd_create)

    p = cmds.add_parser(
        "sign",
        help="validate, then sign a directory: writes DIRECTORY.sig",
        description="Validate a directory, then sign it: writes DIRECTORY.sig beside it. "
        "Nodes take a newly signed directory up within [federation] reload_seconds.",
        epilog="""examples:
  schakel federation sign directory.yaml --key ~/federation/directory.key""",
    )
    p.add_argument("directory", type=Path, help="the directory YAML")
    p.add_argument("--key", type=Path, required=True, help="private directory key")
    p.set_defaults(func=cmd_sign)

    p = cmds.add_parser(
        "validate",
        help="check a directory's entries and its signature",
        description="Check every entry of a directory and its signature DIRECTORY.sig "
        "against the pinned directory key, as a node does when it loads it.",
        epilog="""examples:
  schakel federation validate /etc/schakel/federation/directory.yaml \\
      --public-key /etc/schakel/federation/directory.pub""",
    )
    p.add_argument("directory", type=Path, help="the directory YAML")
    p.add_argument("--public-key", type=Path, required=True, help="pinned directory key (.pub)")
    p.set_defaults(func=cmd_validate)


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_keygen(args: argparse.Namespace) -> int:
    """Create a directory key pair."""
    try:
        pub = generate_key(args.key)
    except PolicyError as exc:
        _err(str(exc).replace("policy key", "directory key"))
        return USAGE
    print(f"private key {args.key} (keep it off the nodes), public key {pub}")
    return OK


def cmd_create(args: argparse.Namespace) -> int:
    """Write a directory from ``--node`` entries, refusing to overwrite a file."""
    nodes = []
    for item in args.node:
        node_id, sep, address = item.partition("=")
        if not sep:
            _err(f"--node {item!r}: expected ID=HOST:PORT")
            return USAGE
        nodes.append({"id": node_id, "address": address})
    doc: dict[str, Any] = {"federation": args.name} if args.name else {}
    doc["nodes"] = nodes
    text = yaml.safe_dump(doc, sort_keys=False).encode()
    try:
        parse_directory(text, str(args.directory))
    except DirectoryError as exc:
        _err(str(exc))
        return USAGE
    try:
        with open(args.directory, "xb") as out:
            out.write(text)
    except FileExistsError:
        _err(f"{args.directory} exists; refusing to overwrite it")
        return USAGE
    print(
        f"wrote {args.directory} with {len(nodes)} node(s); sign it with: schakel federation sign"
    )
    return OK


def cmd_sign(args: argparse.Namespace) -> int:
    """Validate, then sign a directory."""
    try:
        parse_directory(args.directory.read_bytes(), str(args.directory))
    except OSError as exc:
        _err(f"{args.directory}: cannot read ({exc.strerror})")
        return USAGE
    except DirectoryError as exc:
        _err(f"{exc}\nrefusing to sign an invalid directory")
        return FINDING
    try:
        sig = sign_bundle(args.directory, args.key)
    except PolicyError as exc:
        _err(str(exc))
        return USAGE
    print(f"signed {args.directory}: {sig}")
    return OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Verify the signature and the entries; list the nodes."""
    try:
        directory = load_directory(args.directory, load_directory_key(args.public_key))
    except DirectoryError as exc:
        _err(str(exc))
        return FINDING
    print(f"{args.directory}: signature valid, {len(directory.peers)} node(s)")
    for peer in directory.peers:
        region = f" ({peer.region})" if peer.region else ""
        print(f"  {peer.node_id}{region} at {peer.address}")
    return OK
