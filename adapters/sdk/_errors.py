"""The one exception type of the partner SDK."""

from __future__ import annotations

import grpc


class PartnerRpcError(Exception):
    """A call failed: the gRPC status code, the server's message and the method.

    The server is the partner's node (PartnerService), or a transcryptor
    at enrolment (``Enrol``, the message naming the transcryptor).

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
