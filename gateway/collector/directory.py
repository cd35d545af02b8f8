"""The list of nodes the national collector asks: a plain, unsigned directory file.

``schakel signals collect --directory-key`` reads the signed federation
directory instead; without a key the collector reads this file, in TOML::

    [[nodes]]
    id = "zvh-haaglanden"          # the node id in its certificate
    address = "zvh-haaglanden.example.nl:7443"
    region = "Haaglanden"          # optional: the name in the report

or the same as YAML (``nodes:`` with a list of mappings). The file is only a
list of addresses: the node at an address must still present the
certificate of the node id listed for it, or the collector will not talk to it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from certs.identity import IdentityError, check_slug

_ADDRESS = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
_KEYS = {"id", "address", "region"}


class DirectoryError(ValueError):
    """The directory file is unusable; the message names the file and the entry."""


@dataclass(frozen=True)
class DirectoryNode:
    """One node of the federation: where to reach it and what to call it in reports."""

    node_id: str
    address: str
    region: str


def _parse(path: Path) -> Any:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise DirectoryError(f"{path}: cannot read the directory: {exc.strerror}") from exc
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text.decode("utf-8"))
        if path.suffix in (".yaml", ".yml"):
            return yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DirectoryError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from exc
    raise DirectoryError(f"{path}: the directory must be a .toml, .yaml or .yml file")


def load_directory(path: Path) -> list[DirectoryNode]:
    """The nodes listed in ``path``, in file order; DirectoryError says what is wrong."""
    data = _parse(path)
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise DirectoryError(f"{path}: expected a list 'nodes' at the top level")
    if not data["nodes"]:
        raise DirectoryError(f"{path}: 'nodes' is empty")
    nodes: list[DirectoryNode] = []
    seen: set[str] = set()
    for i, entry in enumerate(data["nodes"]):
        where = f"{path}: nodes[{i}]"
        if not isinstance(entry, dict):
            raise DirectoryError(f"{where}: expected a table with id and address")
        unknown = sorted(set(map(str, entry)) - _KEYS)
        if unknown:
            raise DirectoryError(f"{where}: unknown key(s) {', '.join(unknown)}")
        node_id, address = entry.get("id"), entry.get("address")
        region = entry.get("region", node_id)
        if not isinstance(node_id, str):
            raise DirectoryError(f"{where}.id: a node id (string) is required")
        try:
            check_slug(node_id, "node id")
        except IdentityError as exc:
            raise DirectoryError(f"{where}.id: {exc}") from exc
        if node_id in seen:
            raise DirectoryError(f"{where}.id: node {node_id!r} is listed twice")
        if not isinstance(address, str) or not _ADDRESS.match(address):
            raise DirectoryError(f"{where}.address: expected host:port, not {address!r}")
        if not isinstance(region, str) or not region.strip() or len(region) > 100:
            raise DirectoryError(f"{where}.region: expected a name of 1 to 100 characters")
        seen.add(node_id)
        nodes.append(DirectoryNode(node_id, address, region.strip()))
    return nodes
