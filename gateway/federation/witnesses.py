"""Who witnesses this node's audit log, and whose logs it witnesses, kept current.

The peer list (the signed federation directory, or ``[[peers]]`` without
one) carries each peer's keys: a peer with a ``witness_key`` is asked to
cosign this node's checkpoints and its cosignatures are accepted; a peer
with a ``log_key`` gets its checkpoints cosigned here, and so does a
transcryptor whose ``log_key`` the node's ``[[transcryptors]]`` pins. :class:`WitnessRoster`
turns the list into those keys and puts them in force on the node's
:class:`~gateway.audit.checkpoint.Checkpoints` and
:class:`~gateway.audit.witness.Witness`; :meth:`WitnessRoster.refresh` does
it again whenever the list changed (the node calls it every witnessing
round, so a re-signed directory takes effect within its reload interval
plus one round, without a restart).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.audit import notes
from gateway.audit.checkpoint import Checkpoints
from gateway.audit.witness import Witness
from gateway.federation.directory import Peer, peer_key
from gateway.logging import get_logger

log = get_logger("federation.witnesses")


class WitnessKeyError(ValueError):
    """A peer's key is unusable; ``node_id`` and ``which`` (log_key, witness_key) say whose."""

    def __init__(self, node_id: str, which: str, message: str) -> None:
        super().__init__(f"{node_id}: {which}: {message}")
        self.node_id = node_id
        self.which = which


@dataclass(frozen=True)
class WitnessKeys:
    """The witnessing keys of one version of the peer list."""

    witnesses: dict[str, notes.Verifier]
    """Node id -> cosignature/v1 key: the peers asked to cosign this node's checkpoints."""
    logs: dict[str, notes.Verifier]
    """Node id -> checkpoint key: the peers whose checkpoints this node cosigns."""


def _verifier(peer: Peer, which: str, text: str, sig_type: int) -> notes.Verifier:
    try:
        return peer_key(peer.node_id, text, sig_type)
    except ValueError as exc:
        raise WitnessKeyError(peer.node_id, which, str(exc)) from exc


def transcryptor_logs(transcryptors: Iterable[tuple[str, str]]) -> dict[str, notes.Verifier]:
    """The checkpoint keys of the transcryptors this node witnesses, from (id, log vkey) pairs.

    A transcryptor's checkpoints have its id as origin, so its key must be an
    Ed25519 key named after it; WitnessKeyError names the first unusable one.
    """
    logs: dict[str, notes.Verifier] = {}
    for transcryptor, vkey in transcryptors:
        try:
            logs[transcryptor] = peer_key(transcryptor, vkey, notes.ED25519)
        except ValueError as exc:
            raise WitnessKeyError(transcryptor, "log_key", str(exc)) from exc
    return logs


def witness_keys(
    peers: Iterable[Peer], transcryptors: Mapping[str, notes.Verifier] | None = None
) -> WitnessKeys:
    """The keys ``peers`` list, with the ``transcryptors``' logs this node witnesses too.

    WitnessKeyError names the first unusable key, or a peer whose id is a
    transcryptor's (the two logs would share one origin).
    """
    witnesses: dict[str, notes.Verifier] = {}
    logs: dict[str, notes.Verifier] = dict(transcryptors or {})
    for peer in peers:
        if peer.node_id in (transcryptors or {}):
            raise WitnessKeyError(
                peer.node_id, "log_key", "is also the id of a transcryptor this node witnesses"
            )
        if peer.witness_key:
            witnesses[peer.node_id] = _verifier(
                peer, "witness_key", peer.witness_key, notes.COSIGNATURE_V1
            )
        if peer.log_key:
            logs[peer.node_id] = _verifier(peer, "log_key", peer.log_key, notes.ED25519)
    return WitnessKeys(witnesses, logs)


def _changes(old: dict[str, notes.Verifier], new: dict[str, notes.Verifier]) -> dict[str, str]:
    """added / removed / rotated node ids, comma-separated, for one log line."""
    rotated = [n for n in new if n in old and new[n].vkey() != old[n].vkey()]
    return {
        "added": ",".join(sorted(set(new) - set(old))),
        "removed": ",".join(sorted(set(old) - set(new))),
        "rotated": ",".join(sorted(rotated)),
    }


class WitnessRoster:
    """Keeps the node's witness and log keys equal to what its peer list says.

    ``peers`` returns the peer list in force (this node left out), e.g.
    ``PeerClient.peers``. The first list must be usable (WitnessKeyError
    otherwise, for the node to refuse to start); a later unusable one is
    logged and the keys in force stay. ``transcryptors`` are the logs of
    the transcryptors this node witnesses, from its own config: they stay.
    """

    def __init__(
        self,
        peers: Callable[[], Sequence[Peer]],
        checkpoints: Checkpoints,
        witness: Witness,
        *,
        quorum: int,
        transcryptors: Mapping[str, notes.Verifier] | None = None,
    ) -> None:
        self._transcryptors = dict(transcryptors or {})
        self._peers = peers
        self._checkpoints = checkpoints
        self._witness = witness
        self._quorum = quorum
        self._seen = tuple(peers())
        self.keys = witness_keys(self._seen, self._transcryptors)
        """The keys in force."""
        self._put_in_force(self.keys)

    def _put_in_force(self, keys: WitnessKeys) -> None:
        self._witness.set_logs(keys.logs)
        self._checkpoints.set_witnesses(list(keys.witnesses.values()))

    def refresh(self) -> WitnessKeys:
        """Read the peer list; if it changed, put its keys in force. Returns the keys in force."""
        peers = tuple(self._peers())
        if peers == self._seen:
            return self.keys
        self._seen = peers
        try:
            keys = witness_keys(peers, self._transcryptors)
        except WitnessKeyError as exc:
            # A signed directory's keys were checked when it loaded; this is
            # the defence for any other source of the list.
            log.error("witness_keys_refused", peer=exc.node_id, key=exc.which, reason=str(exc))
            return self.keys
        witnesses = _changes(self.keys.witnesses, keys.witnesses)
        logs = _changes(self.keys.logs, keys.logs)
        if not any((*witnesses.values(), *logs.values())):
            return self.keys
        self._put_in_force(keys)
        self.keys = keys
        log.info(
            "witness_keys_changed",
            **{f"witnesses_{k}": v for k, v in witnesses.items()},
            **{f"logs_{k}": v for k, v in logs.items()},
        )
        if len(keys.witnesses) < self._quorum:
            log.error(
                "witness_quorum_unreachable",
                quorum=self._quorum,
                witnesses=len(keys.witnesses),
            )
        return keys
