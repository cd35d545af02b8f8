"""A case opened straight in a node's registry, for the federation tests."""

from __future__ import annotations

from schakel.v1 import common_pb2

from gateway.cases.model import Referral
from tests.support.cluster import BSN, PURPOSE, A, Cluster

CASE = common_pb2.CaseRef(node_id=A, case_id="0" * 32)


def open_case_at(cluster: Cluster, node_id: str, bsn: str = BSN, key: str = "k1") -> str:
    """Open a case about ``bsn`` at ``node_id`` as a police referral; its id."""
    registry = cluster.nodes[node_id].parts.registry
    result = registry.refer(
        Referral(
            referrer_org_id="politie-zh",
            referrer_org_type="politie",
            idempotency_key=key,
            subject=cluster.pseudonym_at(node_id, bsn),
            activity=PURPOSE,
            theme="verward-gedrag",
        )
    )
    return result.case.id
