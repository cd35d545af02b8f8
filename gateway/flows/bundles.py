"""The policy bundle in force, who signed it, and what changed since the one before.

A node keeps the signed bytes of every bundle it has enforced in
``<state_dir>/policy-history/`` (one file per content hash, and ``order``
listing the hashes as they took effect), so that the FG can compare the
bundle in force with its predecessor after a reload or a restart.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.errors import NotConfiguredError
from gateway.logging import get_logger

if TYPE_CHECKING:
    from gateway.parts import NodeParts

log = get_logger("bundles")

HISTORY_DIR = "policy-history"
ORDER_FILE = "order"


@dataclass(frozen=True)
class BundleView:
    """The bundle in force and its difference from the previous one."""

    name: str
    version: str
    sha256: str
    source: str
    signer: str
    """SHA-256 of the pinned signing key (raw Ed25519), the key the signature was checked with."""
    rules: int
    previous_sha256: str
    """Empty when this is the first bundle the node enforced."""
    previous_version: str
    diff: list[str]
    """A unified diff of the previous bundle's text against this one's."""


def _history(parts: NodeParts) -> Path:
    return parts.config.node.state_dir / HISTORY_DIR


def keep_bundle(parts: NodeParts) -> None:
    """Store the bundle in force in the history, unless it is already the newest entry there.

    The node calls this at start and after every reload, so the FG can see what changed.
    A failure is logged, never raised: a bundle in force is enforced whether or not its
    copy could be kept.
    """
    try:
        _keep(parts)
    except OSError as exc:
        log.error("policy_history_failed", reason=exc.strerror or type(exc).__name__)


def _keep(parts: NodeParts) -> None:
    if parts.policy is None:
        return
    data = parts.policy.bundle_bytes
    digest = hashlib.sha256(data).hexdigest()
    folder = _history(parts)
    folder.mkdir(parents=True, exist_ok=True)
    order = folder / ORDER_FILE
    known = order.read_text().split() if order.exists() else []
    if known and known[-1] == digest:
        return
    (folder / digest).write_bytes(data)
    with order.open("a") as out:
        out.write(digest + "\n")


def _version_of(text: str) -> str:
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "version":
            return value.strip().strip("\"'")
    return ""


def _view(parts: NodeParts) -> BundleView:
    if parts.policy is None:
        raise NotConfiguredError("this node has no policy bundle configured (policy.bundle)")
    _keep(parts)
    bundle = parts.policy.evaluator.policy.bundle
    data = parts.policy.bundle_bytes
    digest = hashlib.sha256(data).hexdigest()
    folder = _history(parts)
    known = (folder / ORDER_FILE).read_text().split()
    earlier = [h for h in known if h != digest]
    previous = earlier[-1] if earlier else ""
    old_text = (folder / previous).read_text() if previous else ""
    text = data.decode("utf-8", errors="replace")
    diff = (
        list(
            difflib.unified_diff(
                old_text.splitlines(),
                text.splitlines(),
                fromfile=f"vorige ({previous[:12]})",
                tofile=f"in gebruik ({digest[:12]})",
                lineterm="",
            )
        )
        if previous
        else []
    )
    raw_key = parts.policy.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return BundleView(
        name=bundle.name,
        version=bundle.version,
        sha256=bundle.sha256,
        source=str(parts.policy.bundle_path),
        signer=hashlib.sha256(raw_key).hexdigest(),
        rules=len(bundle.rules),
        previous_sha256=previous,
        previous_version=_version_of(old_text),
        diff=diff,
    )


async def bundle_in_force(parts: NodeParts) -> BundleView:
    """The bundle in force with its signer and its diff against the previous one."""
    return await asyncio.to_thread(_view, parts)


__all__ = ["BundleView", "bundle_in_force", "keep_bundle"]
