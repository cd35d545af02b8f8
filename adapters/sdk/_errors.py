"""The one exception type of the partner SDK."""

from __future__ import annotations

import grpc


class PartnerRpcError(Exception):
    """A PartnerService call failed: the gRPC status code, the node's message and the method.

    ``attempts`` says how many tries were made before giving up; ``trace_id``
    finds the call in the node's audit log.
    """

    def __init__(
        self, method: str, code: grpc.StatusCode, details: str, *, attempts: int, trace_id: str
    ) -> None:
        """Record the failure; the message reads ``Method: CODE: details``."""
        super().__init__(f"{method}: {code.name}: {details}")
        self.method = method
        self.code = code
        self.details = details
        self.attempts = attempts
        self.trace_id = trace_id
