"""Stand-in servicers for a server built without a node behind it.

:func:`gateway.server.build_server` serves these when it is given no
servicers, which is how the access-layer tests and tools run a bare server:
every RPC passes the mTLS and access checks and then answers UNIMPLEMENTED,
naming the method. A real node (:func:`gateway.node.open_node`) passes its
own servicers in :class:`gateway.server.Servicers`.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
from schakel.v1 import audit_pb2_grpc, case_pb2_grpc, federation_pb2_grpc, partner_pb2_grpc


def _unimplemented(method: str) -> Any:
    """A servicer method refusing with UNIMPLEMENTED.

    Typed Any because one handler stands in for methods whose generated
    signatures all differ.
    """

    async def handler(
        _self: Any, _request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> NoReturn:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{method} is not served here: this server runs without a node behind it",
        )
        raise AssertionError("abort returned")  # abort always raises

    return handler


def _stand_in(base: Any, service: str) -> Any:
    """A subclass of the generated ``base`` whose every RPC answers UNIMPLEMENTED.

    Typed Any because the generated servicer stubs are abstract to mypy.
    """
    methods = {
        name: _unimplemented(f"schakel.v1.{service}/{name}")
        for name, value in vars(base).items()
        if callable(value) and name[:1].isupper()
    }
    return type(f"Bare{service}", (base,), methods)


UnimplementedPartnerService: type[partner_pb2_grpc.PartnerServiceServicer] = _stand_in(
    partner_pb2_grpc.PartnerServiceServicer, "PartnerService"
)
UnimplementedCaseService: type[case_pb2_grpc.CaseServiceServicer] = _stand_in(
    case_pb2_grpc.CaseServiceServicer, "CaseService"
)
UnimplementedFederationService: type[federation_pb2_grpc.FederationServiceServicer] = _stand_in(
    federation_pb2_grpc.FederationServiceServicer, "FederationService"
)
UnimplementedAuditService: type[audit_pb2_grpc.AuditServiceServicer] = _stand_in(
    audit_pb2_grpc.AuditServiceServicer, "AuditService"
)
