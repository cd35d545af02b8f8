"""NodeParts: everything a node's flows and servicers work with, loaded from its config.

The composition root (:mod:`gateway.app`) builds one; the rpc and flow
modules receive it. It lives apart from the composition root so that those
modules never import the code that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from gateway.audit import notes
from gateway.audit.checkpoint import Checkpointer
from gateway.audit.store import AuditLog
from gateway.audit.witness import Witness
from gateway.caselocks import CaseLocks
from gateway.cases import CaseRegistry
from gateway.cases.links import LinkStore
from gateway.config import NodeConfig
from gateway.federation import PeerClient
from gateway.federation.witnesses import WitnessRoster
from gateway.subjects import NodeSubjects
from gateway.tasks.broker import TaskBroker
from policy.store import PolicyStore


@dataclass
class NodeParts:
    """Everything the servicers work with, loaded from the config."""

    config: NodeConfig
    engine: Engine
    audit: AuditLog
    checkpointer: Checkpointer
    witness: Witness
    registry: CaseRegistry
    links: LinkStore
    """The peers' cases this node takes part in, which its federation answers are bound to."""
    policy: PolicyStore | None
    subjects: NodeSubjects | None
    log_key: notes.Verifier
    """The node's checkpoint key, as officers pin it."""
    witness_verifier: notes.Verifier
    """The node's cosignature key, as peers pin it."""
    tasks: TaskBroker
    """Work for the local partners' task streams, kept in partner_tasks, and the
    answers awaited."""
    peers: PeerClient | None = None
    """Calls peer nodes (hit/no-hit, uitvraag, transfer); None without peers."""
    roster: WitnessRoster | None = None
    """Keeps the witness and log keys equal to the peer list; None without peers."""
    case_locks: CaseLocks = field(default_factory=CaseLocks)
    """Lets one action at a time work on a case (across replicas with a PostgreSQL engine)."""

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self.config.node.id
