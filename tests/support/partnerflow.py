"""A partner's referral at a node pair and what its audit log then holds."""

from __future__ import annotations

import grpc
import pytest
from schakel.v1 import common_pb2, partner_pb2

from adapters.sdk import encrypt_subject
from policy.pseudonyms import pseudonym_hex, subject_point
from policy.pseudonyms.hazmat.group import mul
from tests.support.pair import Pair
from tests.support.pki import RR

BSN = "111222333"


PURPOSE = common_pb2.Purpose(processing_activity_id="zvh.complexe-casuistiek")


def expected_pseudonym(pair: Pair, domain: str, bsn: str = BSN) -> str:
    """s_d * M straight from the scheme's definition, without any transcryption."""
    factor = pair.keys.chain().pseudonymisation_factor(domain)
    return pseudonym_hex(mul(factor, subject_point("bsn", bsn), "test"))


def referral(
    pair: Pair, key: str = "ref-1", **changes: object
) -> partner_pb2.SubmitReferralRequest:
    y = pair.keys.global_public_key()
    fields: dict[str, object] = {
        "idempotency_key": key,
        "purpose": PURPOSE,
        "subject": encrypt_subject("bsn", BSN, y),
        "theme": "complexe-casuistiek",
        "criteria": ["meervoudige-problematiek"],
        "reason_codes": ["escalatie"],
        "external_ref": "POL-2026-0001",
    }
    fields.update(changes)
    return partner_pb2.SubmitReferralRequest(**fields)  # type: ignore[arg-type]


async def call_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value


def audit_size(pair: Pair, node_id: str = RR) -> int:
    return pair.nodes[node_id].parts.audit.head().size
